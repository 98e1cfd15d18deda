"""Which member a client's next attempt goes to: endpoint parsing, the known leader (from redirects
and Status answers), members discovered through the replicated address book, and a circuit breaker
per endpoint. No I/O; time comes from an injected clock (``time.monotonic`` by default), so the
breaker's cool-down is tested without waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._call import Clock
from .errors import CoterieError, NotLeader, OutcomeUnknown, Unavailable
from .types import MemberStatus


def parse_endpoints(endpoints: str | Iterable[str]) -> list[str]:
    """``"h:p,h:p"`` or a list of ``"h:p"`` as a list without duplicates; at least one."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[str] = []
    for e in items:
        e = e.strip()
        if e.startswith("http://"):
            e = e[len("http://"):]
        if e and e not in out:
            out.append(e)
    if not out:
        raise ValueError("no endpoint given: expected 'host:port[,host:port...]'")
    return out


@dataclass(slots=True)
class Breaker:
    """Opens after ``threshold`` consecutive transport failures; skipped until ``open_until``."""

    failures: int = 0
    open_until: float = 0.0


class Router:
    """Which endpoint to try next: the known leader, else the next healthy endpoint in turn.

    A breaker opens for ``cooldown`` seconds of ``clock`` after ``threshold`` consecutive transport
    failures of its endpoint. The router has no randomness of its own: a fresh client tries the
    endpoints in the order given (the back-off's jitter is :class:`~._call.CallState`'s). Thread-safe
    (one lock, held only for bookkeeping), so its state may be read from any thread."""

    def __init__(self, endpoints: list[str], *, threshold: int = 3, cooldown: float = 2.0,
                 clock: Clock = time.monotonic) -> None:
        self.endpoints = list(endpoints)
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.leader: str | None = None
        self.ids: dict[int, str] = {}
        self.breakers: dict[str, Breaker] = {e: Breaker() for e in endpoints}
        self._cursor = 0
        self._lock = threading.Lock()

    def _usable(self, ep: str, now: float) -> bool:
        return self.breakers[ep].open_until <= now

    def pick(self) -> str:
        now = self.clock()
        with self._lock:
            if self.leader is not None and self._usable(self.leader, now):
                return self.leader
            n = len(self.endpoints)
            for i in range(n):
                ep = self.endpoints[(self._cursor + i) % n]
                if self._usable(ep, now):
                    self._cursor = (self._cursor + i + 1) % n
                    return ep
            # Every breaker is open: the one that closes first.
            return min(self.endpoints, key=lambda e: self.breakers[e].open_until)

    def pick_avoiding(self, avoid: str) -> str:
        """Like :meth:`pick` but not ``avoid`` (a member that just failed) while another endpoint is
        usable; forgets ``avoid`` as the leader."""
        with self._lock:
            if self.leader == avoid:
                self.leader = None
        for _ in range(len(self.endpoints)):
            ep = self.pick()
            if ep != avoid:
                return ep
        return self.pick()

    def success(self, ep: str) -> None:
        with self._lock:
            self.breakers[ep].failures = 0
            self.breakers[ep].open_until = 0.0

    def failure(self, ep: str, err: CoterieError) -> bool:
        """Record a failure of ``ep``; True if the leader is now known to be elsewhere and the next
        attempt may go at once (a redirect), False if the caller should back off (and rediscover).
        A redirect closes the named leader's breaker."""
        with self._lock:
            if isinstance(err, NotLeader):
                self.breakers[ep].failures = 0
                # An endpoint the caller gave (or that answered before) for that id wins over the
                # advertised address, which may not be reachable from here (NAT, containers).
                target = self.ids.get(err.leader_id, "") or err.leader_addr
                if target and target != ep:
                    if target not in self.breakers:
                        self.endpoints.append(target)
                        self.breakers[target] = Breaker()
                    # A member vouches for the leader: its breaker closes. Otherwise, with many calls
                    # sharing this router, a few slow attempts on a busy leader would open its breaker
                    # and send every call to followers that only redirect back, until the cool-down.
                    self.breakers[target].failures = 0
                    self.breakers[target].open_until = 0.0
                    if err.leader_id:
                        self.ids[err.leader_id] = target
                    self.leader = target
                    return True
                if self.leader == ep:
                    self.leader = None
                return False
            if isinstance(err, Unavailable | OutcomeUnknown):
                b = self.breakers[ep]
                b.failures += 1
                if b.failures >= self.threshold:
                    b.open_until = self.clock() + self.cooldown
                if self.leader == ep:
                    self.leader = None
            return False

    def needs_discovery(self) -> bool:
        return self.leader is None

    def learn(self, statuses: Sequence[MemberStatus]) -> None:
        """Update the id map and the leader from Status answers. Members that no known endpoint
        answers for are added by their advertised client address (like etcd's endpoint auto-sync),
        so a client given one member can fail over to the others."""
        with self._lock:
            for st in statuses:
                if st.error is None and st.member_id:
                    self.ids[st.member_id] = st.endpoint
            for st in statuses:
                for mid, addr in st.known_members:
                    if addr and mid not in self.ids and addr not in self.breakers:
                        self.endpoints.append(addr)
                        self.breakers[addr] = Breaker()
                        self.ids[mid] = addr
            leader_id = 0
            for st in statuses:
                if st.error is None and st.member_id:
                    self.ids[st.member_id] = st.endpoint
                    if st.role == "leader":
                        self.leader = st.endpoint
                        return
                    leader_id = leader_id or st.leader_id
            if leader_id and leader_id in self.ids:
                self.leader = self.ids[leader_id]

    def discovery_targets(self) -> list[str]:
        now = self.clock()
        with self._lock:
            live = [e for e in self.endpoints if self._usable(e, now)]
            return live or list(self.endpoints)
