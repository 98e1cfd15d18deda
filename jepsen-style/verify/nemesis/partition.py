"""Partition faults: grudges (node -> nodes it drops) of several shapes.

- ``halves``: the nodes shuffled and cut into two halves (a minority and a majority).
- ``leader``: the current leader (a random node if none is known) isolated from everyone.
- ``ring``: majorities ring: every node sees a majority, no two nodes see the same majority. With
  five or more nodes the ring is symmetric (a node sees its ``k`` neighbours on each side, the
  smallest ``k`` giving a majority); with three it is one-way (each node hears only its successor,
  so the node it hears from does not hear it back).
- ``oneway``: a random node (or the leader) either hears no one or is heard by no one, while its
  own messages (or the others') still get through.

Every shape is a pure function of the node list, the rng and the leader, so it is testable alone.
"""

from __future__ import annotations

import random
from typing import Any

from ..backends.base import Backend, Grudge
from .base import Fault

PARTITION_SHAPES = ("halves", "leader", "ring", "oneway")


def complete_grudge(components: list[list[str]]) -> dict[str, frozenset[str]]:
    """Each node drops every node outside its own component."""
    everyone = {n for c in components for n in c}
    return {n: frozenset(everyone - set(c)) for c in components for n in c}


def halves(nodes: list[str], rng: random.Random) -> dict[str, frozenset[str]]:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    k = len(shuffled) // 2
    return complete_grudge([shuffled[:k], shuffled[k:]])


def isolate(nodes: list[str], node: str) -> dict[str, frozenset[str]]:
    return complete_grudge([[node], [n for n in nodes if n != node]])


def majorities_ring(nodes: list[str], rng: random.Random) -> dict[str, frozenset[str]]:
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    majority = n // 2 + 1
    if n < 3:
        return {}
    sees: dict[str, set[str]] = {}
    if n >= 5:
        k = majority // 2  # the smallest k with 2k + 1 >= majority
        for i, node in enumerate(ring):
            sees[node] = {ring[(i + d) % n] for d in range(-k, k + 1)}
    else:  # 3 or 4 nodes: one-way ring, each node hears itself and its next majority-1 successors
        for i, node in enumerate(ring):
            sees[node] = {ring[(i + d) % n] for d in range(majority)}
    return {node: frozenset(set(ring) - s) for node, s in sees.items()}


def oneway(nodes: list[str], node: str, inbound: bool) -> dict[str, frozenset[str]]:
    """``inbound``: ``node`` hears no one; else no one hears ``node``."""
    others = [n for n in nodes if n != node]
    if inbound:
        return {node: frozenset(others)}
    return {n: frozenset([node]) for n in others}


def describe(grudge: Grudge) -> str:
    return "; ".join(f"{n} drops {','.join(sorted(g))}" for n, g in sorted(grudge.items()) if g)


class PartitionFault(Fault):
    name = "partition"

    def __init__(self, backend: Any, rng: random.Random, shapes: list[str]) -> None:
        super().__init__(backend, rng)
        self.shapes = shapes

    def start(self) -> dict[str, Any] | None:
        nodes = self.b.names()
        if len(nodes) < 2:
            return None
        shape = self.rng.choice(self.shapes)
        target = ""
        if shape == "halves":
            g = halves(nodes, self.rng)
        elif shape == "leader":
            target = self.b.leader() or self.rng.choice(nodes)
            g = isolate(nodes, target)
        elif shape == "ring":
            g = majorities_ring(nodes, self.rng)
        else:
            target, _ = self.pick_target()
            g = oneway(nodes, target, self.rng.random() < 0.5)
        self.b.partition(g)
        return {"desc": f"partition {shape}: {describe(g)}", "shape": shape, "target": target,
                "grudge": {n: sorted(v) for n, v in g.items()}}

    def stop(self) -> None:
        self.b.heal_network()


# The registry's factories (:data:`coterie.verify.nemesis.NEMESES`): ``partition`` and one per shape.


def any_partition(backend: Backend, rng: random.Random) -> Fault:
    return PartitionFault(backend, rng, list(PARTITION_SHAPES))


def halves_partition(backend: Backend, rng: random.Random) -> Fault:
    return PartitionFault(backend, rng, ["halves"])


def leader_partition(backend: Backend, rng: random.Random) -> Fault:
    return PartitionFault(backend, rng, ["leader"])


def ring_partition(backend: Backend, rng: random.Random) -> Fault:
    return PartitionFault(backend, rng, ["ring"])


def oneway_partition(backend: Backend, rng: random.Random) -> Fault:
    return PartitionFault(backend, rng, ["oneway"])
