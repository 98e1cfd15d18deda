"""Raft messages between nodes over gRPC: the peer listener and the per-peer senders.

Each node keeps one long-lived client stream (``RaftPeer.Stream``) to every other node and pipelines
batches on it: whatever messages are queued for a peer when its sender wakes up go out as one
``MessageBatch``. Raft tolerates loss, so the transport never blocks the driver. A full queue drops
the new messages and counts the drop, and a broken stream is reopened with exponential backoff
(capped), dropping what was queued meanwhile. The peer listener is a separate gRPC server from the
client one (a bulkhead), so client load cannot take the peer port's capacity.

The set of peers follows the configuration (:meth:`PeerTransport.set_peers`, driven by the node's
membership view): links are opened for new members, re-pointed when an address changes and closed
for removed ones. A removed member's traffic is refused by the receiver with FAILED_PRECONDITION and
the ``coterie-member-removed`` trailing metadata (:data:`MEMBER_REMOVED_KEY`); the sender's link then stops
and tells its owner (``PeerTransport.on_removed``), so a removed node stops participating.

Fault injection for tests (``drop_rate``, ``delay``, ``blocked``) is applied here, in the application's
transport: it exists only when a node is started with fault injection enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc  # type: ignore[import-untyped]

from coterie.v1 import raft_pb2, raft_pb2_grpc
from coterie.v1.wire import MEMBER_REMOVED_KEY

from ..raft import Message
from ..statemachine.errors import InvalidArgument
from .raft_codec import batch_from_pb, batch_to_pb

log = logging.getLogger("coterie.peer")


MAX_PEER_MESSAGE = 64 << 20
"""Largest peer gRPC message (bytes): appends are capped by the core's max_size_per_msg and snapshot
chunks by snapshot_chunk_size, both far below this."""


def describe_error(exc: BaseException) -> str:
    """One line for a log: ``UNAVAILABLE: Cancelling all calls`` for a gRPC error (whose ``str`` spans
    several lines with the debug string), else ``TypeName: message``."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        c = code()
        text = f"{getattr(c, 'name', c)}: {details() or ''}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


@dataclass
class Faults:
    """Injected peer-link faults (tests and the Jepsen-style ``local`` backend only)."""

    drop_rate: float = 0.0
    delay: float = 0.0
    blocked: set[int] = field(default_factory=set)
    """Peers whose traffic (both directions, as seen by this node) is dropped."""
    blocked_in: set[int] = field(default_factory=set)
    """Peers whose messages to this node are dropped on arrival (a one-way cut)."""


class LabeledObserver(Protocol):
    """A histogram with one label, the peer id (``prometheus_client.Histogram`` with
    ``labelnames=["peer"]`` is one)."""

    def labels(self, peer: str) -> _Observer: ...


class _Observer(Protocol):
    def observe(self, amount: float) -> None: ...


@dataclass
class PeerStats:
    sent_batches: int = 0
    sent_messages: int = 0
    dropped_queue_full: int = 0
    dropped_disconnected: int = 0
    dropped_faults: int = 0
    received_batches: int = 0
    rejected_batches: int = 0
    reconnects: int = 0


