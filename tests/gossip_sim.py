"""A deterministic, seeded simulation of many gossip cores on an in-memory network.

Discrete events on a fake clock: packet deliveries (with loss, uniform delay and partitions) and each
node's ``tick`` at its :meth:`Gossip.next_deadline`. A *slowed* member processes every event (packets and
ticks) late by a random delay in ``[slow_delay / 2, slow_delay]``, as a CPU-starved process would: its
clock is right, it is just behind. Killed members receive and send nothing.

Used by tests/test_gossip_sim.py and scripts/gossip-sim. Same seed, same arguments: same run.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coterie.node.gossip import EventKind, Gossip, GossipConfig, GossipEvent, MemberState
from coterie.node.gossip.codec import MemberRecord, PushPull, encode


@dataclass
class SimNode:
    name: str
    gossip: Gossip
    alive: bool = True
    slow: float = 0.0
    tick_at: float = float("inf")


@dataclass
class Sim:
    n: int
    seed: int = 0
    config: GossipConfig = field(default_factory=GossipConfig.lan)
    loss: float = 0.0
    delay: tuple[float, float] = (0.001, 0.010)
    keep: frozenset[EventKind] = frozenset(
        {EventKind.SUSPECT, EventKind.DEAD, EventKind.ALIVE, EventKind.LEAVE, EventKind.UPDATE})
    """Event kinds recorded in :attr:`log` (JOIN events are only counted: O(n^2) of them)."""

    def __post_init__(self) -> None:
        self.now = 0.0
        self.rng = random.Random(self.seed)
        self.nodes: dict[str, SimNode] = {}
        self._heap: list[tuple[float, int, str, str, str, bytes]] = []
        self._seq = 0
        self.groups: dict[str, int] | None = None
        self.log: list[tuple[str, GossipEvent]] = []
        self.joins = 0
        self.packets_delivered = 0
        self.packets_lost = 0
        self.on_event: Callable[[str, GossipEvent], None] | None = None
        for i in range(self.n):
            self.add_node(f"n{i}")

    # ------------------------------------------------------------------ setup and faults

    def add_node(self, name: str, meta: dict[str, str] | None = None) -> SimNode:
        g = Gossip(name, name, self.config, random.Random(f"{self.seed}/{name}"), self.now, meta)
        node = SimNode(name, g)
        self.nodes[name] = node
        self._reschedule(node)
        return node

    def join_all(self, seed: str = "n0", spread: float = 1.0) -> None:
        """Every other node joins through ``seed``, at random times over ``spread`` seconds."""
        for node in self.nodes.values():
            if node.name != seed:
                self._push(self.now + self.rng.uniform(0, spread), "join", node.name, seed, b"")

    def bootstrap_converged(self) -> None:
        """Start from a converged cluster without the O(n^2 log n) join flood: every node receives, through
        its ordinary ``receive``, the push-pull reply a seed that already knew every node would send.
        (Members learned from a push-pull are not re-broadcast, so nothing floods.) For measurements at
        large n; the join path itself is exercised by :meth:`join_all`."""
        records = tuple(MemberRecord(n.name, n.name, n.gossip.incarnation, MemberState.ALIVE, {})
                        for n in self.nodes.values())
        for node in self.nodes.values():
            packet = encode(PushPull(True, "n0" if node.name != "n0" else "n1", records))
            node.gossip.receive(packet, "n0", self.now)
            self._flush(node)

    def kill(self, name: str) -> None:
        self.nodes[name].alive = False

    def partition(self, *groups: Iterable[str]) -> None:
        self.groups = {name: i for i, g in enumerate(groups) for name in g}

    def heal(self) -> None:
        self.groups = None

    def slow_down(self, name: str, delay: float) -> None:
        self.nodes[name].slow = delay

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    # ------------------------------------------------------------------ running

    def run_until(self, t: float, stop: Callable[[], bool] | None = None) -> bool:
        """Process events up to time ``t``; with ``stop``, check it after each event and return True as
        soon as it holds."""
        heap = self._heap
        while heap and heap[0][0] <= t:
            at, _, kind, dst, src, data = heapq.heappop(heap)
            self.now = at
            node = self.nodes[dst]
            if not node.alive:
                continue
            if kind == "tick":
                if at != node.tick_at:
                    continue
                node.tick_at = float("inf")
                node.gossip.tick(at)
            elif kind == "deliver":
                if node.slow > 0:
                    self._push(at + self._lag(node), "process", dst, src, data)
                    continue
                node.gossip.receive(data, src, at)
            elif kind == "process":
                node.gossip.receive(data, src, at)
            else:  # join; like a real host, retry every 2 s until some member answered (the push-pull
                # request or its reply may be lost)
                if len(node.gossip.members()) > 1:
                    continue
                node.gossip.join([src], at)
                self._push(at + 2.0, "join", dst, src, b"")
            self._flush(node)
            if stop is not None and stop():
                return True
        self.now = max(self.now, t)
        return stop is not None and stop()

    def _lag(self, node: SimNode) -> float:
        return self.rng.uniform(node.slow / 2, node.slow)

    def _push(self, at: float, kind: str, dst: str, src: str, data: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, dst, src, data))

    def _reschedule(self, node: SimNode) -> None:
        d = node.gossip.next_deadline()
        if node.slow > 0:
            d += self._lag(node)
        d = max(d, self.now)
        if d != node.tick_at and d != float("inf"):
            node.tick_at = d
            self._push(d, "tick", node.name, node.name, b"")

    def _flush(self, node: SimNode) -> None:
        g = node.gossip
        for addr, packet in g.take_outbox():
            if self.groups is not None and self.groups.get(addr, -1) != self.groups.get(node.name, -2):
                self.packets_lost += 1
                continue
            if self.loss > 0 and self.rng.random() < self.loss:
                self.packets_lost += 1
                continue
            if addr not in self.nodes:
                continue
            self.packets_delivered += 1
            self._push(self.now + self.rng.uniform(*self.delay), "deliver", addr, node.name, packet)
        for ev in g.take_events():
            if ev.kind is EventKind.JOIN:
                self.joins += 1
            elif ev.kind in self.keep:
                self.log.append((node.name, ev))
            if self.on_event is not None:
                self.on_event(node.name, ev)
        self._reschedule(node)

    # ------------------------------------------------------------------ observations

    def view(self, observer: str) -> dict[str, MemberState]:
        return {m.name: m.state for m in self.nodes[observer].gossip.members()}

    def converged(self) -> bool:
        """Every live node sees exactly the live nodes as alive, and every killed node it knows as not
        alive."""
        live = {n.name for n in self.live()}
        for name in live:
            v = self.view(name)
            if {m for m, s in v.items() if s == MemberState.ALIVE} != live:
                return False
        return True

    def bytes_sent(self) -> int:
        return sum(n.gossip.stats.bytes_sent for n in self.nodes.values())

    def false_events(self, kind: EventKind, healthy: set[str]) -> list[tuple[str, GossipEvent]]:
        """Events of ``kind`` about members in ``healthy``."""
        return [(o, e) for o, e in self.log if e.kind is kind and e.name in healthy]


# ---------------------------------------------------------------------- measurements (shared with
# scripts/gossip-sim and tests/test_gossip_sim.py)


@dataclass
class KillResult:
    first_suspect: float
    """Seconds from the kill to the first suspicion of the victim anywhere."""
    all_dead: float
    """Seconds from the kill until every live member has the victim dead (inf: not within the run)."""
    false_deaths: int


def measure_kill(sim: Sim, victim: str, horizon: float) -> KillResult:
    t0 = sim.now
    sim.log.clear()
    sim.kill(victim)
    observers = [n.name for n in sim.live()]

    def all_dead() -> bool:
        for o in observers:
            m = sim.nodes[o].gossip.member(victim)
            if m is not None and m.state in (MemberState.ALIVE, MemberState.SUSPECT):
                return False
        return True

    # Check the (O(n)) predicate only at DEAD events about the victim.
    flag = {"dead_seen": 0}

    def on_event(_: str, e: GossipEvent) -> None:
        if e.name == victim and e.kind is EventKind.DEAD:
            flag["dead_seen"] += 1

    sim.on_event = on_event
    done = sim.run_until(t0 + horizon, stop=lambda: flag["dead_seen"] >= len(observers) and all_dead())
    sim.on_event = None
    sus = [e.at for _, e in sim.log if e.name == victim and e.kind is EventKind.SUSPECT]
    false = sum(1 for _, e in sim.log if e.name != victim and e.kind is EventKind.DEAD)
    return KillResult(min(sus) - t0 if sus else float("inf"), sim.now - t0 if done else float("inf"), false)


def measure_update(sim: Sim, who: str, fraction: float, horizon: float) -> float:
    """Seconds for a meta update of ``who`` to reach ``fraction`` of the other live members."""
    t0 = sim.now
    g = sim.nodes[who].gossip
    g.update_meta({"v": str(t0)}, t0)
    target_inc = g.incarnation
    sim._flush(sim.nodes[who])
    need = math.ceil(fraction * (len(sim.live()) - 1))
    seen: set[str] = set()

    def on_event(observer: str, e: GossipEvent) -> None:
        if e.name == who and e.incarnation >= target_inc:
            seen.add(observer)

    sim.on_event = on_event
    done = sim.run_until(t0 + horizon, stop=lambda: len(seen) >= need)
    sim.on_event = None
    return sim.now - t0 if done else float("inf")


@dataclass
class FalsePositives:
    suspicions: int
    """Suspect events (at any observer) about members that were never killed."""
    deaths: int
    """Dead events about members that were never killed."""
    about_healthy: int
    """Dead events about members that are neither killed nor slowed."""
    bytes_per_member_s: float


def measure_false_positives(sim: Sim, duration: float, slowed: Iterable[str] = ()) -> FalsePositives:
    t0, b0 = sim.now, sim.bytes_sent()
    sim.log.clear()
    sim.run_until(t0 + duration)
    live = {n.name for n in sim.live()}
    healthy = live - set(slowed)
    sus = sum(1 for _, e in sim.log if e.kind is EventKind.SUSPECT and e.name in live)
    dead = sum(1 for _, e in sim.log if e.kind is EventKind.DEAD and e.name in live)
    healthy_dead = sum(1 for _, e in sim.log if e.kind is EventKind.DEAD and e.name in healthy)
    return FalsePositives(sus, dead, healthy_dead, (sim.bytes_sent() - b0) / len(sim.nodes) / duration)
