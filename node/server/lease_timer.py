"""The lease countdown of one node: pure bookkeeping over a clock the caller passes in.

Every method takes ``now``, the host's monotonic clock in seconds (``time.monotonic()``); nothing
here reads a clock, sleeps, or runs tasks, so the host decides when to call and tests drive it with
a fake clock. The replicated state (:mod:`coterie.node.statemachine.leases`) knows no time; this
module turns its :class:`~coterie.node.statemachine.leases.LeaseUpdate` records into local
deadlines.

How the host uses it (every node, leader or not)::

    resp = sm.apply(index, data)
    timer.apply_updates(sm.take_lease_updates(), time.monotonic())   # right after each apply

and, on the leader only, on a periodic tick::

    timer.became_leader(now)                # once, when this node becomes leader
    for req in timer.expired(now): propose(req)          # LeaseExpireRequest
    if (cp := timer.checkpoints(now)) is not None: propose(cp)   # LeaseCheckpointRequest

Countdown rules (:meth:`LeaseTimer.apply_updates`):

- a grant or keep-alive (an update whose ``refreshed_index`` is new for the lease), or a lease the
  timer does not know (after a restart or a snapshot restore): ``deadline = now + remaining``;
- a checkpoint (same ``refreshed_index`` as the countdown in progress):
  ``deadline = min(deadline, now + remaining)``;
- lease gone (``remaining_ms is None``): forget it.

The two promises
================

Clocks. Let every clock run at a rate within a factor ``1 - rho`` of every other clock's
(``rate_a / rate_b >= 1 - rho`` for any two clocks, the holder's included; for rates within
``1 +- d`` of real time, ``rho = 2d / (1 + d)``). With equal rates, ``rho = 0``.

(a) Safety: a lease is not expired before its holder stops believing it holds it.
    The holder that sent a keep-alive (or grant) at time ``s`` and got an answer may act as the
    lease holder until ``s + TTL * (1 - rho)`` by its own clock (``(1 - rho)**(k + 1)`` with ``k``
    defined below). Why that is safe: only the leader proposes an expiry, from its own deadline.

    - A node applies the entry only after the holder sent it, so its countdown starts after ``s``
      and lasts ``TTL`` on its clock: at least ``TTL * (1 - rho)`` on the holder's. A restart
      re-arms countdowns at replay time, later still.
    - A checkpoint's ``remaining`` is computed by a leader from its own deadline at time ``t_c``
      and applied by any node at some ``a >= t_c``; ``a + remaining`` is no earlier than the
      leader's deadline (equal rates), so a checkpoint moves a node's deadline down at most to
      the checkpointing leader's. With drift, each such hop can lose a factor ``1 - rho`` of the
      remaining time: if the expiring leader's deadline was lowered by checkpoints of earlier
      leaders whose own deadlines were lowered the same way, ``k`` such hops (``k <=`` the
      leader changes since the renewal) need the holder to use ``TTL * (1 - rho)**(k + 1)``,
      about ``TTL * (1 - (k + 1) * rho)``. A leader's own checkpoints never lower its own deadline.
    - Checkpoint items name the ``refreshed_index`` they were computed for, and the state
      machine drops items for a lease renewed since; otherwise a checkpoint computed before a
      keep-alive and applied after it would cut the renewal short. Likewise an expiry applied
      after a renewal (a racing keep-alive) is a no-op, identically on every replica.
    - ``remaining`` is rounded up to whole milliseconds, never down.

(b) Liveness, without extension by leader churn.
    Every node runs the countdown from its own apply times, whether it leads or not, so a new
    leader continues its countdown instead of restarting it; it does not grant every lease a
    fresh TTL on promotion, which is how etcd's lessor let a lease outlive its TTL forever under
    repeated leader changes (etcd-io/etcd#9888, fixed by lease checkpoints). The only
    extensions past ``last renewal + TTL`` are:

    - the drift of the expiring leader's clock, ``TTL * (1/(1 - d) - 1)`` for a rate ``>= 1 - d``;
    - the apply lag of the leader that expires it (it applied the renewal late) and the commit
      latency of the renewal and of the expire entry;
    - time without a leader (election time), and ``retry`` when an expire proposal was lost;
    - after a node restart, its volatile deadlines are gone and replay (or a snapshot) re-arms
      them at restart time from the last checkpointed remaining, so if that node is elected
      before the next checkpoint reaches it, its countdown is late by at most
      ``checkpoint_interval`` (plus the checkpoint's commit and apply lag). A restarted node that
      is not elected is corrected by the next checkpoint it applies (the ``min`` rule).

    So the bound is ``TTL + election time + apply lag + checkpoint_interval`` per
    restart-then-elected leader (``tests/test_lease_sim.py`` checks it and prints the worst
    measured allowance).

Constants (:class:`LeaseTimer` arguments): ``checkpoint_interval`` (seconds between
checkpoints; the restart extension and the checkpoint log traffic trade off), ``retry`` (seconds
before an expiry proposed but not yet applied is proposed again, e.g. after it was lost in a
leader change).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from ..statemachine import LeaseCheckpointRequest, LeaseExpireRequest, LeaseUpdate

__all__ = ["DEFAULT_CHECKPOINT_INTERVAL", "DEFAULT_EXPIRE_RETRY", "LeaseTimer"]

DEFAULT_CHECKPOINT_INTERVAL = 5.0
"""Seconds between two checkpoints proposed by a leader (etcd checkpoints every 5 min by default,
but only to survive restarts; here it also bounds the extension by a restarted-then-elected
leader)."""

DEFAULT_EXPIRE_RETRY = 1.0
"""Seconds before an expiry proposed but not yet applied is proposed again."""


@dataclass(slots=True)
class _Countdown:
    deadline: float
    refreshed_index: int
    proposed_at: float | None = None  # when an expiry for this countdown was last proposed


class LeaseTimer:
    """The local deadlines of every lease (see the module docstring for the rules and why)."""

    def __init__(
        self,
        *,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        retry: float = DEFAULT_EXPIRE_RETRY,
    ) -> None:
        if not checkpoint_interval > 0 or not retry > 0:
            raise ValueError("checkpoint_interval and retry must be positive")
        self.checkpoint_interval = checkpoint_interval
        self.retry = retry
        self._leases: dict[int, _Countdown] = {}
        self._due: list[tuple[float, int]] = []
        """A min-heap of ``(when, lease_id)``: when a lease may next need an expiry proposed (its
        deadline, or its last proposal + ``retry``). Entries go stale as deadlines move; a popped
        entry is checked against :attr:`_leases`, so :meth:`expired` costs O(log n) per lease due,
        not a pass over every lease on every tick."""
        self._next_checkpoint = -math.inf

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._leases

    def apply_updates(self, updates: Iterable[LeaseUpdate], now: float) -> None:
        """Apply the state machine's lease updates of the entry just applied, at ``now``."""
        for u in updates:
            if u.remaining_ms is None:
                self._leases.pop(u.lease_id, None)
                continue
            deadline = now + u.remaining_ms / 1000
            cur = self._leases.get(u.lease_id)
            if cur is None or cur.refreshed_index != u.refreshed_index:
                self._leases[u.lease_id] = _Countdown(deadline, u.refreshed_index)
            elif deadline < cur.deadline:
                cur.deadline = deadline
            else:
                continue
            heapq.heappush(self._due, (deadline, u.lease_id))
        if len(self._due) > 2 * len(self._leases) + 64:
            # Only the leader pops due entries (expired()): on a follower every renewal adds one,
            # so drop the stale ones now and then (one live entry per lease).
            self._rebuild_due()

    def _rebuild_due(self) -> None:
        """One entry per lease, at the moment it may next need an expiry proposed."""
        self._due = [(c.deadline if c.proposed_at is None else max(c.deadline, c.proposed_at + self.retry),
                      lease_id) for lease_id, c in self._leases.items()]
        heapq.heapify(self._due)

    def became_leader(self, now: float) -> None:
        """This node just became leader: forget which expiries it proposed in an earlier term (they
        may have been lost) and checkpoint at the next :meth:`checkpoints` call. Deadlines are left
        alone: that is the point (etcd-io/etcd#9888)."""
        for c in self._leases.values():
            c.proposed_at = None
        self._rebuild_due()
        self._next_checkpoint = -math.inf

    def expired(self, now: float) -> list[LeaseExpireRequest]:
        """Expiries to propose (leader only): every lease whose deadline is ``<= now``, unless one
        was proposed less than ``retry`` seconds ago. In lease id order."""
        out = []
        while self._due and self._due[0][0] <= now:
            _, lease_id = heapq.heappop(self._due)
            c = self._leases.get(lease_id)
            if c is None or c.deadline > now:
                continue  # gone, or renewed since this entry (the renewal pushed its own)
            if c.proposed_at is not None and now - c.proposed_at < self.retry:
                continue  # proposed recently; its retry entry is in the heap
            c.proposed_at = now
            heapq.heappush(self._due, (now + self.retry, lease_id))
            out.append(LeaseExpireRequest(lease_id, c.refreshed_index))
        out.sort(key=lambda r: r.lease_id)
        return out

    def checkpoints(self, now: float) -> LeaseCheckpointRequest | None:
        """A checkpoint to propose (leader only), at most every ``checkpoint_interval`` seconds:
        each lease's remaining time ``deadline - now`` in ms, rounded up, clamped ``>= 0``. None
        when it is not time yet or there are no leases."""
        if now < self._next_checkpoint or not self._leases:
            return None
        self._next_checkpoint = now + self.checkpoint_interval
        items = tuple(
            (lease_id, self._remaining_ms(c, now), c.refreshed_index)
            for lease_id, c in sorted(self._leases.items())
        )
        return LeaseCheckpointRequest(items)

    def remaining(self, lease_id: int, now: float) -> int | None:
        """The local remaining TTL of ``lease_id`` in ms (rounded up, ``>= 0``), or None if the
        timer does not know the lease (e.g. for a TimeToLive answer)."""
        c = self._leases.get(lease_id)
        return None if c is None else self._remaining_ms(c, now)

    def deadline(self, lease_id: int) -> float | None:
        """The local deadline of ``lease_id`` (seconds on the host's clock), or None."""
        c = self._leases.get(lease_id)
        return None if c is None else c.deadline

    @staticmethod
    def _remaining_ms(c: _Countdown, now: float) -> int:
        return max(0, math.ceil((c.deadline - now) * 1000))
