"""The bookkeeping of one call's retry loop: its deadline, attempts and back-off (exponential with
full jitter), and the error it ends with when time runs out. No I/O and no sleeping: the clock and
the random source are injected (as the Raft core's are), so the rules are tested without waiting."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import CoterieError, DeadlineExceeded, NotLeader, OutcomeUnknown, Unavailable

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic`` unless a test injects a fake)."""

DEFAULT_TIMEOUT = 10.0
"""Seconds per call, retries included: the one default of :class:`~coterie.client.Client`,
:class:`~coterie.client.AsyncClient` and the CLI's ``--timeout``."""
MAX_ATTEMPTS = 200
"""A hard bound on the attempts of one call, besides its deadline."""
MIN_RETRY_SECONDS = 0.1
"""A retry is not started with less than this left of the call's deadline: an attempt cut off by
the deadline a few milliseconds in would turn a write that was certainly not applied (the last
failure said so) into one of unknown outcome. The first attempt is always made."""


def backoff(attempt: int, rng: random.Random, *, base: float = 0.05, cap: float = 1.0) -> float:
    """Exponential back-off with full jitter: uniform in ``[0, min(cap, base * 2**attempt)]``."""
    return rng.uniform(0.0, min(cap, base * (2 ** min(attempt, 16))))


def deadline_error(timeout: float, attempts: int, last: CoterieError | None, *, write: bool,
                   maybe_applied: bool, outage: str = "") -> DeadlineExceeded:
    why = f"; {outage}" if outage else ""
    why += f"; last error: {last.message}" if last is not None else ""
    if write and maybe_applied:
        msg = (f"the write did not complete within {timeout:.1f} s ({attempts} attempts) and may or "
               "may not have been applied; a new call is safe only if the write is idempotent")
        return DeadlineExceeded(msg + why, retriable=False, last_error=last, unsafe=True)
    what = "write (not applied)" if write else "call"
    return DeadlineExceeded(f"the {what} did not complete within {timeout:.1f} s ({attempts} attempts)"
                            + why, retriable=True, last_error=last)


def unreachable(err: CoterieError) -> bool:
    """Whether ``err`` means the member could not be reached at all (as opposed to an answer)."""
    if not isinstance(err, Unavailable) or isinstance(err, NotLeader):
        return False
    low = err.message.lower()
    return err.code in ("DEADLINE_EXCEEDED", "CANCELLED") or "connect" in low or "timed out" in low


def outage_summary(seen: dict[str, tuple[bool, str]], members: list[str]) -> str:
    """One sentence on why no leader could be used, from what each member did during a call: how
    many of the known ``members`` answered, which could not be reached, and, when fewer than a
    majority answered, that the cluster has lost its quorum. "" if nothing was recorded."""
    if not seen:
        return ""
    eps = list(dict.fromkeys([*members, *seen]))
    answered = [e for e in eps if e in seen and seen[e][0]]
    down = [e for e in eps if e in seen and not seen[e][0]]
    unknown = [e for e in eps if e not in seen]
    n, quorum = len(eps), len(eps) // 2 + 1
    parts = [f"{len(answered)} of {n} members answered"]
    if down:
        parts.append(f"unreachable: {', '.join(down)}")
    if unknown:
        parts.append(f"not tried: {', '.join(unknown)}")
    if len(answered) < quorum:
        head = (f"the cluster has lost its quorum ({quorum} of {n} members needed to elect a leader "
                "and commit)")
    else:
        head = "no leader could be used (an election may be in progress)"
    return f"{head}: {'; '.join(parts)}"


@dataclass(slots=True)
class CallState:
    """The bookkeeping of one call's retry loop, on ``clock`` and with back-off jitter from ``rng``
    (the client passes its own; the defaults are ``time.monotonic`` and a fresh ``random.Random``)."""

    timeout: float
    write: bool
    idempotent: bool
    clock: Clock = field(default=time.monotonic, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)
    deadline: float = field(init=False, default=0.0)
    started: float = field(init=False, default=0.0)
    """``clock()`` when the call began (before any attempt)."""
    attempts: int = 0
    backoffs: int = 0
    last: CoterieError | None = None
    maybe_applied: bool = False
    redirected: bool = False
    """Whether the last attempt was a redirect to a hinted leader (two in a row back off instead)."""
    seen: dict[str, tuple[bool, str]] = field(default_factory=dict)
    """Per endpoint, what it last did in this call: ``(answered, what)``; ``answered`` is False when
    it could not be reached (refused, no answer in time). For the outage summary."""

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.deadline = self.started + self.timeout

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def attempt_timeout(self) -> float:
        """Each attempt gets at most a third of the call's timeout (at least 1 s), so a hung member
        leaves time to try another."""
        return max(0.0, min(self.remaining(), max(1.0, self.timeout / 3)))

    def exhausted(self, members: list[str] | None = None) -> DeadlineExceeded | None:
        """The error to raise instead of another attempt, or None to go on (see
        :data:`MIN_RETRY_SECONDS`). With ``members`` (every endpoint known), a call that ended
        without a usable leader (its last error a "not the leader" or an unreachable member) says
        why: :func:`outage_summary`."""
        left = self.remaining()
        if left <= 0 or self.attempts >= MAX_ATTEMPTS or (self.attempts > 0 and left < MIN_RETRY_SECONDS):
            outage = ""
            if members is not None and self.last is not None and (
                    isinstance(self.last, NotLeader) or unreachable(self.last)):
                outage = outage_summary(self.seen, members)
            return deadline_error(self.timeout, self.attempts, self.last, write=self.write,
                                  maybe_applied=self.maybe_applied, outage=outage)
        return None

    def saw(self, endpoint: str, err: CoterieError | None, what: str = "") -> None:
        """Record what ``endpoint`` did (an error, or None: it answered, ``what``)."""
        if err is None:
            self.seen[endpoint] = (True, what)
        else:
            self.seen[endpoint] = (not unreachable(err), err.message)

    def failed(self, err: CoterieError) -> None:
        self.last = err
        if isinstance(err, OutcomeUnknown) or (
            self.write and isinstance(err, Unavailable) and "connect" not in err.message.lower()
        ):
            self.maybe_applied = True

    def next_backoff(self) -> float:
        """How long to wait before the next attempt (:func:`backoff` of the back-offs so far, never
        past the deadline); counts this back-off."""
        delay = max(0.0, min(backoff(self.backoffs, self.rng), self.remaining()))
        self.backoffs += 1
        return delay
