"""Three real ``coterie node`` processes on loopback, driven over gRPC with the generated stubs.

Acknowledged writes survive ``kill -9`` of the leader in the middle of a write load, and then of every
node at once; a node refuses a data directory that belongs to another node. Every loop is bounded
in requests and time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.proc_cluster import free_ports

NAMES = ("n1", "n2", "n3")


class ProcCluster:
    def __init__(self, root: Path) -> None:
        ports = free_ports(6)
        self.root = root
        self.client = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(NAMES)}
        self.peer = {n: f"127.0.0.1:{ports[3 + i]}" for i, n in enumerate(NAMES)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.initial = ",".join(f"{n}={self.peer[n]}" for n in NAMES)

    def cmd(self, name: str, data_dir: Path | None = None) -> list[str]:
        return [sys.executable, "-m", "coterie.client.cli", "node", "--name", name,
                "--data-dir", str(data_dir or self.root / name), "--client-addr", self.client[name],
                "--peer-addr", self.peer[name], "--initial-cluster", self.initial,
                # 20 ms ticks keep the tests quick; 25 ticks (0.5-1 s election timeouts) keep a
                # leader in place while two test workers load both cores.
                "--tick-ms", "20", "--election-ticks", "25", "--log-level", "warning"]

    def start(self, name: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(self.cmd(name), stdout=log, stderr=log)

    def kill(self, name: str) -> None:
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            p = self.procs.pop(name)
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def status(self, name: str) -> cluster_pb2.StatusResponse | None:
        try:
            with grpc.insecure_channel(self.client[name]) as ch:
                st: cluster_pb2.StatusResponse = cluster_pb2_grpc.ClusterStub(ch).Status(
                    cluster_pb2.StatusRequest(), timeout=1
                )
                return st
        except grpc.RpcError:
            return None

    def leader(self, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name in self.procs:
                st = self.status(name)
                if st is not None and st.role == cluster_pb2.ROLE_LEADER:
                    return name
            time.sleep(0.05)
        raise AssertionError("no leader within the time limit")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcCluster]:
    c = ProcCluster(tmp_path)
    for n in NAMES:
        c.start(n)
    try:
        yield c
    finally:
        c.stop_all()


def put(addr: str, key: bytes, value: bytes) -> kv_pb2.PutResponse:
    with grpc.insecure_channel(addr) as ch:
        req = kv_pb2.PutRequest(key=key, value=value)
        resp: kv_pb2.PutResponse = kv_pb2_grpc.KVStub(ch).Put(req, timeout=2)
        return resp


def get_all(addr: str, prefix: bytes, serializable: bool = False) -> dict[bytes, bytes]:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    with grpc.insecure_channel(addr) as ch:
        r = kv_pb2_grpc.KVStub(ch).Range(
            kv_pb2.RangeRequest(key=prefix, range_end=end, serializable=serializable), timeout=5)
    return {kv.key: kv.value for kv in r.kvs}


def get_all_retrying(addr: Callable[[], str], prefix: bytes, timeout: float = 20.0) -> dict[bytes, bytes]:
    """:func:`get_all` at ``addr()``, retried (asking ``addr()`` again) until it answers or ``timeout``
    seconds pass: members that just restarted may not answer at once."""
    end = time.monotonic() + timeout
    while True:
        try:
            return get_all(addr(), prefix)
        except grpc.RpcError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def write_load(c: ProcCluster, n: int, prefix: str, deadline: float,
               kill_leader_at: int | None = None) -> dict[bytes, bytes]:
    """Up to ``n`` puts, following the leader; returns the acknowledged ones."""
    acked: dict[bytes, bytes] = {}
    leader = c.leader()
    i = 0
    while i < n and time.monotonic() < deadline:
        if kill_leader_at is not None and i == kill_leader_at:
            c.kill(leader)
            kill_leader_at = None
        key, value = f"{prefix}{i:05d}".encode(), f"v{i}".encode()
        try:
            put(c.client[leader], key, value)
            acked[key] = value
            i += 1
        except grpc.RpcError:
            try:
                leader = c.leader(timeout=10)
            except AssertionError:
                time.sleep(0.1)
    return acked


def test_kill_leader_then_everyone_loses_no_acknowledged_write(cluster: ProcCluster) -> None:
    c = cluster
    deadline = time.monotonic() + 90
    acked = write_load(c, 300, "a/", deadline, kill_leader_at=150)
    assert len(acked) >= 250, f"only {len(acked)} writes acknowledged"
    killed = [n for n in NAMES if n not in c.procs]
    for n in killed:
        c.start(n)
    # The restarted node may cost the leader its place: each attempt asks whoever leads then.
    got = get_all_retrying(lambda: c.client[c.leader()], b"a/")
    missing = [k for k in acked if got.get(k) != acked[k]]
    assert not missing, f"lost acknowledged writes after a leader kill: {missing[:5]}"
    # Every node at once.
    for n in list(c.procs):
        c.kill(n)
    for n in NAMES:
        c.start(n)
    c.leader()  # a leader first, then
    for n in NAMES:  # linearizable reads on every member, followers included

        def addr(n: str = n) -> str:
            return c.client[n]

        got = get_all_retrying(addr, b"a/")
        missing = [k for k in acked if got.get(k) != acked[k]]
        assert not missing, f"{n} lost acknowledged writes after killing every node: {missing[:5]}"


def test_data_dir_of_another_node_is_refused(cluster: ProcCluster, tmp_path: Path) -> None:
    c = cluster
    c.leader()
    r = subprocess.run(c.cmd("n2", data_dir=tmp_path / "n1"), capture_output=True, timeout=30,
                       env={**os.environ})
    assert r.returncode != 0
    assert b"belongs to node 'n1'" in r.stderr


def test_a_port_in_use_is_refused(cluster: ProcCluster, tmp_path: Path) -> None:
    """A second node given the addresses of a running one fails with a clear error instead of sharing
    the port (grpc's default SO_REUSEPORT would let it bind silently)."""
    c = cluster
    c.leader()
    r = subprocess.run(c.cmd("n2", data_dir=tmp_path / "other"), capture_output=True, timeout=60,
                       env={**os.environ})
    assert r.returncode != 0
    assert b"cannot listen on --peer-addr" in r.stderr and b"in use" in r.stderr, r.stderr[-2000:]


def test_every_log_line_names_node_term_and_role(tmp_path: Path) -> None:
    """A node's stderr is one JSON object per line, and every line carries the node, term and role
    (structured logs, as the brief asks), whichever module wrote it."""
    client, peer = (f"127.0.0.1:{p}" for p in free_ports(2))
    log_path = tmp_path / "solo.log"
    with open(log_path, "w") as log:
        p = subprocess.Popen([sys.executable, "-m", "coterie.client.cli", "node", "--name", "solo",
                              "--data-dir", str(tmp_path / "solo"), "--client-addr", client,
                              "--peer-addr", peer, "--initial-cluster", f"solo={peer}", "--tick-ms", "20",
                              "--log-level", "info"], stderr=log)
        try:
            end = time.monotonic() + 60
            while '"LEADER"' not in log_path.read_text():  # a single voter elects itself
                assert time.monotonic() < end and p.poll() is None, log_path.read_text()
                time.sleep(0.1)
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    assert any(x.get("msg") == "node stopped" for x in lines), lines
    for x in lines:
        assert {"ts", "level", "logger", "msg", "node", "term", "role"} <= x.keys(), x
