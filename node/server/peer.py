"""Raft messages between nodes over gRPC: the peer listener and the per-peer senders.

Each node keeps one long-lived client stream (``RaftPeer.Stream``) to every other node and pipelines
batches on it: whatever messages are queued for a peer when its sender wakes up go out as one
``MessageBatch``. Raft tolerates loss, so the transport never blocks the driver. A full queue drops
the new messages and counts the drop, and a broken stream is reopened with exponential backoff
(capped), dropping what was queued meanwhile. The peer listener is a separate gRPC server from the
client one (a bulkhead), so client load cannot take the peer port's capacity.

Fault injection for tests (``drop_rate``, ``delay``, ``blocked``) is applied here, in the application's
transport: it exists only when a node is started with fault injection enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import grpc  # type: ignore[import-untyped]
from coterie.v1 import raft_pb2, raft_pb2_grpc

from ..raft import Message
from ..statemachine.errors import InvalidArgument
from .codec import batch_from_pb, batch_to_pb

log = logging.getLogger("coterie.peer")

MAX_PEER_MESSAGE = 64 << 20
"""Largest peer gRPC message (bytes): appends are capped by the core's max_size_per_msg and snapshot
chunks by snapshot_chunk_size, both far below this."""


@dataclass
class Faults:
    """Injected peer-link faults (tests and the Jepsen-style ``local`` backend only)."""

    drop_rate: float = 0.0
    delay: float = 0.0
    blocked: set[int] = field(default_factory=set)
    """Peers whose traffic (both directions, as seen by this node) is dropped."""
    blocked_in: set[int] = field(default_factory=set)
    """Peers whose messages to this node are dropped on arrival (a one-way cut)."""


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


class PeerServicer(raft_pb2_grpc.RaftPeerServicer):  # type: ignore[misc]
    """Receives batches from peers and hands their messages to the driver."""

    def __init__(self, cluster_id: str, deliver: Callable[[Message], None], stats: PeerStats,
                 faults: Faults | None = None) -> None:
        self.cluster_id = cluster_id
        self.deliver = deliver
        self.stats = stats
        self.faults = faults

    def _accept(self, batch: raft_pb2.MessageBatch) -> int:
        if batch.cluster_id != self.cluster_id:
            self.stats.rejected_batches += 1
            raise InvalidArgument(
                f"MessageBatch.cluster_id: {batch.cluster_id!r} is not this cluster ({self.cluster_id!r})")
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
        return raft_pb2.StreamAck(batches=batches, messages=messages)

    async def Send(self, request: raft_pb2.MessageBatch,  # noqa: N802
                   context: grpc.aio.ServicerContext) -> raft_pb2.StreamAck:
        try:
            n = self._accept(request)
        except InvalidArgument as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return raft_pb2.StreamAck(batches=1, messages=n)


class _PeerLink:
    """The sender for one peer: a queue and a task that keeps a stream open and drains it."""

    def __init__(self, owner: PeerTransport, peer_id: int, addr: str) -> None:
        self.owner = owner
        self.peer_id = peer_id
        self.addr = addr
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=owner.queue_size)
        self.connected = False
        self.task: asyncio.Task[None] | None = None

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
            yield batch_to_pb(o.cluster_id, o.node_id, msgs)

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
                if self.connected:
                    log.info("peer stream to %s (%s) broke: %s", self.peer_id, self.addr, exc)
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
        self.links: dict[int, _PeerLink] = {}
        for pid, addr in peers.items():
            if pid != node_id:
                self.links[pid] = _PeerLink(self, pid, addr)

    def start(self) -> None:
        for link in self.links.values():
            if link.task is None:
                link.task = asyncio.create_task(link.run(), name=f"peer-{link.peer_id}")

    def add_peer(self, peer_id: int, addr: str) -> None:
        if peer_id == self.node_id or peer_id in self.links:
            return
        link = self.links[peer_id] = _PeerLink(self, peer_id, addr)
        link.task = asyncio.create_task(link.run(), name=f"peer-{peer_id}")

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
