"""Fencing for a user's own resources: :class:`FencingGuard`.

The cluster enforces fencing on its own keys (``fence=`` of a write); a resource outside the cluster
(a file, a database row, another service) that a lock or a leadership guards can check the holder's
token itself with a :class:`FencingGuard`: a token lower than one already seen comes from a holder that
has since been replaced (tokens are create_revisions, strictly increasing across holders), so its
request is refused.
"""

from __future__ import annotations

import threading

from .errors import FenceRejected

__all__ = ["FencingGuard"]


class FencingGuard:
    """Refuses requests that carry a fencing token lower than the highest one seen (thread-safe).

    Example, a storage service guarding writes from lock holders::

        guard = FencingGuard()

        def write(token: int, data: bytes) -> None:
            guard.check(token)      # raises FenceRejected if a newer holder already wrote
            storage.write(data)

        with client.lock("jobs/compactor") as lock:
            write(lock.token, b"...")   # a holder paused past its TTL is refused afterwards

    Invariant: :attr:`highest` never decreases; :meth:`check` accepts ``token`` iff
    ``token >= highest`` at the moment of the check (and then makes it the highest). The check and the
    record are one atomic step, but the caller's own write after it is not: to be strict, do the
    write under the same lock (``with guard.lock: guard.check(t); write()``).
    """

    def __init__(self, highest: int = 0) -> None:
        self.lock = threading.RLock()
        self._highest = highest

    @property
    def highest(self) -> int:
        """The highest token accepted so far (or given at construction)."""
        return self._highest

    def check(self, token: int) -> None:
        """Accept ``token`` (recording it) or raise :class:`FenceRejected` (with ``.token`` and
        ``.holder_token`` = the highest seen) if it is lower than a token already seen."""
        if isinstance(token, bool) or not isinstance(token, int):
            raise TypeError(f"a fencing token is an int, not {type(token).__name__}")
        with self.lock:
            if token < self._highest:
                raise FenceRejected(f"fencing token {token} is older than {self._highest}, already seen",
                                    token=token, holder_token=self._highest)
            self._highest = token
