"""Nemeses: faults injected on a schedule and healed at the end; see :mod:`.base`.

:data:`NEMESES` is the one list of them (``--nemesis a,b,...``): each entry is a
:data:`~coterie.verify.nemesis.base.NemesisFactory`, ``(backend, rng)`` ->
:class:`~coterie.verify.nemesis.base.Fault` (or None for ``none``, which injects nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from .base import NemesisFactory

NEMESES: Registry[NemesisFactory] = Registry("nemesis", __name__, {
    "partition": (".partition:any_partition", "any partition-* shape (one picked per fault)"),
    "partition-halves": (".partition:halves_partition", "the nodes cut into a minority and a majority"),
    "partition-leader": (".partition:leader_partition", "the leader isolated from everyone"),
    "partition-ring": (".partition:ring_partition",
                       "majorities ring (every node sees a majority, no two the same one)"),
    "partition-oneway": (".partition:oneway_partition",
                         "one node hears no one, or no one hears it (one-way cut)"),
    "kill": (".kill:KillFault", "kill -9 a random node or the leader, restarted at the stop"),
    "pause": (".kill:PauseFault", "SIGSTOP a random node or the leader, SIGCONT at the stop"),
    "slow": (".links:slow_links", "100-500 ms per peer batch on a random minority of nodes"),
    "lossy": (".links:lossy_links", "20-50 % of peer messages dropped on a random minority"),
    "member": (".membership:MembershipFault", "remove a member, re-add it as a learner, promote it"),
    "clock": (".clock:drift_clock",
              "a node's lease clock at a rate within 1 +- 0.005 (inside the drift bound leases assume)"),
    "clock-broken": (".clock:broken_clock",
                     "the leader's lease clock 1.5-3x fast: BEYOND the drift bound (leases expire early)"),
    "clock-jump": (".clock:jumping_clock",
                   "the leader's lease clock jumps 1-3 s forward: BEYOND the drift bound"),
    "none": (".base:no_fault", "no faults"),
}, check=callable)
