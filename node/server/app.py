"""Composition of one coterie node: storage, state machine, Raft driver, peer and client listeners.

Start-up order: check the data directory belongs to this node and cluster, open the WAL (which
replays it), restore the state machine from the latest snapshot, build the core, then open the peer
listener, the peer senders, the client listener and finally start the driver.

Shutdown (:meth:`Node.stop`, on SIGTERM) is idempotent and goes:
1. stop accepting client requests;
2. if leader, hand leadership to the most up-to-date voter and wait briefly for it;
3. stop the driver, which fails whatever is still pending;
4. close the peer listener and senders, then the WAL.

Nothing is lost by ``kill -9`` at any point either: an acknowledged write is fsynced on a majority.

Observability: the standard gRPC health service runs on the client listener (:mod:`.health`: SERVING
once the node knows a leader and keeps up with the commit index; NOT_SERVING first thing at
shutdown), and with ``--metrics-addr`` an HTTP listener serves Prometheus metrics (:mod:`.metrics`),
opened before the client listener and closed last.

Membership (:mod:`.members`): a node bootstraps a new cluster (``--initial-cluster-state new``, ids
1..n from the sorted names of ``--initial-cluster``) or joins an existing one after ``MemberAdd``
(``existing``): it then asks the members listed in ``--initial-cluster`` for its id and the cluster id
(``ClusterPeer.Join``) and starts with an empty log, which the leader fills (entries or a snapshot).
``meta.json`` in the data directory records the cluster id, name, id, whether it joined and the
members it was told about; a restart trusts it. A node that learns it was removed shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, ClassVar

import grpc  # type: ignore[import-untyped]

from coterie.v1 import cluster_pb2_grpc, raft_pb2_grpc

from ..raft import ConfState, RawNode, Role
from ..statemachine import MemberAttrs, StateMachine
from ..storage import DiskStorage
from .clock import NodeClock
from .config import NodeConfig, NodeConfigError
from .driver import Driver, seeded_rng
from .fault_admin import add_fault_admin
from .gossip import GossipHost
from .health import HealthMonitor
from .info import MemberInfo, NodeInfo
from .lease_service import add_lease_service
from .malformed import MalformedRequests
from .members import ClusterPeerService, Membership, join_cluster
from .peer import MAX_PEER_MESSAGE, Faults, PeerServicer, PeerTransport
from .services import MAX_RECEIVE_MESSAGE_LENGTH, add_services

log = logging.getLogger("coterie.node")


def member_ids(initial_cluster: dict[str, str]) -> dict[str, int]:
    """Member ids for the initial cluster: 1..n in the order of the sorted names."""
    return {name: i + 1 for i, name in enumerate(sorted(initial_cluster))}


def cluster_id_of(initial_cluster: dict[str, str]) -> str:
    """A stable id for a cluster, derived from its initial membership."""
    text = ",".join(f"{n}={a}" for n, a in sorted(initial_cluster.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_data_dir(cfg: NodeConfig, cluster_id: str, node_id: int) -> None:
    """Create ``meta.json`` in a new data directory, or refuse one that belongs elsewhere."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    meta_path = cfg.data_dir / "meta.json"
    want = {"cluster_id": cluster_id, "name": cfg.name, "id": node_id}
    if meta_path.exists():
        try:
            have = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise NodeConfigError(f"{meta_path}: unreadable ({exc})") from exc
        if have.get("cluster_id") != cluster_id:
            raise NodeConfigError(
                f"{cfg.data_dir} belongs to cluster {have.get('cluster_id')}, not {cluster_id} "
                f"(a different --initial-cluster); use another --data-dir")
        if have.get("name") != cfg.name or have.get("id") != node_id:
            raise NodeConfigError(
                f"{cfg.data_dir} belongs to node {have.get('name')!r}, not {cfg.name!r}; "
                f"use that node's own --data-dir")
        return
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(want))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, meta_path)


