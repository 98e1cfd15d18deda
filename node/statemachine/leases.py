"""Leases: TTL-bound grants that keys attach to (etcd v3 leases), as replicated state.

The state machine never reads a clock, so a lease here is only *bookkeeping*; the countdown runs in
the host (``coterie.node.server.lease_timer``), which the state machine informs of every change
through :class:`LeaseUpdate` records (:meth:`LeaseTable.take_updates`), and which proposes a
``LeaseExpireRequest`` when its countdown reaches zero.

A :class:`Lease` holds:

- ``ttl_ms``: the granted TTL;
- ``remaining_ms``: the last checkpointed remaining TTL (``ttl_ms`` after a grant or keep-alive);
  it is what a node that restarts (or restores a snapshot) counts down from;
- ``refreshed_index``: the log index of the last grant or keep-alive entry. Expire and checkpoint
  entries name it, and are ignored when the lease was renewed since (see
  ``LeaseExpireRequest`` / ``LeaseCheckpointRequest``), so a keep-alive racing with either one wins
  deterministically by log order;
- ``keys``: the live keys attached to it, sorted.

Invariant: a live key ``k`` with ``KeyValue.lease == L != 0`` is in ``table.get(L).keys`` iff lease
``L`` exists, and every key of a lease's key set is live and names that lease. The key sets are
derived from the store's change events (:meth:`LeaseTable.observe`) and are not stored in a
snapshot: :meth:`LeaseTable.load` rebuilds them from the live keys. (Keys restored from a version-1
snapshot, taken before leases were checked, may name a lease that does not exist; they are
attached to nothing and live until deleted.)

Updates. Every change of a lease's countdown appends a :class:`LeaseUpdate`: grant and keep-alive
``(id, ttl_ms, index)``; an applied checkpoint item ``(id, remaining_ms, refreshed_index)``; revoke
and expire ``(id, None, refreshed_index)``. The host drains them after each apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sortedcontainers import SortedSet  # type: ignore[import-untyped]

from .errors import InvalidArgument
from .types import Event, EventType, KeyValue

__all__ = ["Lease", "LeaseTable", "LeaseUpdate"]


class LeaseUpdate(NamedTuple):
    """A change the host's lease timer must learn: ``remaining_ms`` is the TTL to count down from
    the moment the host applies the entry, or ``None`` when the lease is gone."""

    lease_id: int
    remaining_ms: int | None
    refreshed_index: int


@dataclass(slots=True)
class Lease:
    """One lease (see the module docstring). ``keys`` is a ``SortedSet`` of ``bytes``."""

    lease_id: int
    ttl_ms: int
    remaining_ms: int
    refreshed_index: int
    keys: Any = field(default_factory=SortedSet)


class LeaseTable:
    """The leases by id, plus the pending :class:`LeaseUpdate` records."""

    def __init__(self) -> None:
        self._leases: dict[int, Lease] = {}
        self._updates: list[LeaseUpdate] = []

    # ----------------------------------------------------------------------------------------- reads

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._leases

    def __iter__(self) -> Iterator[Lease]:
        """The leases in id order."""
        return iter([self._leases[i] for i in sorted(self._leases)])

    def get(self, lease_id: int) -> Lease | None:
        """The lease, or None. Callers must not modify it."""
        return self._leases.get(lease_id)

    def ids(self) -> list[int]:
        """Every lease id, ascending."""
        return sorted(self._leases)

    def keys_of(self, lease_id: int) -> list[bytes]:
        """The live keys attached to ``lease_id``, sorted; ``[]`` for an unknown lease."""
        lease = self._leases.get(lease_id)
        return [] if lease is None else list(lease.keys)

    def take_updates(self) -> list[LeaseUpdate]:
        """The updates since the last call, in apply order; clears them."""
        out, self._updates = self._updates, []
        return out

    def prepend_updates(self, updates: list[LeaseUpdate]) -> None:
        """Put ``updates`` (not yet taken from a replaced table) before this table's own."""
        self._updates[:0] = updates

    # --------------------------------------------------------------------------------------- changes

    def grant(self, lease_id: int, ttl_ms: int, index: int) -> Lease:
        """Create a lease renewed at ``index``. ``lease_id`` must be unused."""
        if lease_id in self._leases:
            raise InvalidArgument(f"lease already exists: {lease_id}")
        lease = self._leases[lease_id] = Lease(lease_id, ttl_ms, ttl_ms, index)
        self._updates.append(LeaseUpdate(lease_id, ttl_ms, index))
        return lease

    def free_id(self, start: int) -> int:
        """The smallest unused id ``>= start``."""
        while start in self._leases:
            start += 1
        return start

    def renew(self, lease: Lease, index: int) -> None:
        """A keep-alive applied at ``index``: full TTL again."""
        lease.remaining_ms = lease.ttl_ms
        lease.refreshed_index = index
        self._updates.append(LeaseUpdate(lease.lease_id, lease.ttl_ms, index))

    def checkpoint(self, lease_id: int, remaining_ms: int, refreshed_index: int) -> bool:
        """Record a checkpointed remaining TTL (clamped to ``[0, ttl_ms]``) unless the lease is gone
        or was renewed after ``refreshed_index``; whether it was recorded."""
        lease = self._leases.get(lease_id)
        if lease is None or lease.refreshed_index != refreshed_index:
            return False
        lease.remaining_ms = max(0, min(remaining_ms, lease.ttl_ms))
        self._updates.append(LeaseUpdate(lease_id, lease.remaining_ms, refreshed_index))
        return True

    def drop(self, lease_id: int) -> None:
        """Forget a lease (its keys must have been deleted already)."""
        lease = self._leases.pop(lease_id)
        assert not lease.keys, "drop a lease only after deleting its keys"
        self._updates.append(LeaseUpdate(lease_id, None, lease.refreshed_index))

    def observe(self, events: Iterable[Event]) -> None:
        """Move keys between key sets after the store changed them: a put moves its key from the
        previous version's lease to the new one; a delete detaches it."""
        for ev in events:
            old = ev.prev_kv.lease if ev.prev_kv is not None else 0
            new = ev.kv.lease if ev.type == EventType.PUT else 0
            if old == new:
                continue
            key = ev.kv.key
            if old and (lease := self._leases.get(old)) is not None:
                lease.keys.discard(key)
            if new and (lease := self._leases.get(new)) is not None:
                lease.keys.add(key)

    # -------------------------------------------------------------------------------------- snapshot

    def dump(self) -> list[Any]:
        """``[[lease_id, ttl_ms, remaining_ms, refreshed_index], ...]`` by id (no keys: see
        :meth:`load`)."""
        return [[x.lease_id, x.ttl_ms, x.remaining_ms, x.refreshed_index] for x in self]

    @classmethod
    def load(cls, obj: Any, live: Iterable[KeyValue]) -> LeaseTable:
        """Rebuild from :meth:`dump` output and the store's ``live`` keys (which give the key sets).
        Emits one update per lease, counting down from its checkpointed ``remaining_ms``.
        ``InvalidArgument`` if malformed."""
        if type(obj) is not list:
            raise InvalidArgument("malformed lease table")
        table = cls()
        last = 0
        for item in obj:
            if type(item) is not list or len(item) != 4 or not all(type(x) is int and x >= 0 for x in item):
                raise InvalidArgument("malformed lease record")
            lease_id, ttl, remaining, refreshed = item
            if lease_id <= last or ttl < 1 or remaining > ttl:
                raise InvalidArgument(f"lease record {lease_id} out of order or inconsistent")
            last = lease_id
            table._leases[lease_id] = Lease(lease_id, ttl, remaining, refreshed)
            table._updates.append(LeaseUpdate(lease_id, remaining, refreshed))
        for kv in live:
            if kv.lease and (lease := table._leases.get(kv.lease)) is not None:
                lease.keys.add(kv.key)
        return table
