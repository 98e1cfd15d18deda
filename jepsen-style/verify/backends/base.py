"""What every backend offers the runner and the nemeses: a cluster of ``coterie node`` processes
that can be started, killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT), partitioned in any
shape (a *grudge*) and given slow or lossy links.

Invariants every backend keeps:

- ``teardown()`` ends every process it started and undoes every network change it made, even if
  a run failed half-way; it is idempotent.
- A *grudge* maps a node to the set of nodes whose Raft messages it drops on arrival. A symmetric
  grudge is an ordinary partition; an asymmetric one is a one-way cut. ``partition({})`` and
  ``heal_network()`` restore full connectivity.
- Client traffic (from the host to each node's client address) is never cut: only the links
  between members are, as in Jepsen where clients talk to the node they are bound to.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, Self

import grpc  # type: ignore[import-untyped]

from coterie.v1 import cluster_pb2, cluster_pb2_grpc

Grudge = Mapping[str, frozenset[str]]
"""node -> the nodes whose messages it drops."""


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that were free a moment ago (bind to port 0, then release)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class NodeProc:
    """One member: its addresses, data directory and (while running) its process."""

    name: str
    id: int
    client_addr: str
    """host:port clients on the host use."""
    peer_addr: str
    """host:port of its Raft listener (as the other members reach it)."""
    listen_client: str
    listen_peer: str
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    log: IO[bytes] | None = field(default=None, repr=False)
    joined: bool = False
    """Started with ``--initial-cluster-state existing`` (it was re-added after a removal): its id
    is the one the leader picked (``id`` is updated), its data directory was wiped."""
    removed: bool = False
    """Not a member now (removed by the membership nemesis, not yet added back): never restarted."""
    learner: bool = False
    """Added back as a learner and not yet promoted."""


@dataclass(frozen=True)
class NodeOptions:
    """How nodes are started."""

    tick_ms: int = 50
    election_ticks: int = 10
    fault_injection: bool = True
    unsafe_local_reads: bool = False
    """Start every node in the broken mode (reads skip ReadIndex): for checker tests only."""
    log_level: str = "warning"


class BackendFactory(Protocol):
    """What :data:`coterie.verify.backends.BACKENDS` holds: a cluster of ``nodes`` nodes under
    ``root`` (not yet set up); ``build_image`` matters only to backends that run an image."""

    def __call__(self, nodes: int, root: Path, opts: NodeOptions, *, build_image: bool) -> Backend: ...


class Backend(ABC):
    """A cluster of real nodes; see the module docstring for the invariants."""

    name: str = ""

    @classmethod
    def create(cls, nodes: int, root: Path, opts: NodeOptions, *, build_image: bool = False) -> Backend:
        """The :class:`BackendFactory` the registry names (``build_image`` is ignored here)."""
        return cls(nodes, root, opts)

    def __init__(self, n: int, root: Path, options: NodeOptions) -> None:
        if n < 1:
            raise ValueError(f"need at least one node, got {n}")
        self.n = n
        self.root = root
        self.options = options
        self.nodes: dict[str, NodeProc] = {}
        self._channels: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ life cycle

    @abstractmethod
    def setup(self) -> None:
        """Prepare the network and the node table (does not start processes)."""

    @abstractmethod
    def teardown(self) -> None:
        """Kill every process and undo every network change (idempotent)."""

    def __enter__(self) -> Self:
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def names(self) -> list[str]:
        return list(self.nodes)

    def endpoints(self) -> list[str]:
        return [p.client_addr for p in self.nodes.values()]

    def initial_cluster(self) -> str:
        return ",".join(f"{p.name}={p.peer_addr}" for p in self.nodes.values())

    def command(self, p: NodeProc) -> list[str]:
        o = self.options
        cmd = [sys.executable, "-m", "coterie.client.cli", "node", "--name", p.name,
               "--data-dir", str(p.data_dir), "--client-addr", p.listen_client,
               "--peer-addr", p.peer_addr, "--initial-cluster", self.initial_cluster(),
               "--tick-ms", str(o.tick_ms), "--election-ticks", str(o.election_ticks),
               "--log-level", o.log_level]
        if o.fault_injection:
            cmd.append("--enable-fault-injection")
        if o.unsafe_local_reads:
            cmd.append("--unsafe-local-reads")
        if p.joined:
            cmd += ["--initial-cluster-state", "existing"]
        return cmd

    def wrap(self, p: NodeProc, cmd: list[str]) -> list[str]:
        """The command actually run (e.g. inside a network namespace)."""
        return cmd

    def start(self, name: str) -> None:
        """Start ``name`` (no-op if it runs; refused if it is not a member now)."""
        p = self.nodes[name]
        if p.proc is not None and p.proc.poll() is None:
            return
        if p.removed:
            raise RuntimeError(f"{name} was removed from the cluster; add it back with add_member")
        if p.log is None:
            p.log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed in teardown
        p.log.write(f"=== start {time.strftime('%H:%M:%S')}\n".encode())
        p.log.flush()
        p.proc = subprocess.Popen(self.wrap(p, self.command(p)), stdout=p.log, stderr=p.log,
                                  start_new_session=True)
        p.paused = False

    def start_all(self) -> None:
        for name in self.nodes:
            self.start(name)

    def running(self, name: str) -> bool:
        p = self.nodes[name].proc
        return p is not None and p.poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (a paused process dies too)."""
        p = self.nodes[name]
        if p.proc is not None and p.proc.poll() is None:
            os.killpg(p.proc.pid, signal.SIGKILL)
            p.proc.wait(30)
        p.paused = False

    def pause(self, name: str) -> None:
        p = self.nodes[name]
        if p.proc is not None and p.proc.poll() is None:
            os.killpg(p.proc.pid, signal.SIGSTOP)
            p.paused = True

    def resume(self, name: str) -> None:
        p = self.nodes[name]
        if p.proc is not None and p.proc.poll() is None:
            os.killpg(p.proc.pid, signal.SIGCONT)
        p.paused = False

    def stop_all(self) -> None:
        """SIGCONT then SIGTERM every node, SIGKILL what is left after a grace period."""
        for p in self.nodes.values():
            if p.proc is not None and p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGCONT)
                    os.killpg(p.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.nodes.values():
            if p.proc is None:
                continue
            try:
                p.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait(10)
            p.paused = False
        for p in self.nodes.values():
            if p.log is not None:
                p.log.close()
                p.log = None
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    # ------------------------------------------------------------------------------ membership

    def member_names(self) -> list[str]:
        """The nodes that are members now (voters or learners): the ones faults may target."""
        return [n for n, p in self.nodes.items() if not p.removed]

    def admin_client(self, timeout: float = 10.0) -> Any:
        """A client for membership calls, knowing every member's client address."""
        from coterie.client import Client

        return Client([self.nodes[n].client_addr for n in self.member_names()], timeout=timeout)

    def members(self, timeout: float = 10.0) -> list[Any]:
        """The membership as the cluster sees it (``coterie.client.Member``, by id; linearizable)."""
        with self.admin_client(timeout) as c:
            return list(c.member_list(timeout=timeout))

    def _members_retrying(self, deadline: float) -> list[Any]:
        from coterie.client.errors import CoterieError

        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return self.members(timeout=max(1.0, min(10.0, deadline - time.monotonic())))
            except CoterieError as exc:
                last = exc
                time.sleep(0.2)
        raise TimeoutError(f"member list kept failing: {last}")

    def wipe_node(self, name: str) -> None:
        """Delete ``name``'s data (it must not run): a node added back starts from a fresh directory."""
        shutil.rmtree(self.nodes[name].data_dir, ignore_errors=True)

    def remove_member(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """``MemberRemove`` of ``name``, then wait for its process to exit by itself (a removed node
        shuts down); SIGKILL it if it has not within the bound. A call whose outcome is unknown
        (timeout, leader change) is settled by reading the membership. Afterwards ``name`` is
        ``removed`` (never restarted until :meth:`add_member`). Returns what happened."""
        from coterie.client.errors import CoterieError

        p = self.nodes[name]
        deadline = time.monotonic() + timeout
        st = self.status(name)
        mid = int(st.member_id) if st is not None and st.member_id else p.id
        attempts = 0
        while True:
            attempts += 1
            try:
                with self.admin_client(min(15.0, max(1.0, deadline - time.monotonic()))) as c:
                    c.member_remove(mid)
                break
            except CoterieError as exc:
                # NotFound: already gone (an earlier attempt applied). Otherwise look before retrying.
                if exc.code == "NOT_FOUND":
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"removing {name} (id {mid}) kept failing: {exc}") from exc
                try:
                    if all(m.id != mid for m in self.members(timeout=5.0)):
                        break
                except CoterieError:
                    pass
                time.sleep(0.5)
        p.removed = True
        p.learner = False
        if p.paused:
            self.resume(name)
        end = time.monotonic() + max(20.0, deadline - time.monotonic())
        while time.monotonic() < end and self.running(name):
            time.sleep(0.1)
        exited = not self.running(name)
        code = self.exit_code(name) if exited else None
        if not exited:
            self.kill(name)
        return {"id": mid, "attempts": attempts, "exited_by_itself": exited, "exit_code": code}

    def exit_code(self, name: str) -> int | None:
        """The exit status of ``name``'s last process (None while it runs or if it never ran)."""
        proc = self.nodes[name].proc
        return None if proc is None else proc.poll()

    def add_member(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """Add ``name`` back as a learner with a fresh data directory and start it with
        ``--initial-cluster-state existing``; its new id (the leader picks it) replaces ``id``. A call
        whose outcome is unknown is settled by reading the membership (a member with this name)."""
        from coterie.client.errors import CoterieError

        p = self.nodes[name]
        if self.running(name):
            raise RuntimeError(f"{name} still runs; it cannot be added back")
        deadline = time.monotonic() + timeout
        self.wipe_node(name)
        member: Any = None
        attempts = 0
        while member is None:
            attempts += 1
            try:
                with self.admin_client(min(15.0, max(1.0, deadline - time.monotonic()))) as c:
                    member = c.member_add(p.peer_addr, name=name, client_addr=p.listen_client, learner=True)
                break
            except CoterieError as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"adding {name} back kept failing: {exc}") from exc
                with contextlib.suppress(CoterieError):
                    member = next((m for m in self.members(timeout=5.0) if m.name == name), None)
                if member is None:
                    time.sleep(0.5)
        p.id = int(member.id)
        p.joined = True
        p.removed = False
        p.learner = bool(member.is_learner)
        self.start(name)
        return {"id": p.id, "attempts": attempts, "learner": p.learner}

    def promote_member(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """``MemberPromote`` ``name`` once it has caught up: refusals while the learner is behind
        (FailedPrecondition) and unknown outcomes are retried until ``timeout``."""
        from coterie.client.errors import CoterieError, FailedPrecondition

        p = self.nodes[name]
        deadline = time.monotonic() + timeout
        attempts = 0
        refused = 0
        while True:
            attempts += 1
            try:
                with self.admin_client(min(15.0, max(1.0, deadline - time.monotonic()))) as c:
                    c.member_promote(p.id)
                break
            except FailedPrecondition as exc:
                if "already a voter" in str(exc):
                    break
                refused += 1
                last: Exception = exc
            except CoterieError as exc:
                last = exc
                try:
                    if any(m.id == p.id and not m.is_learner for m in self.members(timeout=5.0)):
                        break
                except CoterieError:
                    pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"promoting {name} (id {p.id}) did not succeed within {timeout:.0f} s "
                                   f"({refused} refusals while behind; last: {last})")
            time.sleep(0.3)
        p.learner = False
        return {"id": p.id, "attempts": attempts, "refused_while_behind": refused}

    def restore_membership(self, timeout: float = 120.0) -> list[str]:
        """Bring every node back as a voter (after a failed or interrupted membership fault): add
        back the removed ones, promote the learners. The nodes it acted on."""
        deadline = time.monotonic() + timeout
        acted = []
        for name, p in self.nodes.items():
            if p.removed:
                if self.running(name):
                    self.kill(name)
                self.add_member(name, max(1.0, deadline - time.monotonic()))
                acted.append(name)
            if p.learner:
                self.promote_member(name, max(1.0, deadline - time.monotonic()))
                if name not in acted:
                    acted.append(name)
        return acted

    def membership_report(self, timeout: float = 30.0) -> dict[str, Any]:
        """The final membership: every member (id, name, voter or learner) and whether it is exactly
        the nodes of this backend, all voters."""
        ms = self._members_retrying(time.monotonic() + timeout)
        want = set(self.nodes)
        voters = {m.name for m in ms if not m.is_learner}
        return {"members": [{"id": m.id, "name": m.name, "learner": m.is_learner} for m in ms],
                "all_voters": voters == want and len(ms) == len(want)}

    # ------------------------------------------------------------------------------ faults

    @abstractmethod
    def partition(self, grudge: Grudge) -> None:
        """Replace the network faults by ``grudge`` (see the module docstring)."""

    def heal_network(self) -> None:
        self.partition({})

    @abstractmethod
    def set_links(self, names: list[str], *, delay: float = 0.0, drop_rate: float = 0.0) -> None:
        """Make the outgoing peer links of ``names`` slow (``delay`` s per batch) or lossy."""

    def set_clock(self, name: str, rate: float = 1.0, offset: float = 0.0) -> None:
        """Skew ``name``'s lease clock: run it at ``rate`` x real time, shifted by ``offset`` seconds
        in all (``coterie.node.server.clock``); ``(1.0, 0.0)`` is a normal clock. Backends that
        cannot reach the nodes' fault-injection API refuse (``NotImplementedError``)."""
        raise NotImplementedError(f"the {self.name or type(self).__name__} backend cannot skew node clocks")

    def heal_clocks(self) -> None:
        """Every node's lease clock back to normal (no-op where :meth:`set_clock` is refused)."""
        return None

    # ------------------------------------------------------------------------------ observation

    def _channel(self, name: str) -> Any:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = grpc.insecure_channel(self.nodes[name].client_addr)
        return ch

    def status(self, name: str, timeout: float = 1.0) -> Any:
        """``Cluster.Status`` of ``name``, or None if it does not answer."""
        if not self.running(name) or self.nodes[name].paused:
            return None
        try:
            st = cluster_pb2_grpc.ClusterStub(self._channel(name)).Status(
                cluster_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None
        # Ports are picked free but not reserved: make sure this is our node, not another process.
        return st if st.header.cluster_id == self.cluster_id() else None

    def cluster_id(self) -> str:
        """The id our nodes derive from the initial cluster (as ``coterie.node.server.app`` does)."""
        from coterie.node.server.app import cluster_id_of

        return str(cluster_id_of({p.name: p.peer_addr for p in self.nodes.values()}))

    def leader(self) -> str | None:
        """A node that says it leads, preferring the highest term; None if none answers so."""
        best: tuple[int, str] | None = None
        for name in self.nodes:
            st = self.status(name, timeout=0.5)
            if st is not None and st.role == cluster_pb2.ROLE_LEADER and (best is None or st.term > best[0]):
                best = (st.term, name)
        return best[1] if best else None

    def wait_for_leader(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lead = self.leader()
            if lead is not None:
                return lead
            time.sleep(0.1)
        raise TimeoutError(f"no leader elected within {timeout:.0f} s; see the node logs in {self.root}")

    def wait_for_ready(self, timeout: float = 60.0) -> None:
        """Until a leader exists and every running node answers Status."""
        deadline = time.monotonic() + timeout
        self.wait_for_leader(timeout)
        while time.monotonic() < deadline:
            if all(self.status(n) is not None for n in self.nodes if self.running(n)):
                return
            time.sleep(0.1)
        raise TimeoutError(f"nodes did not all answer within {timeout:.0f} s; see {self.root}")