class PeerServicer(raft_pb2_grpc.RaftPeerServicer):
    """Receives batches from peers and hands their messages to the driver."""

    def __init__(self, cluster_id: str, deliver: Callable[[Message], None], stats: PeerStats,
                 faults: Faults | None = None, *, is_removed: Callable[[int], bool] | None = None) -> None:
        self.cluster_id = cluster_id
        self.deliver = deliver
        self.stats = stats
        self.faults = faults
        self.is_removed = is_removed
        """Whether a member id was removed from the cluster (its batches are then refused)."""

    def _accept(self, batch: raft_pb2.MessageBatch) -> int:
        if batch.cluster_id != self.cluster_id:
            self.stats.rejected_batches += 1
            raise InvalidArgument(
                f"MessageBatch.cluster_id: {batch.cluster_id!r} is not this cluster ({self.cluster_id!r})")
        if self.is_removed is not None and self.is_removed(batch.from_id):
            self.stats.rejected_batches += 1
            raise _SenderRemoved(batch.from_id)
        if self.faults is not None and (batch.from_id in self.faults.blocked
                                        or batch.from_id in self.faults.blocked_in):
            self.stats.dropped_faults += 1
            return 0
        msgs = batch_from_pb(batch)
        self.stats.received_batches += 1
        for m in msgs:
            self.deliver(m)
        return len(msgs)

    async def Stream(self, request_iterator: AsyncIterator[raft_pb2.MessageBatch],  # noqa: N802
                     context: grpc.aio.ServicerContext) -> raft_pb2.StreamAck:
        batches = messages = 0
        async for batch in request_iterator:
            try:
                messages += self._accept(batch)
                batches += 1
            except InvalidArgument as exc:
                log.warning("rejected peer batch: %s", exc)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except _SenderRemoved as exc:
                await _abort_removed(context, exc)
        return raft_pb2.StreamAck(batches=batches, messages=messages)

    async def Send(self, request: raft_pb2.MessageBatch,  # noqa: N802
                   context: grpc.aio.ServicerContext) -> raft_pb2.StreamAck:
        try:
            n = self._accept(request)
        except InvalidArgument as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except _SenderRemoved as exc:
            await _abort_removed(context, exc)
        return raft_pb2.StreamAck(batches=1, messages=n)


class _SenderRemoved(Exception):
    def __init__(self, member_id: int) -> None:
        super().__init__(f"member {member_id} was removed from the cluster; its traffic is refused")
        self.member_id = member_id


async def _abort_removed(context: grpc.aio.ServicerContext, exc: _SenderRemoved) -> None:
    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc),
                        trailing_metadata=((MEMBER_REMOVED_KEY, str(exc.member_id)),))


class _PeerLink:
    """The sender for one peer: a queue and a task that keeps a stream open and drains it."""

    def __init__(self, owner: PeerTransport, peer_id: int, addr: str) -> None:
        self.owner = owner
        self.peer_id = peer_id
        self.addr = addr
        self.label = str(peer_id)
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=owner.queue_size)
        self.connected = False
        self.task: asyncio.Task[None] | None = None
        self.errors = 0
        """Streams to this peer that failed: a connection attempt that timed out or was refused, or
        an open stream that broke (for metrics)."""

    def _refused_as_removed(self, exc: Exception) -> bool:
        if not isinstance(exc, grpc.aio.AioRpcError) or exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            return False
        with contextlib.suppress(Exception):
            return any(k == MEMBER_REMOVED_KEY for k, _v in (exc.trailing_metadata() or ()))
        return False

    async def _batches(self) -> AsyncIterator[raft_pb2.MessageBatch]:
        o = self.owner
        while True:
            first = await self.queue.get()
            msgs = [first]
            while not self.queue.empty() and len(msgs) < 4096:
                msgs.append(self.queue.get_nowait())
            if o.faults is not None:
                f = o.faults
                if self.peer_id in f.blocked:
                    o.stats.dropped_faults += len(msgs)
                    continue
                if f.drop_rate:
                    kept = [m for m in msgs if o.rng.random() >= f.drop_rate]
                    o.stats.dropped_faults += len(msgs) - len(kept)
                    msgs = kept
                if f.delay:
                    await asyncio.sleep(f.delay)
                if not msgs:
                    continue
            o.stats.sent_batches += 1
            o.stats.sent_messages += len(msgs)
            hist = o.batch_send_seconds
            if hist is None:
                yield batch_to_pb(o.cluster_id, o.node_id, msgs)
                continue
            t0 = time.perf_counter()
            yield batch_to_pb(o.cluster_id, o.node_id, msgs)
            # gRPC asks for the next batch once this one's write completed: the time the stream took
            # to accept the batch (serialization and HTTP/2 flow control included; not a round trip,
            # the stream is one-way).
            hist.labels(self.label).observe(time.perf_counter() - t0)

    async def run(self) -> None:
        backoff = 0.05
        options = [("grpc.max_send_message_length", MAX_PEER_MESSAGE),
                   ("grpc.max_receive_message_length", MAX_PEER_MESSAGE),
                   ("grpc.keepalive_time_ms", 10_000)]
        while True:
            try:
                async with grpc.aio.insecure_channel(self.addr, options=options) as channel:
                    stub = raft_pb2_grpc.RaftPeerStub(channel)
                    await asyncio.wait_for(channel.channel_ready(), timeout=2.0)
                    self.connected = True
                    backoff = 0.05
                    await stub.Stream(self._batches())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # grpc.aio.AioRpcError, TimeoutError, ...
                self.errors += 1
                if self._refused_as_removed(exc):
                    log.warning("peer %s (%s) refuses this member's traffic: it was removed from the cluster",
                                self.peer_id, self.addr)
                    self.connected = False
                    if self.owner.on_removed is not None:
                        self.owner.on_removed(self.peer_id)
                    return
                if self.connected:
                    log.info("peer stream to %s (%s) broke: %s", self.peer_id, self.addr, describe_error(exc))
            self.connected = False
            self.owner.stats.reconnects += 1
            # Raft retransmits: what piled up while disconnected is stale, drop it.
            dropped = self.queue.qsize()
            while not self.queue.empty():
                self.queue.get_nowait()
            self.owner.stats.dropped_disconnected += dropped
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 1.0)


