"""The pure parts of leases, locks and elections: a held lease's validity (when it can be trusted
until, from answered keep-alives, on an injected clock), the key naming convention the server counts
locks and elections by, and the choice of a contender's predecessor. No I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .types import KeyValue

DRIFT_BOUND = 0.01
"""The clock-rate drift bound ``rho`` (see ``coterie.node.server.lease_timer``): the holder of a lease
trusts it for ``TTL * (1 - DRIFT_BOUND)`` from the moment it SENT the answered grant or keep-alive,
measured on its monotonic clock, so that the cluster, whose members' clocks may run up to that factor
faster than the holder's, never expires it earlier."""

KEEPALIVE_FRACTION = 1 / 3
"""A kept-alive lease is renewed every ``TTL * KEEPALIVE_FRACTION`` seconds."""

LOCK_PREFIX = b"coterie/locks/"
ELECTION_PREFIX = b"coterie/elections/"


def ttl_ms(ttl: float) -> int:
    """Seconds (float ok) to the wire's whole milliseconds, rounded up; must be > 0."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0 or math.isinf(ttl):
        raise ValueError(f"a lease TTL must be a positive number of seconds, not {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


def name_prefix(kind: bytes, name: str) -> bytes:
    """``coterie/locks/<name>/`` (or ``coterie/elections/<name>/``): the prefix of a name's
    contender keys, which is also the fence prefix of its holder."""
    if not isinstance(name, str) or not name or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"a lock or election name is a non-empty str not starting or ending with '/', "
                         f"not {name!r}")
    return kind + name.encode() + b"/"


def contender_key(prefix: bytes, lease_id: int) -> bytes:
    """A contender's key: the prefix and its lease id as 16 lowercase hex digits."""
    return prefix + f"{lease_id:016x}".encode()


def is_contender(prefix: bytes, key: bytes) -> bool:
    """Whether ``key`` is a contender key directly under ``prefix`` (not one of a nested name)."""
    rest = key[len(prefix):]
    return key.startswith(prefix) and len(rest) == 16 and all(c in b"0123456789abcdef" for c in rest)


def contenders(prefix: bytes, kvs: Sequence[KeyValue]) -> list[KeyValue]:
    """The contender keys among ``kvs``, oldest (smallest create_revision) first."""
    return sorted((kv for kv in kvs if is_contender(prefix, kv.key)), key=lambda kv: kv.create_revision)


def predecessor(prefix: bytes, kvs: Sequence[KeyValue], my_revision: int) -> KeyValue | None:
    """The contender created last before ``my_revision`` (the one to wait for), or None if there is
    none (the contender at ``my_revision`` holds the lock / leads)."""
    before = [kv for kv in contenders(prefix, kvs) if kv.create_revision < my_revision]
    return before[-1] if before else None


@dataclass(slots=True)
class LeaseValidity:
    """How long a lease held by this client can be trusted, from its answered grant and keep-alives.

    ``valid_until`` is the largest ``sent + ttl * (1 - drift)`` over answered requests, where ``sent`` is
    when the answered request was sent (on the holder's monotonic clock) and ``ttl`` the TTL the answer
    granted. Invariants: ``valid_until`` never decreases; once ``lost`` it stays lost (an answer
    arriving after ``valid_until`` passed does not revive it, nor does one saying ``ttl 0``)."""

    drift: float = DRIFT_BOUND
    valid_until: float = -math.inf
    ttl: float = 0.0
    """The granted TTL of the last answer, seconds."""
    lost: bool = False
    answered_at: float = -math.inf
    """The send time of the newest answered request."""

    def check(self, now: float) -> bool:
        """Whether the lease is lost at ``now`` (marks it lost if ``valid_until`` has passed)."""
        if not self.lost and now >= self.valid_until:
            self.lost = True
        return self.lost

    def answered(self, sent: float, granted_ms: int, now: float) -> bool:
        """An answer to a request sent at ``sent`` arrived at ``now`` granting ``granted_ms`` (0: the
        lease is gone). Returns whether the lease is still valid afterwards."""
        if self.lost or (self.answered_at > -math.inf and self.check(now)):
            return False
        if granted_ms <= 0:
            self.lost = True
            return False
        self.ttl = granted_ms / 1000
        self.answered_at = max(self.answered_at, sent)
        self.valid_until = max(self.valid_until, sent + self.ttl * (1 - self.drift))
        return not self.check(now)

    def next_keepalive(self) -> float:
        """When to send the next keep-alive: :data:`KEEPALIVE_FRACTION` of the TTL after the newest
        answered one was sent."""
        return self.answered_at + self.ttl * KEEPALIVE_FRACTION
