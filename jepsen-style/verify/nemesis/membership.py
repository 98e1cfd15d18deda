"""Membership churn: remove a member, add it back as a learner, promote it.

``start`` removes a node (the leader half of the time, else a random member) with ``MemberRemove``;
the removed node shuts down by itself (the backend SIGKILLs it after a bound if it does not). While
the fault is held the cluster runs one member short. ``stop`` wipes the node's data directory, adds
it back as a learner with ``MemberAdd`` (the leader picks a new id; removed ids are never reused),
starts it with ``--initial-cluster-state existing`` and promotes it once it has caught up
(``MemberPromote`` is refused while the learner is behind: retried within a bound). Each step is
logged in the history as a nemesis ``info`` event (``f``: ``member``), so the report shows how long
the learner took to catch up.

Invariants: at most one node is out of the voters at a time (the schedule runs one fault at a time),
so a majority of the original size always remains; if ``stop`` fails half-way, the node stays
``removed`` or ``learner`` in the backend and :meth:`Schedule.heal_all` finishes the job
(:meth:`Backend.restore_membership`). A fault is not started while any node is out of the voters.
"""

from __future__ import annotations

import time
from typing import Any

from .base import Fault


class MembershipFault(Fault):
    name = "member"
    target = ""

    def start(self) -> dict[str, Any] | None:
        if any(p.removed or p.learner for p in self.b.nodes.values()) or len(self.b.nodes) < 2:
            return None
        self.target, how = self.pick_target()
        t0 = time.monotonic()
        info = self.b.remove_member(self.target)
        self.note({"step": "removed", "target": self.target, **info,
                   "seconds": round(time.monotonic() - t0, 3)})
        return {"desc": f"remove {self.target} (id {info['id']}, {how}), add back as learner, promote",
                "target": self.target, "how": how, "old_id": info["id"]}

    def stop(self) -> None:
        """Add the target back and promote it (whichever of the two is still to do)."""
        p = self.b.nodes.get(self.target)
        if p is None or not (p.removed or p.learner):
            return
        if p.learner:
            self._promote()
            return
        t0 = time.monotonic()
        added = self.b.add_member(self.target)
        self.note({"step": "learner", "target": self.target, **added,
                   "seconds": round(time.monotonic() - t0, 3)})
        self._promote()

    def _promote(self) -> None:
        t1 = time.monotonic()
        promoted = self.b.promote_member(self.target)
        self.note({"step": "promoted", "target": self.target, **promoted,
                   "seconds": round(time.monotonic() - t1, 3)})
