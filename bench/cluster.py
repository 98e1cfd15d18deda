"""Three-member clusters on loopback for benchmarks: coterie, etcd and PySyncObj.

Invariants:

- every process is started by a :class:`ProcGroup` and dies with it: :meth:`ProcGroup.stop` sends
  SIGTERM, waits, then SIGKILLs whatever is left; it is idempotent and the clusters call it from
  ``__exit__`` (so also on failure); on Linux each child also gets ``PR_SET_PDEATHSIG`` = SIGKILL, so
  it dies if the harness itself is killed;
- each cluster has fresh data directories under its own root and fresh free ports on 127.0.0.1;
- every wait is bounded by an explicit deadline and raises :class:`ClusterError` when it passes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

NAMES = ("n1", "n2", "n3")


class ClusterError(RuntimeError):
    """A cluster did not start, elect a leader or finish in time; the message says which logs to read."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free on 127.0.0.1 a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads; Linux ``/proc``).
    0.0 if it is gone or ``/proc`` is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; utime, stime are fields 14, 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ProcGroup:
    """Processes of one cluster; their output goes to ``root/<name>.log``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, argv: list[str], *, stdout: Path | None = None) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed right after the fork
        out = open(stdout, "ab") if stdout is not None else log  # noqa: SIM115 - same
        try:
            p = subprocess.Popen(argv, stdout=out, stderr=log, stdin=subprocess.DEVNULL,
                                 preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        finally:
            log.close()
            if out is not log:
                out.close()
        self.procs[name] = p
        return p

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each process, by name."""
        return {n: cpu_seconds(p.pid) for n, p in self.procs.items()}

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise ClusterError(f"processes exited early: {dead}; see the logs in {self.root}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM everything, wait up to ``timeout`` s in all, then SIGKILL the rest."""
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()


def _poll(what: str, cond: Callable[[], Any], timeout: float, group: ProcGroup) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        try:
            group.check_alive()
        except ClusterError:
            v = cond()  # it may have finished and exited in between
            if v:
                return v
            raise
        if time.monotonic() > end:
            raise ClusterError(f"{what} not within {timeout:g} s; see the logs in {group.root}")
        time.sleep(0.1)


class _Cluster:
    group: ProcGroup

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.group.stop()


class CoterieCluster(_Cluster):
    """Three ``coterie node`` processes (this interpreter's coterie) with ``tick_ms`` Raft ticks."""

    def __init__(self, root: Path, *, tick_ms: int = 100) -> None:
        ports = free_ports(6)
        self.group = ProcGroup(root)
        self.client = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(NAMES)}
        self.peer = {n: f"127.0.0.1:{ports[3 + i]}" for i, n in enumerate(NAMES)}
        self.tick_ms = tick_ms

    @property
    def endpoints(self) -> str:
        return ",".join(self.client[n] for n in NAMES)

    def start(self, timeout: float = 30.0) -> str:
        """Start the three nodes and return the leader's name once one is elected."""
        initial = ",".join(f"{n}={self.peer[n]}" for n in NAMES)
        for n in NAMES:
            self.group.spawn(n, [sys.executable, "-m", "coterie.client.cli", "node", "--name", n,
                                 "--data-dir", str(self.group.root / n), "--client-addr", self.client[n],
                                 "--peer-addr", self.peer[n], "--initial-cluster", initial,
                                 "--tick-ms", str(self.tick_ms), "--log-level", "warning"])
        return str(_poll("a coterie leader", self.leader, timeout, self.group))

    def leader(self) -> str | None:
        import grpc  # type: ignore[import-untyped]

        from coterie.v1 import cluster_pb2, cluster_pb2_grpc

        for n in NAMES:
            try:
                with grpc.insecure_channel(self.client[n]) as ch:
                    st = cluster_pb2_grpc.ClusterStub(ch).Status(cluster_pb2.StatusRequest(), timeout=1)
            except grpc.RpcError:
                continue
            if st.role == cluster_pb2.ROLE_LEADER:
                return n
        return None

    def pid(self, name: str) -> int:
        return self.group.procs[name].pid


class EtcdCluster(_Cluster):
    """Three ``etcd`` processes (the binary on PATH, or ``etcd_bin``)."""

    def __init__(self, root: Path, *, etcd_bin: str = "etcd") -> None:
        ports = free_ports(6)
        self.group = ProcGroup(root)
        self.client = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(NAMES)}
        self.peer = {n: f"127.0.0.1:{ports[3 + i]}" for i, n in enumerate(NAMES)}
        self.etcd_bin = etcd_bin

    def start(self, timeout: float = 30.0) -> str:
        """Start the three members; the leader's client address once one is elected."""
        initial = ",".join(f"{n}=http://{self.peer[n]}" for n in NAMES)
        token = f"bench-{os.getpid()}-{time.monotonic_ns()}"
        for n in NAMES:
            self.group.spawn(n, [
                self.etcd_bin, "--name", n, "--data-dir", str(self.group.root / n),
                "--listen-client-urls", f"http://{self.client[n]}",
                "--advertise-client-urls", f"http://{self.client[n]}",
                "--listen-peer-urls", f"http://{self.peer[n]}",
                "--initial-advertise-peer-urls", f"http://{self.peer[n]}",
                "--initial-cluster", initial, "--initial-cluster-token", token,
                "--initial-cluster-state", "new", "--logger", "zap", "--log-level", "warn"])
        return str(_poll("an etcd leader", self.leader, timeout, self.group))

    def leader(self) -> str | None:
        """The leader's client address, if every member agrees on one."""
        import grpc
        from aetcd import rpc

        ids: dict[int, str] = {}
        leaders = set()
        for n in NAMES:
            try:
                with grpc.insecure_channel(self.client[n]) as ch:
                    st = rpc.MaintenanceStub(ch).Status(rpc.StatusRequest(), timeout=1)
            except grpc.RpcError:
                return None
            ids[st.header.member_id] = self.client[n]
            leaders.add(st.leader)
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    def name_of(self, client_addr: str) -> str:
        return next(n for n in NAMES if self.client[n] == client_addr)


def run_pysyncobj(root: Path, args: list[str], *, timeout: float, batch: bool) -> list[dict[str, Any]]:
    """Run :mod:`coterie.bench.pysyncobj_node` as three processes; the leader runs the workloads given by
    ``args`` in-process and prints one JSON result per line. Returns the results; every process is
    stopped before returning."""
    ports = free_ports(3)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    group = ProcGroup(root)
    done = root / "done"
    outs = [root / f"{n}.out" for n in NAMES]
    try:
        for i, n in enumerate(NAMES):
            partners = ",".join(a for j, a in enumerate(addrs) if j != i)
            group.spawn(n, [sys.executable, "-m", "coterie.bench.pysyncobj_node", "--self", addrs[i],
                            "--partners", partners, "--done-file", str(done),
                            "--max-seconds", str(timeout), "--batch" if batch else "--no-batch", *args],
                        stdout=outs[i])

        def finished() -> bool:
            return done.exists()

        _poll("the PySyncObj workloads", finished, timeout, group)
        results = []
        for o in outs:
            if o.exists():
                for line in o.read_text().splitlines():
                    if line.startswith("{"):
                        results.append(json.loads(line))
        return results
    finally:
        group.stop()
