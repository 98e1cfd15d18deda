"""The ``local`` backend: nodes on loopback as child processes, no root needed.

Network faults go through each node's fault-injection admin API (``coterie.v1.FaultInjection``,
served only by nodes started with ``--enable-fault-injection``): a grudge becomes each node's
``blocked_in`` set (messages from those members are dropped on arrival), slow and lossy links its
``delay_seconds`` and ``drop_rate``, a skewed clock (the ``clock`` nemeses) its ``clock_rate`` and
``clock_offset_seconds`` (every SetFaults carries the whole state, so one kind of fault never
resets another). A node that is down or paused when a fault is set gets it when
it comes back (:meth:`LocalBackend.start` re-applies the faults in force), so a restarted node cannot
slip out of a partition. Nodes started without fault injection refuse, and setting a fault then
raises ``RuntimeError``.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import grpc  # type: ignore[import-untyped]

from coterie.v1 import faults_pb2, faults_pb2_grpc

from .base import Backend, Grudge, NodeOptions, NodeProc, free_ports


class LocalBackend(Backend):
    name = "local"

    def __init__(self, n: int, root: Path, options: NodeOptions | None = None) -> None:
        super().__init__(n, root, options or NodeOptions())
        self._grudge: dict[str, frozenset[str]] = {}
        self._links: dict[str, tuple[float, float]] = {}
        self._clocks: dict[str, tuple[float, float]] = {}
        """node -> (rate, offset) of its lease clock, for the skewed ones."""
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        """Nodes whose faults could not be set (down or paused): retried by :meth:`sync_faults`."""

    def setup(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * self.n)
        for i in range(self.n):
            name = f"n{i + 1}"
            client = f"127.0.0.1:{ports[i]}"
            peer = f"127.0.0.1:{ports[self.n + i]}"
            self.nodes[name] = NodeProc(name, i + 1, client, peer, client, peer, self.root / "data" / name)

    def teardown(self) -> None:
        self.stop_all()

    def wipe(self) -> None:
        shutil.rmtree(self.root / "data", ignore_errors=True)

    def start(self, name: str) -> None:
        super().start(name)
        with self._lock:
            self._pending.add(name)
        threading.Thread(target=self._apply_when_up, args=(name, 30.0), daemon=True).start()

    def _apply_when_up(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running(name):
            try:
                if self._apply(name):
                    return
            except RuntimeError:  # started without fault injection: setting a fault raises instead
                return
            time.sleep(0.1)

    # ------------------------------------------------------------------------------ faults

    def _state(self, name: str) -> faults_pb2.FaultState:
        ids = {n: p.id for n, p in self.nodes.items()}
        delay, drop = self._links.get(name, (0.0, 0.0))
        rate, offset = self._clocks.get(name, (1.0, 0.0))
        return faults_pb2.FaultState(blocked_in=sorted(ids[m] for m in self._grudge.get(name, ())),
                                     drop_rate=drop, delay_seconds=delay,
                                     clock_rate=0.0 if rate == 1.0 else rate, clock_offset_seconds=offset)

    def _apply(self, name: str) -> bool:
        """Send ``name`` its faults; False if it did not answer (it stays pending)."""
        p = self.nodes[name]
        if not self.running(name) or p.paused:
            return False
        with self._lock:
            state = self._state(name)
        try:
            faults_pb2_grpc.FaultInjectionStub(self._channel(name)).SetFaults(state, timeout=2.0)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise RuntimeError(f"{name}: {exc.details()}") from exc
            return False
        with self._lock:
            self._pending.discard(name)
        return True

    def sync_faults(self) -> list[str]:
        """Apply the faults in force to every node that has not got them; the nodes still pending."""
        with self._lock:
            pending = sorted(self._pending)
        return [n for n in pending if not self._apply(n)]

    def partition(self, grudge: Grudge) -> None:
        with self._lock:
            self._grudge = {n: frozenset(g) for n, g in grudge.items() if g}
            self._pending = set(self.nodes)
        self.sync_faults()

    def set_links(self, names: list[str], *, delay: float = 0.0, drop_rate: float = 0.0) -> None:
        with self._lock:
            self._links = {n: (delay, drop_rate) for n in names if delay or drop_rate}
            self._pending = set(self.nodes)
        self.sync_faults()

    def set_clock(self, name: str, rate: float = 1.0, offset: float = 0.0) -> None:
        with self._lock:
            if rate == 1.0 and offset == 0.0:
                self._clocks.pop(name, None)
            else:
                self._clocks[name] = (rate, offset)
            self._pending.add(name)
        self._apply(name)

    def heal_clocks(self) -> None:
        with self._lock:
            skewed = list(self._clocks)
            self._clocks.clear()
            self._pending.update(skewed)
        self.sync_faults()

    def resume(self, name: str) -> None:
        super().resume(name)
        self.sync_faults()
