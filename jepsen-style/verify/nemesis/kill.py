"""Process faults: ``kill -9`` (the node is restarted when the fault stops) and SIGSTOP pauses
(SIGCONT when it stops). The target is the leader half of the time, else a random node; a kill
hits a single node, so a majority survives and the cluster must stay available.

The stop of a kill waits (up to 60 s) until the restarted node answers ``Status`` again: under CPU
contention a Python node can take several seconds to start, and a next fault hitting another node
meanwhile would leave a three-node cluster without a quorum (two nodes down at once)."""

from __future__ import annotations

import time
from typing import Any

from .base import Fault

RESTART_WAIT = 60.0


class KillFault(Fault):
    name = "kill"

    def start(self) -> dict[str, Any] | None:
        self.target, how = self.pick_target()
        self.b.kill(self.target)
        return {"desc": f"kill -9 {self.target} ({how})", "target": self.target, "how": how}

    def stop(self) -> None:
        self.b.start(self.target)
        deadline = time.monotonic() + RESTART_WAIT
        while time.monotonic() < deadline and self.b.running(self.target):
            if self.b.status(self.target) is not None:
                return
            time.sleep(0.1)


class PauseFault(Fault):
    name = "pause"

    def start(self) -> dict[str, Any] | None:
        self.target, how = self.pick_target()
        self.b.pause(self.target)
        return {"desc": f"SIGSTOP {self.target} ({how})", "target": self.target, "how": how}

    def stop(self) -> None:
        self.b.resume(self.target)
