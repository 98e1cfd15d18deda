"""Process faults: ``kill -9`` (the node is restarted when the fault stops) and SIGSTOP pauses
(SIGCONT when it stops). The target is the leader half of the time, else a random node; a kill
hits a single node, so a majority survives and the cluster must stay available."""

from __future__ import annotations

from typing import Any

from .base import Fault


class KillFault(Fault):
    name = "kill"

    def start(self) -> dict[str, Any] | None:
        self.target, how = self.pick_target()
        self.b.kill(self.target)
        return {"desc": f"kill -9 {self.target} ({how})", "target": self.target, "how": how}

    def stop(self) -> None:
        self.b.start(self.target)


class PauseFault(Fault):
    name = "pause"

    def start(self) -> dict[str, Any] | None:
        self.target, how = self.pick_target()
        self.b.pause(self.target)
        return {"desc": f"SIGSTOP {self.target} ({how})", "target": self.target, "how": how}

    def stop(self) -> None:
        self.b.resume(self.target)