class PeerTransport:
    """Implements the driver's ``Transport``: non-blocking sends to every peer."""

    def __init__(self, node_id: int, cluster_id: str, peers: dict[int, str], *,
                 queue_size: int = 8192, faults: Faults | None = None) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.queue_size = queue_size
        self.faults = faults
        self.stats = PeerStats()
        self.rng = random.Random()
        self.on_removed: Callable[[int], None] | None = None
        """Called with a peer's id when that peer refuses our traffic because we were removed."""
        self.batch_send_seconds: LabeledObserver | None = None
        """If set (the node serves metrics): seconds for a peer's stream to accept each batch, by
        peer id."""
        self.links: dict[int, _PeerLink] = {}
        self._started = False
        for pid, addr in peers.items():
            if pid != node_id:
                self.links[pid] = _PeerLink(self, pid, addr)

    def start(self) -> None:
        self._started = True
        for link in self.links.values():
            if link.task is None:
                link.task = asyncio.create_task(link.run(), name=f"peer-{link.peer_id}")

    def add_peer(self, peer_id: int, addr: str) -> None:
        """Open a link to ``peer_id`` at ``addr``, or re-point the existing one if it moved."""
        if peer_id == self.node_id:
            return
        old = self.links.get(peer_id)
        if old is not None:
            if old.addr == addr:
                return
            self.remove_peer(peer_id)
        link = self.links[peer_id] = _PeerLink(self, peer_id, addr)
        if self._started:
            link.task = asyncio.create_task(link.run(), name=f"peer-{peer_id}")

    def remove_peer(self, peer_id: int) -> None:
        """Close the link to ``peer_id`` (messages to it are dropped from now on)."""
        link = self.links.pop(peer_id, None)
        if link is not None and link.task is not None:
            link.task.cancel()

    def set_peers(self, peers: dict[int, str]) -> None:
        """Exactly these links (id -> peer address; this node's own id is ignored)."""
        for pid in [p for p in self.links if p not in peers]:
            self.remove_peer(pid)
        for pid, addr in peers.items():
            self.add_peer(pid, addr)

    def send(self, messages: Sequence[Message]) -> None:
        for m in messages:
            link = self.links.get(m.to)
            if link is None:
                continue
            try:
                link.queue.put_nowait(m)
            except asyncio.QueueFull:
                self.stats.dropped_queue_full += 1

    async def close(self) -> None:
        tasks = [link.task for link in self.links.values() if link.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