def read_meta(data_dir: Path) -> dict[str, Any] | None:
    """The data directory's ``meta.json``, or None if there is none yet."""
    meta_path = data_dir / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise NodeConfigError(f"{meta_path}: unreadable ({exc})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("id"), int) or not meta.get("cluster_id"):
        raise NodeConfigError(f"{meta_path}: malformed")
    return meta


def write_meta(data_dir: Path, meta: dict[str, Any]) -> None:
    """Write ``meta.json`` atomically (temp file, fsync, rename)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    meta_path = data_dir / "meta.json"
    tmp = meta_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, meta_path)


def _meta_members(meta: dict[str, Any]) -> dict[int, MemberAttrs]:
    out: dict[int, MemberAttrs] = {}
    for item in meta.get("members", ()):
        if isinstance(item, list) and len(item) == 3 and isinstance(item[0], int):
            out[item[0]] = MemberAttrs(str(item[1]), str(item[2]))
    return out


@functools.cache
def _version() -> str:
    """This coterie's version, for the gossip tags."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coterie")
    except PackageNotFoundError:
        return "unknown"


class _NodeLogContext(logging.Filter):
    """Adds ``node`` (name), ``term`` and ``role`` to every log record of the process that does not
    carry them already, so each line says which node, in which term and role, wrote it. Installed on
    the root handlers while a node runs; when several nodes share a process (tests) it adds nothing,
    since it could not tell whose record it is."""

    active: ClassVar[list[_NodeLogContext]] = []

    def __init__(self, name: str, driver: Driver) -> None:
        super().__init__()
        self.node_name, self.driver = name, driver

    def filter(self, record: logging.LogRecord) -> bool:
        if len(_NodeLogContext.active) == 1:
            d = self.driver
            if not hasattr(record, "node"):
                record.node = self.node_name
            if not hasattr(record, "term"):
                record.term = d.raw.raft.term
            if not hasattr(record, "role"):
                record.role = d.role.name
        return True

    def install(self) -> None:
        _NodeLogContext.active.append(self)
        for h in logging.getLogger().handlers:
            h.addFilter(self)

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            _NodeLogContext.active.remove(self)
        for h in logging.getLogger().handlers:
            h.removeFilter(self)


def _listen(server: grpc.aio.Server, addr: str, flag: str) -> None:
    """Bind ``server`` to ``addr`` or raise :class:`NodeConfigError` naming ``flag`` (grpc either
    returns port 0 or raises RuntimeError, depending on its version)."""
    try:
        port = server.add_insecure_port(addr)
    except RuntimeError:
        port = 0
    if port == 0:
        raise NodeConfigError(f"cannot listen on {flag} {addr} "
                              "(in use by another process, or not an address of this host)")


class Node:
    def __init__(self, cfg: NodeConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.ids = member_ids(cfg.initial_cluster)
        self.id = self.ids[cfg.name]
        self.cluster_id = cluster_id_of(cfg.initial_cluster)
        self.joined = False
        """Whether this node joined a running cluster (no bootstrap of its own)."""
        self.local: dict[int, MemberAttrs] = {}
        """The members this node was told about outside the log (flags, or the Join answer)."""
        self.membership: Membership | None = None
        self.removed = False
        """Set when this node learnt it was removed from the cluster (it then shuts down)."""
        self.faults = Faults() if cfg.fault_injection else None
        self.clock = NodeClock()
        """The node's lease clock: all lease timing reads it, and the fault-injection service can
        skew it (the clock nemesis)."""
        self._stopped = asyncio.Event()
        self._stopping = False
        self._log_context: _NodeLogContext | None = None
        self._removal_task: asyncio.Task[None] | None = None
        self.health: HealthMonitor | None = None
        self.metrics: Any = None
        """The node's :class:`~.metrics.NodeMetrics` while it serves metrics (``--metrics-addr``)."""
        self._metrics_server: asyncio.Server | None = None
        self.gossip: GossipHost | None = None
        """This node's gossip (:mod:`.gossip`), when ``--gossip-addr`` or ``--join`` is given."""

    async def _resolve_identity(self) -> None:
        """Settle this node's id and cluster id: from ``meta.json`` on a restart, from the flags
        when bootstrapping, or by asking the cluster when joining (see the module docstring)."""
        cfg = self.cfg
        derived = {self.ids[n]: MemberAttrs(n, a) for n, a in cfg.initial_cluster.items()}
        meta = read_meta(cfg.data_dir)
        if meta is not None and (meta.get("joined") or cfg.initial_cluster_state == "existing"):
            if meta.get("name") != cfg.name:
                raise NodeConfigError(
                    f"{cfg.data_dir} belongs to node {meta.get('name')!r}, not {cfg.name!r}; "
                    f"use that node's own --data-dir")
            self.cluster_id, self.id = str(meta["cluster_id"]), int(meta["id"])
            self.joined = bool(meta.get("joined"))
            self.local = _meta_members(meta)
            return
        if cfg.initial_cluster_state == "new":
            check_data_dir(cfg, self.cluster_id, self.id)
            self.local = derived
            return
        peers = [a for n, a in sorted(cfg.initial_cluster.items()) if n != cfg.name]
        if not peers:
            raise NodeConfigError("--initial-cluster-state existing: --initial-cluster names no other member")
        try:
            resp = await join_cluster(cfg.name, cfg.peer_addr, peers, timeout=cfg.join_timeout)
        except TimeoutError as exc:
            raise NodeConfigError(f"--initial-cluster-state existing: {exc}; was it added with MemberAdd?") \
                from exc
        self.cluster_id, self.id, self.joined = resp.header.cluster_id, resp.member.id, True
        self.local = {m.id: MemberAttrs(m.name, m.peer_addr, m.client_addr) for m in resp.members}
        write_meta(cfg.data_dir, {
            "cluster_id": self.cluster_id, "name": cfg.name, "id": self.id, "joined": True,
            "members": [[i, a.name, a.peer_addr] for i, a in sorted(self.local.items())],
        })
        log.info("joined the cluster", extra={"node": cfg.name, "id": self.id, "cluster": self.cluster_id})

    def _on_removed(self, why: str) -> None:
        """This node was removed from the cluster: stop participating, after a short grace period
        that lets a MemberRemove answer in flight (a removed leader's) reach its caller."""
        if self.removed:
            return
        self.removed = True

        async def stop_later() -> None:
            await asyncio.sleep(max(0.5, 5 * self.cfg.tick_interval))
            log.warning("removed from the cluster; shutting down", extra={"node": self.cfg.name, "why": why})
            await self.stop()

        self._removal_task = asyncio.ensure_future(stop_later())

    async def start(self) -> None:
        cfg = self.cfg
        await self._resolve_identity()
        self.storage = DiskStorage.open(cfg.data_dir / "raft")
        st = self.storage.initial_state()
        sm = StateMachine.from_snapshot(st.snapshot.data) if st.snapshot else StateMachine()
        raw = RawNode(cfg.raft_config(self.id), seeded_rng(self.id),
                      hard_state=st.hard_state, snapshot=st.snapshot, entries=st.entries,
                      conf_state=None if self.joined else ConfState(tuple(sorted(self.ids.values()))))
        peers = {i: a.peer_addr for i, a in self.local.items() if a.peer_addr}
        self.transport = PeerTransport(self.id, self.cluster_id, peers, faults=self.faults)
        self.driver = Driver(raw, self.storage, sm, self.transport, cfg.driver_config(), clock=self.clock)
        self._log_context = _NodeLogContext(cfg.name, self.driver)
        self._log_context.install()
        self.health = HealthMonitor(self.driver, interval=cfg.tick_interval, removed=lambda: self.removed)
        if cfg.gossip_enabled:
            self.gossip = GossipHost(cfg.name, cfg.effective_gossip_addr, cfg.gossip_config(),
                                     self._gossip_meta)
            await self._start_gossip()
        # grpc turns SO_REUSEPORT on by default: a second node started on a port in use would then
        # share it silently (the kernel splitting connections between two clusters). Off: it fails.
        no_reuse = ("grpc.so_reuseport", 0)
        peer_opts = [("grpc.max_receive_message_length", MAX_PEER_MESSAGE),
                     ("grpc.max_send_message_length", MAX_PEER_MESSAGE), no_reuse]
        self.peer_server = grpc.aio.server(options=peer_opts)
        raft_pb2_grpc.add_RaftPeerServicer_to_server(
            PeerServicer(self.cluster_id, self.driver.deliver, self.transport.stats, self.faults,
                         is_removed=lambda i: self.driver.sm.members.is_removed(i)),
            self.peer_server)
        _listen(self.peer_server, cfg.peer_addr, "--peer-addr")
        self.client_server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_LENGTH), no_reuse],
            maximum_concurrent_rpcs=4096, interceptors=[MalformedRequests()])
        self._add_client_services()
        _listen(self.client_server, cfg.client_addr, "--client-addr")
        if cfg.metrics_addr:
            await self._serve_metrics(cfg.metrics_addr)
        await self.peer_server.start()
        self.transport.start()
        self._driver_task = asyncio.create_task(self.driver.run(), name="driver")
        await self.health.start()
        await self.client_server.start()
        assert self.membership is not None
        self.membership.start()
        if self.gossip is not None:
            self.gossip.join(list(cfg.join))
        log.info("node started", extra={"node": cfg.name, "id": self.id, "cluster": self.cluster_id,
                                        "client": cfg.client_addr, "peer": cfg.peer_addr,
                                        "advertised_client": cfg.advertised_client_addr})

    def _add_client_services(self) -> None:
        members = {self.ids[n]: MemberInfo(id=self.ids[n], name=n, peer_addr=a, client_addr="")
                   for n, a in self.cfg.initial_cluster.items()}
        members[self.id] = MemberInfo(id=self.id, name=self.cfg.name, peer_addr=self.cfg.peer_addr,
                                      client_addr=self.cfg.advertised_client_addr)
        info = NodeInfo(id=self.id, name=self.cfg.name, cluster_id=self.cluster_id,
                        client_addr=self.cfg.advertised_client_addr, peer_addr=self.cfg.peer_addr,
                        members=members, unsafe_local_reads=self.cfg.unsafe_local_reads)
        self.membership = self._membership(info)
        add_services(self.client_server, self.driver, info, membership=self.membership, gossip=self.gossip)
        add_lease_service(self.client_server, self.driver, info,
                          min_ttl_ms=round(self.cfg.effective_min_lease_ttl() * 1000))
        add_fault_admin(self.client_server, self.faults, self.id, clock=self.clock)
        assert self.health is not None
        self.health.add_to_server(self.client_server)

    async def _serve_metrics(self, addr: str) -> None:
        from .metrics import NodeMetrics, serve_metrics

        health = self.health
        self.metrics = NodeMetrics(self.driver, self.transport,
                                   healthy=lambda: health is not None and health.serving)
        try:
            self._metrics_server = await serve_metrics(self.metrics, addr)
        except (OSError, ValueError) as exc:
            raise NodeConfigError(f"cannot listen on --metrics-addr {addr}: {exc}") from exc
        self.metrics.attach()

    def _gossip_meta(self) -> dict[str, str]:
        """This node's gossip tags; re-read by the gossip host, which publishes changes (the role)."""
        return {"name": self.cfg.name, "client_addr": self.cfg.advertised_client_addr,
                "peer_addr": self.cfg.peer_addr, "role": self.driver.role.name.lower(),
                "version": _version()}

    async def _start_gossip(self) -> None:
        """Bind the gossip sockets and start gossiping (joining the seeds comes once the node serves;
        gossip only observes: see :mod:`.gossip`)."""
        if self.gossip is None:
            return
        try:
            await self.gossip.start()
        except OSError as exc:
            raise NodeConfigError(f"cannot listen on --gossip-addr {self.gossip.bind_addr} ({exc})") from exc

    def _membership(self, info: NodeInfo) -> Membership:
        """The membership view and operations, with the ClusterPeer service on the peer listener."""
        m = Membership(self.driver, info, local=self.local, transport=self.transport,
                       attrs=MemberAttrs(self.cfg.name, self.cfg.peer_addr, self.cfg.advertised_client_addr),
                       publish_interval=max(0.2, 5 * self.cfg.tick_interval))
        m.on_removed = self._on_removed
        cluster_pb2_grpc.add_ClusterPeerServicer_to_server(ClusterPeerService(m), self.peer_server)
        return m

    async def stop(self) -> None:
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            if self.health is not None:
                await self.health.stop()
            await self.client_server.stop(grace=1.0)
            if self.gossip is not None:
                await self.gossip.stop()
            if self.membership is not None:
                await self.membership.stop()
            await self._hand_off_leadership()
            self.driver.stop()
            with contextlib.suppress(Exception):
                await self._driver_task
            await self.peer_server.stop(grace=0.5)
            await self.transport.close()
            self.storage.close()
            if self._metrics_server is not None:
                self._metrics_server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._metrics_server.wait_closed(), 1.0)
            log.info("node stopped", extra={"node": self.cfg.name})
        finally:
            if self._log_context is not None:
                self._log_context.remove()
            self._stopped.set()

    async def _hand_off_leadership(self) -> None:
        d = self.driver
        if d.role != Role.LEADER:
            return
        peers = d.status().peers
        candidates = [(p.match, pid) for pid, p in peers.items() if pid != self.id and not p.learner]
        if not candidates:
            return
        _, target = max(candidates)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(d.transfer_leader(target), 0.5)
            for _ in range(30):
                if d.role != Role.LEADER:
                    return
                await asyncio.sleep(0.05)

    async def serve_forever(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then stop gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
        await self._stopped.wait()
