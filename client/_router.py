"""Which member a client's next attempt goes to: endpoint parsing, the known leader (from redirects
and Status answers), members discovered through the replicated address book, and a circuit breaker
per endpoint. No I/O; time comes from an injected clock (``time.monotonic`` by default), so the
breaker's cool-down is tested without waiting."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._call import Clock
from .errors import CoterieError, InvalidEndpoint, NotLeader, OutcomeUnknown, Unavailable
from .types import MemberStatus

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
_FORMS = "expected HOST:PORT, e.g. 127.0.0.1:7001, node1:7001 or [::1]:7001"


def parse_endpoint(endpoint: str) -> str:
    """One endpoint, checked: ``HOST:PORT`` with a port in 1..65535 and a host name or IPv4 address,
    or ``[IPV6]:PORT``; an ``http://`` prefix is dropped. Returns it as gRPC takes it; raises
    :class:`InvalidEndpoint` naming it and what is wrong (gRPC itself would, for ``localhost``, try
    port 443 until the deadline, and for port 99999 silently connect to 34463)."""
    e = endpoint.strip()
    if e.startswith("http://"):
        e = e[len("http://"):]
    e = e.rstrip("/")

    def bad(why: str) -> InvalidEndpoint:
        return InvalidEndpoint(f"invalid endpoint {endpoint!r}: {why} ({_FORMS})", bad=endpoint)

    if not e:
        raise bad("empty")
    if e.startswith("["):
        close = e.find("]")
        if close < 0:
            raise bad("no ']' after the IPv6 address")
        host, rest = e[1:close], e[close + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
        if not rest.startswith(":"):
            raise bad("no port")
        port = rest[1:]
    else:
        host, sep, port = e.rpartition(":")
        if not sep:
            raise bad("no port")
        if ":" in host:
            raise bad("an IPv6 address must be in brackets")
        if not host:
            raise bad("no host")
        if not set(host) <= _HOST_CHARS:
            raise bad(f"{host!r} is not a host name or address")
    if not port.isdigit() or not port.isascii():
        raise bad(f"port {port!r} is not a number" if port else "no port")
    if not 1 <= int(port) <= 65535:
        raise bad(f"port {int(port)} is out of range (1-65535)")
    return f"[{host}]:{int(port)}" if e.startswith("[") else f"{host}:{int(port)}"


def parse_endpoints(endpoints: str | Iterable[str]) -> list[str]:
    """``"h:p,h:p"`` or a list of ``"h:p"`` as a list without duplicates; at least one. Each is
    checked by :func:`parse_endpoint`; :class:`InvalidEndpoint` (an :class:`InvalidArgument` and a
    ``ValueError``) names the first bad one."""
    if isinstance(endpoints, str):
        items = endpoints.split(",")
    elif isinstance(endpoints, Iterable):
        items = list(endpoints)
    else:
        raise InvalidEndpoint("endpoints must be a string or a list of strings, not "
                              f"{type(endpoints).__name__}")
    out: list[str] = []
    for e in items:
        if not isinstance(e, str):
            raise InvalidEndpoint(f"an endpoint must be a string, not {type(e).__name__}: {e!r}")
        if not e.strip():
            continue
        ep = parse_endpoint(e)
        if ep not in out:
            out.append(ep)
    if not out:
        raise InvalidEndpoint(f"no endpoint given ({_FORMS}[,HOST:PORT...])")
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
                 clock: Clock = time.monotonic, discover: bool = True) -> None:
        self.endpoints = list(endpoints)
        self.discover = discover
        """Whether members' advertised addresses (from Status answers and leader hints) join the
        endpoints; False: only the endpoints given are ever used (etcd's client without auto-sync)."""
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
                if target and target not in self.breakers and not self.discover:
                    target = ""
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
                    if self.discover and addr and mid not in self.ids and addr not in self.breakers:
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
