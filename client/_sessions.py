"""The exactly-once sessions of a client (thesis 6.3): a session's seq numbering, the pool that
hands each write a session of its own, and how a write ends when its session fails (expired, stale,
or could not be opened). No I/O; the caller passes the time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coterie.v1 import kv_pb2

from ._call import CallState
from .errors import (
    ClientClosed,
    DeadlineExceeded,
    FailedPrecondition,
    FenceRejected,
    OutcomeUnknown,
    SessionExpired,
)

DEFAULT_MAX_SESSIONS = 64
"""How many exactly-once sessions one client keeps at most by default: how many of its writes can be
outstanding at once."""
SESSION_REUSE_FRACTION = 0.5
"""A session idle in the pool for longer than this fraction of its TTL is not used again (it may have
expired on the cluster; it is dropped without a Close and expires there by itself)."""


@dataclass(slots=True)
class SessionState:
    """One exactly-once session (thesis 6.3): its id (0: not open yet), the last seq handed out, its
    TTL and when (on the client's clock) a write of it last started that the cluster acknowledged.

    Invariant: ``seq`` never decreases while ``session_id`` stays the same, so every header handed out
    for a session carries a seq above every earlier one, including those of writes whose outcome is
    unknown (the state machine refuses a seq at or below the latest applied one as stale, so an old
    attempt that arrives late can never be applied after a newer write of the session)."""

    session_id: int = 0
    seq: int = 0
    ttl_ms: int = 0
    last_active: float = 0.0

    def opened(self, resp: Any, now: float) -> None:
        self.session_id, self.seq, self.ttl_ms, self.last_active = resp.session_id, 0, resp.ttl_ms, now

    def next_header(self) -> kv_pb2.RequestHeader:
        self.seq += 1
        return kv_pb2.RequestHeader(session_id=self.session_id, seq=self.seq)

    def expire(self, session_id: int) -> None:
        if self.session_id == session_id:
            self.session_id, self.seq = 0, 0

    def stale(self, now: float) -> bool:
        """Whether it has been idle too long to be used again (see :data:`SESSION_REUSE_FRACTION`)."""
        return self.ttl_ms > 0 and now - self.last_active > self.ttl_ms / 1000 * SESSION_REUSE_FRACTION


class SessionPool:
    """The bookkeeping of a client's exactly-once sessions; no I/O, no clock (the caller passes
    ``now``) and no locking: :class:`~coterie.client.AsyncClient` uses it from one event loop (and
    :class:`~coterie.client.Client` runs every call on its client's loop thread).

    A write :meth:`take` s a session for itself alone and hands it back with :meth:`give_back` once
    its call has ended, whatever the outcome (the session's seq only grows, so a session whose last
    write has an unknown outcome is safe to reuse with the next seq), or drops it with :meth:`retire`
    (the cluster does not know it: expired or closed; or the session could not be opened).

    Invariants:

    - ``live == len(idle) + in_use <= max_sessions``; ``in_use`` counts the sessions taken (open or
      being opened) and not yet given back or retired; a session is in ``idle`` or taken, never both.
    - Idle sessions are reused last-in first-out, so under light load few sessions stay warm and the
      others age out (:meth:`SessionState.stale`) instead of being kept alive.
    - After :meth:`close` nothing can be taken and sessions handed back are dropped.
    """

    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        if type(max_sessions) is not int or max_sessions < 1:
            raise ValueError(f"max_sessions must be an int >= 1, got {max_sessions!r}")
        self.max_sessions = max_sessions
        self.idle: list[SessionState] = []
        self.in_use = 0
        self.closed = False
        self._taken: dict[int, SessionState] = {}
        self.opened = 0
        """Sessions opened so far (Session.Open answered)."""
        self.peak_in_use = 0
        """The most sessions taken at the same time."""
        self.waiting = 0
        """Writes currently waiting for a session (maintained by the clients)."""

    @property
    def live(self) -> int:
        return len(self.idle) + self.in_use

    def take(self, now: float) -> SessionState | None:
        """An idle session that is not stale (``session_id != 0``), else a new unopened one
        (``session_id == 0``, counted against the bound: open it, then :meth:`opened` or
        :meth:`retire`), else None when ``max_sessions`` are taken (wait for :meth:`give_back` or
        :meth:`retire`). Raises :class:`ClientClosed` once closed."""
        if self.closed:
            raise ClientClosed()
        while self.idle and self.idle[0].stale(now):  # the oldest are at the bottom
            self.idle.pop(0)
        s: SessionState | None = None
        while self.idle:
            cand = self.idle.pop()
            if not cand.stale(now):
                s = cand
                break
        if s is None:
            if self.live >= self.max_sessions:
                return None
            s = SessionState()
        self.in_use += 1
        self.peak_in_use = max(self.peak_in_use, self.in_use)
        if s.session_id:
            self._taken[s.session_id] = s
        return s

    def opened_session(self, s: SessionState, resp: Any, now: float) -> None:
        """``s`` (taken) was opened on the cluster with ``resp`` (a SessionOpenResponse)."""
        s.opened(resp, now)
        self.opened += 1
        self._taken[s.session_id] = s

    def give_back(self, s: SessionState, *, acknowledged_at: float | None = None) -> None:
        """End the use of a taken session; ``acknowledged_at``: when the write that the cluster just
        acknowledged started (so the session was active on the cluster after that time)."""
        self.in_use -= 1
        self._taken.pop(s.session_id, None)
        if acknowledged_at is not None:
            s.last_active = max(s.last_active, acknowledged_at)
        if not self.closed and s.session_id:
            self.idle.append(s)

    def retire(self, s: SessionState) -> None:
        """End the use of a taken session and forget it (it is not, or no longer, open)."""
        self.in_use -= 1
        self._taken.pop(s.session_id, None)
        s.expire(s.session_id)

    def newest_idle(self) -> SessionState:
        """The idle session a next write would get (for tests and tools that number a request by
        hand), or an unopened one if none is idle."""
        return self.idle[-1] if self.idle else SessionState()

    def close(self) -> list[int]:
        """Stop handing out sessions; the ids of every open session (idle or taken), to Close."""
        self.closed = True
        ids = [s.session_id for s in self.idle if s.session_id]
        ids += [sid for sid in self._taken if sid and sid not in ids]
        self.idle.clear()
        return ids


def pool_timeout_error(timeout: float, max_sessions: int) -> DeadlineExceeded:
    """No session of the pool became free within the call's deadline: the write was never sent."""
    return DeadlineExceeded(
        f"the write (not applied) did not get one of the client's {max_sessions} sessions within "
        f"{timeout:.1f} s (all in use by other writes; raise max_sessions or the timeout)", retriable=True)


WRITE_SESSION_TRIES = 3
"""Sessions one write may try: a fresh one replaces a session that expired before the write ran."""


def failed_write(exc: BaseException, call: CallState) -> tuple[bool, BaseException | None]:
    """How a session-numbered write that raised ``exc`` ends (the sync and async clients' ``_write``):
    ``(retire, error)``. ``retire``: drop the session instead of handing it back (the cluster no longer
    knows it, or saw a higher seq of it). ``error``: what to raise, or None to send the write again in
    another session (it expired, and the write cannot have been applied)."""
    if isinstance(exc, SessionExpired):
        if call.maybe_applied:
            return True, OutcomeUnknown(
                f"the session expired while the write's outcome was unknown ({exc.message}); "
                "it may or may not have been applied", retriable=False)
        return True, None
    # FailedPrecondition here is StaleRequest: the cluster saw a higher seq of this session than we did
    # (a fence refusal is an answer like any other: the session goes on).
    return isinstance(exc, FailedPrecondition) and not isinstance(exc, FenceRejected), exc


def sessions_kept_expiring() -> SessionExpired:
    return SessionExpired("the session kept expiring right after being opened", retriable=True)


def session_open_error(exc: BaseException, timeout: float) -> BaseException:
    """What a write raises when it could not get a session: it was never sent, so whatever the
    outcome of the Session.Open attempts (an orphaned session expires by itself), the write is
    "not applied" and safe to retry."""
    if isinstance(exc, DeadlineExceeded | OutcomeUnknown):
        last = exc.last_error if isinstance(exc, DeadlineExceeded) and exc.last_error else exc
        # A deadline's message goes on with the outage summary (if any) and the last error: keep them.
        _, sep, rest = exc.message.partition("; ")
        why = rest if isinstance(exc, DeadlineExceeded) and sep else f"last error: {last.message}"
        return DeadlineExceeded(
            f"the write (not applied) could not open a session within {timeout:.1f} s; {why}",
            retriable=True, last_error=last)
    return exc
