"""The transmit-limited broadcast queue (SWIM section 4.1, infection-style dissemination; memberlist
``queue.go``).

Membership updates (alive, suspect, dead) are not sent on their own: they are piggybacked on pings, acks
and gossip rounds. Each update is handed out at most ``retransmit_mult * ceil(log10(n + 1))`` times
(n = current member count), the least-sent first and, among equals, the newest first. A newer update
about a member *invalidates* the queued one (one entry per member name), so stale news is never sent
after fresher news was queued. :meth:`BroadcastQueue.take` packs as many entries as fit a byte budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedDict  # type: ignore[import-untyped]


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """``retransmit_mult * ceil(log10(n + 1))``, n the number of members (at least 1 transmission)."""
    return max(1, retransmit_mult * math.ceil(math.log10(n + 1)))


@dataclass(slots=True)
class _Entry:
    key: str
    payload: bytes
    transmits: int
    id: int


class BroadcastQueue:
    """Pending broadcasts keyed by member name; payloads are encoded message bodies."""

    __slots__ = ("_by_key", "_next_id", "_order", "retransmit_mult")

    def __init__(self, retransmit_mult: int) -> None:
        self.retransmit_mult = retransmit_mult
        self._by_key: dict[str, _Entry] = {}
        # (transmits, -id) -> entry: iteration order is the hand-out order.
        self._order: Any = SortedDict()
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def queue(self, key: str, payload: bytes) -> None:
        """Queue ``payload`` about member ``key``, replacing (invalidating) any queued one about it."""
        self.invalidate(key)
        self._next_id += 1
        e = _Entry(key, payload, 0, self._next_id)
        self._by_key[key] = e
        self._order[(0, -e.id)] = e

    def invalidate(self, key: str) -> None:
        old = self._by_key.pop(key, None)
        if old is not None:
            del self._order[(old.transmits, -old.id)]

    def pending(self, key: str) -> bytes | None:
        e = self._by_key.get(key)
        return None if e is None else e.payload

    def take(self, budget: int, overhead: int, n: int) -> list[bytes]:
        """Payloads whose sizes plus ``overhead`` bytes each sum to at most ``budget``: least-transmitted
        first, newest first among equals. Each one taken counts a transmission; one that reaches
        :func:`retransmit_limit` (for ``n`` members) leaves the queue."""
        if budget <= overhead or not self._by_key:
            return []
        limit = retransmit_limit(self.retransmit_mult, n)
        taken: list[_Entry] = []
        free = budget
        for e in self._order.values():
            size = len(e.payload) + overhead
            if size <= free:
                taken.append(e)
                free -= size
                if free <= overhead:
                    break
        for e in taken:
            self.invalidate(e.key)
            if e.transmits + 1 < limit:
                e.transmits += 1
                self._by_key[e.key] = e
                self._order[(e.transmits, -e.id)] = e
        return [e.payload for e in taken]
