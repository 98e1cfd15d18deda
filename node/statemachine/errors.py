"""Errors of the replicated key-value state machine.

``KVError`` is the root. Every error is a *deterministic outcome* of applying a command: every replica
that applies the same log produces the same error, so errors are returned inside an ``ErrorResponse``
by :meth:`StateMachine.apply` and never escape it. The direct :class:`KVStore` API raises them.

Each class has a stable wire ``code`` (append-only: never renumber or reuse one) and is rebuilt from
its constructor arguments (:func:`error_to_wire` / :func:`error_from_wire`), so a cached session
response survives a snapshot. Two errors are equal when they have the same class and message; the
message contains every number the error carries.

- :class:`InvalidArgument`: the command is malformed or breaks a rule (empty key, duplicate key in a
  txn, ``ignore_value`` on a missing key, ...). Retrying the same command fails the same way.
- :class:`LimitExceeded` (an ``InvalidArgument``): a size or count limit of :class:`Limits`, named.
- :class:`Compacted`: the requested revision is older than the compaction point.
- :class:`FutureRevision`: the requested revision is newer than the store's revision.
- :class:`StaleRequest`: a session command whose ``seq`` is older than the session's latest one.
- :class:`SessionExpired`: the session is unknown: never registered, closed, or expired when idle.
- :class:`LeaseNotFound`: a put (or txn put) names, or a revoke targets, a lease that does not exist.
- :class:`FenceRejected`: the command's fencing token is not the current holder's (see
  :class:`~.types.Fence`); the command changed nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "Compacted",
    "FenceRejected",
    "FutureRevision",
    "InvalidArgument",
    "KVError",
    "LeaseNotFound",
    "LimitExceeded",
    "SessionExpired",
    "StaleRequest",
    "error_from_wire",
    "error_to_wire",
]


class KVError(Exception):
    """Base class of every state machine error. ``code`` is the stable wire code of the class."""

    code: ClassVar[int] = 0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def wire_args(self) -> list[Any]:
        """The constructor arguments that rebuild this error (``type(self)(*wire_args())``)."""
        return [self.message]

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == other.args

    def __hash__(self) -> int:
        return hash((type(self), self.args))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidArgument(KVError):
    """The command is malformed or violates a rule; it changed nothing."""

    code = 1


class LimitExceeded(InvalidArgument):
    """A size or count is over a limit. ``limit`` names the :class:`Limits` field."""

    code = 2

    def __init__(self, limit: str, actual: int, maximum: int, what: str) -> None:
        self.limit = limit
        self.actual = actual
        self.maximum = maximum
        self.what = what
        super().__init__(f"{what} is {actual}, over the limit Limits.{limit} = {maximum}")

    def wire_args(self) -> list[Any]:
        return [self.limit, self.actual, self.maximum, self.what]


class Compacted(KVError):
    """``requested_revision`` is below ``compact_revision``; the oldest readable revision is
    ``oldest_revision`` (equal to ``compact_revision``: reads and watches *at* the compaction
    revision still work)."""

    code = 3

    def __init__(self, requested_revision: int, compact_revision: int) -> None:
        self.requested_revision = requested_revision
        self.compact_revision = compact_revision
        self.oldest_revision = max(compact_revision, 1)
        super().__init__(
            f"required revision {requested_revision} has been compacted "
            f"(compact revision {compact_revision}, oldest available revision {self.oldest_revision})"
        )

    def wire_args(self) -> list[Any]:
        return [self.requested_revision, self.compact_revision]


class FutureRevision(KVError):
    """``requested_revision`` is greater than the store's ``current_revision``."""

    code = 4

    def __init__(self, requested_revision: int, current_revision: int) -> None:
        self.requested_revision = requested_revision
        self.current_revision = current_revision
        super().__init__(
            f"required revision {requested_revision} is a future revision "
            f"(current revision {current_revision})"
        )

    def wire_args(self) -> list[Any]:
        return [self.requested_revision, self.current_revision]


class StaleRequest(KVError):
    """A session command with ``seq`` below the session's latest applied ``latest_seq``: the client
    has already moved past it, so its response is no longer kept."""

    code = 5

    def __init__(self, session_id: int, seq: int, latest_seq: int) -> None:
        self.session_id = session_id
        self.seq = seq
        self.latest_seq = latest_seq
        super().__init__(
            f"session {session_id}: request seq {seq} is older than the latest applied seq {latest_seq}"
        )

    def wire_args(self) -> list[Any]:
        return [self.session_id, self.seq, self.latest_seq]


class SessionExpired(KVError):
    """The session does not exist (never registered, closed, or expired after idling too long)."""

    code = 6

    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id} is unknown or expired; register a new session")

    def wire_args(self) -> list[Any]:
        return [self.session_id]


class LeaseNotFound(KVError):
    """The lease ``lease_id`` does not exist (never granted, revoked or expired). Wire code 7."""

    code = 7

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__(f"requested lease not found: {lease_id}")

    def wire_args(self) -> list[Any]:
        return [self.lease_id]


class FenceRejected(KVError):
    """The command's fencing ``token`` is not ``holder_token``, the ``create_revision`` of the oldest
    live key under the fence prefix (0: no key there, "no holder"). Wire code 8. The command changed
    nothing; a client that sees this has lost the lock (or never held it) and must not retry."""

    code = 8

    def __init__(self, token: int, holder_token: int) -> None:
        self.token = token
        self.holder_token = holder_token
        holder = f"the current holder's token is {holder_token}" if holder_token else "there is no holder"
        super().__init__(f"fencing token {token} rejected: {holder}")

    def wire_args(self) -> list[Any]:
        return [self.token, self.holder_token]


_BY_CODE: dict[int, type[KVError]] = {
    cls.code: cls
    for cls in (
        KVError,
        InvalidArgument,
        LimitExceeded,
        Compacted,
        FutureRevision,
        StaleRequest,
        SessionExpired,
        LeaseNotFound,
        FenceRejected,
    )
}

_ARG_TYPES: dict[type[KVError], tuple[type, ...]] = {
    KVError: (str,),
    InvalidArgument: (str,),
    LimitExceeded: (str, int, int, str),
    Compacted: (int, int),
    FutureRevision: (int, int),
    StaleRequest: (int, int, int),
    SessionExpired: (int,),
    LeaseNotFound: (int,),
    FenceRejected: (int, int),
}


def error_to_wire(error: KVError) -> list[Any]:
    """``[code, *args]``: a msgpack-able form of ``error``."""
    return [error.code, *error.wire_args()]


def error_from_wire(obj: Any) -> KVError:
    """Rebuild an error from :func:`error_to_wire` output; ``InvalidArgument`` if malformed."""
    if not isinstance(obj, list) or not obj or type(obj[0]) is not int or obj[0] not in _BY_CODE:
        raise InvalidArgument(f"malformed error record: {obj!r:.80}")
    cls = _BY_CODE[obj[0]]
    args = obj[1:]
    types = _ARG_TYPES[cls]
    if len(args) != len(types) or any(type(a) is not t for a, t in zip(args, types, strict=True)):
        raise InvalidArgument(f"malformed {cls.__name__} record: {obj!r:.80}")
    return cls(*args)
