"""Members, their states and the incarnation rules (SWIM section 4.2; memberlist ``state.go``).

Every member has an *incarnation* number that only it may raise. Updates about a member are ordered by
incarnation, then by state (SWIM 4.2's override rules):

* ``alive(M, i)`` overrides anything about M with incarnation ``< i`` (a dead or left member that comes
  back with a higher incarnation rejoins);
* ``suspect(M, i)`` overrides ``alive(M, j)`` for ``i >= j``; a further suspect of an already suspect M
  is a *confirmation* (Lifeguard 4.2);
* ``dead(M, i)`` overrides alive or suspect with ``j <= i``; dead and left are final for the
  incarnation. A dead message whose source is M itself is a graceful leave (state ``LEFT``).

A member that hears itself suspected or declared dead *refutes*: it raises its incarnation above the
accusation and broadcasts alive (SWIM 4.2). That is done by the core (the table holds no self rules);
this module is the pure table of the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum


class MemberState(IntEnum):
    """A member's state; the values are on the wire (push-pull) and append-only."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(slots=True)
class Member:
    name: str
    """Unique member name (the key of every update)."""
    addr: str
    """Transport address, opaque to the core (for example ``"10.0.0.7:7946"``)."""
    incarnation: int
    state: MemberState
    meta: dict[str, str] = field(default_factory=dict)
    """Tags: small string key/value pairs the member publishes about itself."""
    state_change: float = 0.0
    """Host ``now`` (seconds) of the last state change as seen by this member."""
    by: str | None = None
    """Who caused the last state change: the suspecter, the member that declared it dead (or the member
    itself for alive and left). For ``coterie members --why``."""

    def copy(self) -> Member:
        return Member(self.name, self.addr, self.incarnation, self.state, dict(self.meta),
                      self.state_change, self.by)


class Outcome(Enum):
    """What applying an update to the table did."""

    APPLIED = "applied"
    """The table changed; the core re-broadcasts the update and emits an event."""
    CONFIRMED = "confirmed"
    """A suspect for a member already suspect: the core counts a confirmation (Lifeguard 4.2)."""
    STALE = "stale"
    """Older (or equal, for alive) incarnation than known: replayed or out of order; dropped."""
    UNKNOWN = "unknown"
    """Suspect or dead about a member not in the table: dropped (memberlist does the same)."""
    IGNORED = "ignored"
    """Current, but changes nothing (suspect or dead about a member already dead or left)."""


class MemberTable:
    """Members other than self, by name. Insertion-ordered."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def get(self, name: str) -> Member | None:
        return self._members.get(name)

    def values(self) -> list[Member]:
        return list(self._members.values())

    def remove(self, name: str) -> None:
        self._members.pop(name, None)

    def alive(self, name: str, incarnation: int, addr: str, meta: dict[str, str], now: float) -> Outcome:
        m = self._members.get(name)
        if m is None:
            self._members[name] = Member(name, addr, incarnation, MemberState.ALIVE, dict(meta), now, name)
            return Outcome.APPLIED
        if incarnation <= m.incarnation:
            return Outcome.STALE
        if m.state != MemberState.ALIVE:
            m.state_change = now
            m.by = name
        m.incarnation, m.addr, m.meta, m.state = incarnation, addr, dict(meta), MemberState.ALIVE
        return Outcome.APPLIED

    def suspect(self, name: str, incarnation: int, source: str, now: float) -> Outcome:
        m = self._members.get(name)
        if m is None:
            return Outcome.UNKNOWN
        if incarnation < m.incarnation:
            return Outcome.STALE
        if m.state == MemberState.SUSPECT:
            return Outcome.CONFIRMED
        if m.state != MemberState.ALIVE:
            return Outcome.IGNORED
        m.incarnation, m.state, m.state_change, m.by = incarnation, MemberState.SUSPECT, now, source
        return Outcome.APPLIED

    def dead(self, name: str, incarnation: int, source: str, now: float) -> Outcome:
        m = self._members.get(name)
        if m is None:
            return Outcome.UNKNOWN
        if incarnation < m.incarnation:
            return Outcome.STALE
        if m.state in (MemberState.DEAD, MemberState.LEFT):
            return Outcome.IGNORED
        m.incarnation = incarnation
        m.state = MemberState.LEFT if source == name else MemberState.DEAD
        m.state_change, m.by = now, source
        return Outcome.APPLIED
