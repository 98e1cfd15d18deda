"""Link faults: slow (each outgoing peer batch held back 100-500 ms) or lossy (20-50 % of outgoing
peer messages dropped) links on a random minority of the nodes (the leader is often among them)."""

from __future__ import annotations

import random
from typing import Any

from ..backends.base import Backend
from .base import Fault


class LinkFault(Fault):
    def __init__(self, backend: Backend, rng: random.Random, kind: str) -> None:
        super().__init__(backend, rng)
        if kind not in ("slow", "lossy"):
            raise ValueError(f"link fault kind must be slow or lossy, not {kind!r}")
        self.name = kind

    def start(self) -> dict[str, Any] | None:
        nodes = self.b.names()
        k = max(1, (len(nodes) - 1) // 2)
        targets = sorted(self.rng.sample(nodes, k))
        if self.name == "slow":
            delay = round(self.rng.uniform(0.1, 0.5), 3)
            self.b.set_links(targets, delay=delay)
            return {"desc": f"slow links from {','.join(targets)}: {delay * 1000:.0f} ms per batch",
                    "targets": targets, "delay": delay}
        drop = round(self.rng.uniform(0.2, 0.5), 3)
        self.b.set_links(targets, drop_rate=drop)
        return {"desc": f"lossy links from {','.join(targets)}: {drop:.0%} dropped", "targets": targets,
                "drop_rate": drop}

    def stop(self) -> None:
        self.b.set_links([])


def slow_links(backend: Backend, rng: random.Random) -> Fault:
    return LinkFault(backend, rng, "slow")


def lossy_links(backend: Backend, rng: random.Random) -> Fault:
    return LinkFault(backend, rng, "lossy")
