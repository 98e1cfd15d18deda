"""Workloads: one module each (its generator, its client calls and its checker); see :mod:`.base`.

:data:`WORKLOADS` is the one list of them (``--workload``): each entry is a
:class:`~coterie.verify.workloads.base.Workload` subclass. Adding a workload is one entry here plus
its module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:
    from .base import Workload


def _is_workload(obj: Any) -> bool:
    from .base import Workload

    return isinstance(obj, type) and issubclass(obj, Workload)


WORKLOADS: Registry[type[Workload]] = Registry("workload", __name__, {
    "register": (".register:RegisterWorkload",
                 "read / write / cas on several keys, checked for linearizability per key"),
    "set": (".set:SetWorkload", "adds to a set, checked that every acknowledged add is in the final read"),
    "watch": (".watch:WatchWorkload", "watchers see every change exactly once, in revision order"),
    "lock": (".lock:LockWorkload",
             "fenced increments under a lock: no lost update, tokens increase, stale holders refused"),
    "lease": (".lease:LeaseWorkload",
              "leases kept alive then dropped: never expired early, expired within TTL + allowance"),
}, check=_is_workload)
