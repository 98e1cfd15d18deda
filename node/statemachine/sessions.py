"""Client sessions for exactly-once commands (Raft thesis 6.3).

A session is registered by a command and named by that command's Raft index. Each later command of
the session carries ``(session_id, seq)``; the table remembers the latest applied ``seq`` and its
response:

- ``seq > latest``: apply, then remember ``(seq, response)``;
- ``seq == latest``: a retry; return the remembered response without applying again;
- ``seq < latest``: the client has moved on; :class:`StaleRequest`.

Expiry rule. Time is the state machine's replicated clock ``now``: the max of the leader-assigned
timestamps of every applied command (so it never goes backwards). A session is *active* at ``now``
whenever a command of it (any command carrying its id, or a keep-alive) is applied, and it
*expires* when ``now - last_active > ttl`` (strictly greater: idle for exactly ``ttl`` is still
alive). Expiry is evaluated on every applied command, after ``now`` is advanced by that command's
timestamp and before the command itself is looked at, so a command arriving after its session
idled out gets :class:`SessionExpired`. An expired session is forgotten: its id is never reused
(ids are log indexes), so commands naming it keep failing.

Invariant: the table's order is the order of last activity, so ``last_active`` is non-decreasing
along it (``now`` never decreases and a touched session moves to the end); expiry only pops from
the front, O(1) per expired session. The order is part of the state and is kept by snapshots.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .codec import decode_response_obj, encode_response_obj
from .errors import InvalidArgument
from .types import Response

__all__ = ["Session", "SessionTable"]


@dataclass(slots=True)
class Session:
    """One session: the latest applied ``seq`` (0 = none yet), its response and last activity time."""

    session_id: int
    last_active: int
    last_seq: int = 0
    response: Response | None = None


class SessionTable:
    """Sessions in order of last activity. ``ttl`` is in the unit of command timestamps (ms)."""

    def __init__(self, ttl: int) -> None:
        if type(ttl) is not int or ttl < 1:
            raise ValueError(f"session ttl must be a positive int, got {ttl!r}")
        self.ttl = ttl
        self._sessions: OrderedDict[int, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(self._sessions.values())

    def get(self, session_id: int) -> Session | None:
        """The live session, or None."""
        return self._sessions.get(session_id)

    def register(self, session_id: int, now: int) -> Session:
        """Open a session active at ``now``. ``session_id`` must be new (it is a log index)."""
        if session_id in self._sessions:
            raise InvalidArgument(f"session {session_id} already exists")
        s = self._sessions[session_id] = Session(session_id, now)
        return s

    def touch(self, session: Session, now: int) -> None:
        """Mark ``session`` active at ``now`` (``now`` must not be below any earlier value)."""
        session.last_active = now
        self._sessions.move_to_end(session.session_id)

    def close(self, session_id: int) -> bool:
        """Forget a session; False if it did not exist."""
        return self._sessions.pop(session_id, None) is not None

    def expire(self, now: int) -> list[int]:
        """Forget every session idle for longer than ``ttl`` at ``now``; their ids, oldest first."""
        expired = []
        while self._sessions:
            sid, s = next(iter(self._sessions.items()))
            if now - s.last_active <= self.ttl:
                break
            del self._sessions[sid]
            expired.append(sid)
        return expired

    def dump(self) -> list[Any]:
        """``[[session_id, last_active, last_seq, response|nil], ...]`` in activity order."""
        return [
            [
                s.session_id,
                s.last_active,
                s.last_seq,
                None if s.response is None else encode_response_obj(s.response),
            ]
            for s in self._sessions.values()
        ]

    def load(self, obj: Any) -> None:
        """Replace the contents with :meth:`dump` output; ``InvalidArgument`` if malformed."""
        if type(obj) is not list:
            raise InvalidArgument("malformed session table")
        sessions: OrderedDict[int, Session] = OrderedDict()
        last = -1
        for item in obj:
            if type(item) is not list or len(item) != 4 or not all(type(x) is int for x in item[:3]):
                raise InvalidArgument("malformed session record")
            sid, last_active, last_seq, resp = item
            if sid in sessions or last_active < last:
                raise InvalidArgument(f"session {sid} duplicated or out of activity order")
            last = last_active
            sessions[sid] = Session(
                sid, last_active, last_seq, None if resp is None else decode_response_obj(resp)
            )
        self._sessions = sessions
