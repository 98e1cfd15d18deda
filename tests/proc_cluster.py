"""A cluster of three real ``coterie node`` processes on loopback ports, for the fault tests.

Same style as ``tests/test_processes.py`` (which this does not import, so that file can change on its
own), plus what the fault tests need: extra node flags, SIGSTOP / SIGCONT, restarts, every member's
``Cluster.Status``, and a context manager that kills every process it started, whatever happens.

Invariants: a process is in ``procs`` exactly while it was started by this object and not yet reaped;
``close()`` resumes stopped processes, SIGTERMs, then SIGKILLs what is left after a bounded wait, so a
test never leaves a node behind. No call waits without a bound.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc  # type: ignore[import-untyped]

from coterie.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2_grpc

NAMES = ("n1", "n2", "n3")
_T = TypeVar("_T")


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class ProcCluster:
    """Three ``coterie node`` processes. ``tick_ms`` and ``extra`` (more flags, per node name or for
    every node under ``"*"``) are passed on the command line."""

    def __init__(self, root: Path, *, tick_ms: int = 50,
                 extra: Mapping[str, Sequence[str]] | None = None) -> None:
        ports = free_ports(6)
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.tick_ms = tick_ms
        self.extra = dict(extra or {})
        self.client = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(NAMES)}
        self.peer = {n: f"127.0.0.1:{ports[3 + i]}" for i, n in enumerate(NAMES)}
        self.ids = {n: i + 1 for i, n in enumerate(sorted(NAMES))}
        """Member ids as the nodes derive them (1..n over the sorted names)."""
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.initial = ",".join(f"{n}={self.peer[n]}" for n in NAMES)

    # ------------------------------------------------------------------------------ processes

    def cmd(self, name: str) -> list[str]:
        return [sys.executable, "-m", "coterie.client.cli", "node", "--name", name,
                "--data-dir", str(self.root / name), "--client-addr", self.client[name],
                "--peer-addr", self.peer[name], "--initial-cluster", self.initial,
                "--tick-ms", str(self.tick_ms), "--log-level", "warning",
                *self.extra.get("*", ()), *self.extra.get(name, ())]

    def start(self, name: str) -> None:
        assert name not in self.procs, f"{name} is already running"
        with open(self.root / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(self.cmd(name), stdout=log, stderr=log)

    def start_all(self) -> None:
        for n in NAMES:
            self.start(n)

    def kill(self, name: str) -> None:
        """``kill -9`` and reap."""
        p = self.procs.pop(name)
        self.paused.discard(name)
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets but runs no code until :meth:`resume`."""
        self.procs[name].send_signal(signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGCONT)
        self.paused.discard(name)

    def running(self) -> list[str]:
        return [n for n in NAMES if n in self.procs]

    def close(self) -> None:
        """Stop every process this object started (SIGCONT, SIGTERM, then SIGKILL after 10 s)."""
        for name in list(self.paused):
            with contextlib.suppress(ProcessLookupError):
                self.procs[name].send_signal(signal.SIGCONT)
        self.paused.clear()
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for name in list(self.procs):
            p = self.procs.pop(name)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def __enter__(self) -> ProcCluster:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def logs(self) -> str:
        """The tail of every node's log (for assertion messages)."""
        out = []
        for n in NAMES:
            path = self.root / f"{n}.log"
            if path.exists():
                out.append(f"--- {n}.log\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    # ------------------------------------------------------------------------------ observation

    def endpoints(self, names: Sequence[str] | None = None) -> list[str]:
        return [self.client[n] for n in (names if names is not None else NAMES)]

    def status(self, name: str, timeout: float = 1.0) -> cluster_pb2.StatusResponse | None:
        """``Cluster.Status`` of one member, or None if it does not answer within ``timeout``."""
        try:
            with grpc.insecure_channel(self.client[name]) as ch:
                st: cluster_pb2.StatusResponse = cluster_pb2_grpc.ClusterStub(ch).Status(
                    cluster_pb2.StatusRequest(), timeout=timeout
                )
                return st
        except grpc.RpcError:
            return None

    def statuses(self, timeout: float = 1.0) -> dict[str, cluster_pb2.StatusResponse | None]:
        return {n: self.status(n, timeout) for n in self.running() if n not in self.paused}

    def leader(self, timeout: float = 30.0) -> str:
        """The name of a member that says it leads, polling up to ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name in self.running():
                if name in self.paused:
                    continue
                st = self.status(name)
                if st is not None and st.role == cluster_pb2.ROLE_LEADER:
                    return name
            time.sleep(0.05)
        raise AssertionError(f"no leader within {timeout} s\n{self.logs()}")

    def settled(self, timeout: float = 30.0) -> tuple[str, int]:
        """Wait until every running member answers and agrees on one leader and one term;
        ``(leader name, term)``."""
        end = time.monotonic() + timeout
        last: dict[str, tuple[int, int, int] | None] = {}
        while time.monotonic() < end:
            sts = self.statuses()
            last = {n: None if s is None else (s.role, s.term, s.leader_id) for n, s in sts.items()}
            ok = [s for s in sts.values() if s is not None]
            leaders = [n for n, s in sts.items() if s is not None and s.role == cluster_pb2.ROLE_LEADER]
            if len(ok) == len(sts) and len(leaders) == 1:
                lead = sts[leaders[0]]
                assert lead is not None
                if all(s.term == lead.term and s.leader_id == lead.member_id for s in ok):
                    return leaders[0], lead.term
            time.sleep(0.05)
        raise AssertionError(f"the cluster did not settle within {timeout} s: {last}\n{self.logs()}")

    def quiet(self, leader: str | None = None, timeout: float = 30.0) -> cluster_pb2.StatusResponse:
        """Wait until ``leader`` (default: whoever leads) has nothing in flight: every member has
        published its client address (so no member-attribute proposal is still to come), and the
        leader's log is fully committed and applied. Tests that count the leader's pending proposals
        need this, not just :meth:`settled`. Returns the leader's status at that moment."""
        end = time.monotonic() + timeout
        st = None
        since: tuple[int, float] | None = None  # (last index, when first seen) while it holds still
        while time.monotonic() < end:
            who = leader if leader is not None else self.leader(timeout=max(0.1, end - time.monotonic()))
            st = self.status(who)
            now = time.monotonic()
            if (st is not None and st.role == cluster_pb2.ROLE_LEADER and st.members
                    and all(m.client_addr for m in st.members)
                    and st.commit_index == st.applied_index == st.last_index
                    and self._all_published()):
                # The leader's own entry shows its flags even before it published them: also wait
                # until the log has held still for longer than two publish intervals (0.5 s each).
                if since is None or since[0] != st.last_index:
                    since = (st.last_index, now)
                elif now - since[1] >= 1.2:
                    return st
            else:
                since = None
            time.sleep(0.05)
        raise AssertionError(f"{leader} did not go quiet within {timeout} s: {st}\n{self.logs()}")

    def _all_published(self) -> bool:
        """Every running member names every member's client address. A member knows the others'
        addresses only from the replicated book (its own comes from its flags), so this holds only
        once every publication was applied there."""
        for st in self.statuses().values():
            if st is None or not st.members or not all(m.client_addr for m in st.members):
                return False
        return True

    def kv(self, name: str) -> tuple[grpc.Channel, kv_pb2_grpc.KVStub]:
        """A raw channel and KV stub for one member (close the channel when done)."""
        ch = grpc.insecure_channel(self.client[name])
        return ch, kv_pb2_grpc.KVStub(ch)


@contextlib.contextmanager
def cluster(root: Path, *, tick_ms: int = 50,
            extra: Mapping[str, Sequence[str]] | None = None) -> Iterator[ProcCluster]:
    """Three started nodes with a settled leader; every process is reaped on exit."""
    c = ProcCluster(root, tick_ms=tick_ms, extra=extra)
    with c:
        c.start_all()
        c.settled()
        yield c


def poll(what: str, fn: Callable[[], _T | None], timeout: float, interval: float = 0.05) -> _T:
    """Call ``fn`` until it returns something other than None, or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v is not None:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


REPO = Path(__file__).resolve().parent.parent


@dataclass
class FloodResult:
    """What :func:`flood` saw: every member's Status at each poll, and the flood processes' summed
    ``counts`` (``"op:CODE"`` -> n) and ``details`` (error message -> n)."""

    observed: list[dict[str, cluster_pb2.StatusResponse | None]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    details: dict[str, int] = field(default_factory=dict)


def flood(c: ProcCluster, leader: str, *, floods: int, clients: int, requests: int, seconds: float,
          timeout: float) -> FloodResult:
    """Run ``floods`` bounded ``tests.flood`` processes (each ``clients`` clients, at most ``requests``
    requests each, for at most ``seconds``; puts to ``leader``, gets from every member) and poll every
    member's Status every 0.5 s until they end (at most ``timeout`` s). Every process is reaped; a
    flood process that fails fails the test."""
    cmd = [sys.executable, "-m", "tests.flood", "--leader", c.client[leader],
           "--members", ",".join(c.endpoints()), "--clients", str(clients), "--requests", str(requests),
           "--seconds", str(seconds), "--deadline", "30"]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(floods)]
    res = FloodResult()
    outs: list[tuple[bytes, bytes]] = []
    try:
        end = time.monotonic() + timeout
        while any(p.poll() is None for p in procs) and time.monotonic() < end:
            res.observed.append(c.statuses(timeout=2))
            time.sleep(0.5)
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
        r = json.loads(out)
        for k, v in r["counts"].items():
            res.counts[k] = res.counts.get(k, 0) + v
        for k, v in r.get("details", {}).items():
            res.details[k] = res.details.get(k, 0) + v
    return res
