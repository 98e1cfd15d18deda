"""The client-facing gRPC services (``grpc.aio``): ``KV``, ``Session`` and ``Cluster``.

Every handler is a thin adapter over the :class:`Driver` and the KV codec (:mod:`.kv_codec`):

- **writes** (Put, DeleteRange, a Txn with a put or delete in either branch, Compact, every Session
  call) become a :class:`Command` stamped with this node's wall clock in ms (the state machine's
  clock is the max of the stamps it applied, so a slow clock on a new leader is harmless), are
  proposed with :meth:`Driver.propose` and answered with the state machine's response. Only the
  leader accepts them; a follower refuses with UNAVAILABLE and names the leader in the trailing
  metadata, so the client redirects.
- **reads** (Range, a Txn without writes) are served from the local state machine, by followers as
  well. A Range with ``serializable`` is answered at once (maybe stale); any other read first waits
  for :meth:`Driver.read_barrier` (ReadIndex, thesis 6.4; a follower's request is forwarded to the
  leader by the core), which makes it linearizable. A Txn is always linearizable.

A failed call is aborted with the status, details and trailing metadata of
:func:`.status.error_status`, the one mapping of errors to gRPC statuses (a follower's refusal of a
write names the leader in the trailing metadata, so the client redirects; the admin calls of
``Cluster`` answer a non-leader with FAILED_PRECONDITION instead, as ``cluster.proto`` documents).

Membership (``MemberAdd``, ``MemberRemove``, ``MemberPromote``, ``MemberList``) is served by
:class:`~.members.Membership`; ``Status`` reports how long ago this node heard from the leader
(``leader_contact_seconds``) and, on the leader, from each peer (``last_contact_seconds``), and
counts the live leases and the locks with a contender (:func:`count_locks`) in the applied state.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar, cast

import grpc  # type: ignore[import-untyped]

from coterie.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc

from ..raft import Role
from ..raft.progress import ProgressState
from ..statemachine import (
    Command,
    InvalidArgument,
    RangeRequest,
    Response,
    StateMachine,
    TxnRequest,
    encode_command,
    prefix_end,
)
from ..statemachine.machine import SNAPSHOT_VERSION
from .batch import BatchStream
from .driver import Driver
from .gossip import GossipHost
from .info import NodeInfo
from .kv_codec import PbRequest, PbResponse, command_from_pb, request_from_pb, response_to_pb
from .members import Membership
from .status import error_status
from .watch import WatchStream

__all__ = [
    "MAX_RECEIVE_MESSAGE_LENGTH",
    "ClusterService",
    "KVService",
    "SessionService",
    "add_services",
    "count_locks",
]

MAX_RECEIVE_MESSAGE_LENGTH = 2 * 1024 * 1024 + 64 * 1024
"""The ``grpc.max_receive_message_length`` the server is created with: 2 MiB for the payload (a
1 MiB value, ``Limits.max_value_bytes``, fits with room to spare; the sum of a txn's values is bounded
by this) plus 64 KiB of slack for keys and framing. Larger requests fail with RESOURCE_EXHAUSTED
before reaching a handler."""

MAX_REQUEST_BYTES = 2 * 1024 * 1024
"""Largest write request (serialized size) that is proposed. One that gets past gRPC's bound (within
its 64 KiB of slack) but is over this is refused with INVALID_ARGUMENT naming the limit, before it
reaches the log (as etcd does with ``--max-request-bytes``)."""

_T = TypeVar("_T")
_SC = grpc.StatusCode


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


LOCKS_PREFIX = b"coterie/locks/"
"""Where the client library keeps lock contenders: ``coterie/locks/<name>/<lease id, 16 hex>``."""


def count_locks(sm: StateMachine) -> int:
    """Distinct lock names with at least one key under :data:`LOCKS_PREFIX` (the name is what lies
    between the prefix and the key's last ``/``; a key without a further ``/`` names itself)."""
    resp = sm.kv.range(LOCKS_PREFIX, prefix_end(LOCKS_PREFIX), keys_only=True)
    names = set()
    for kv in resp.kvs:
        rest = kv.key[len(LOCKS_PREFIX):]
        name, sep, _ = rest.rpartition(b"/")
        names.add(name if sep else rest)
    return len(names)


def _txn_is_read_only(req: TxnRequest) -> bool:
    return all(isinstance(op, RangeRequest) for op in (*req.success, *req.failure))


SNAPSHOT_CHUNK_BYTES = 1 << 20
"""Largest ``data`` of one ``SnapshotChunk`` (1 MiB, under the client's and gRPC's message limits)."""


class _Service:
    not_leader_status: grpc.StatusCode = _SC.UNAVAILABLE

    def __init__(self, driver: Driver, node_info: NodeInfo) -> None:
        self.driver = driver
        self.info = node_info

    async def _run(self, context: Any, work: Awaitable[_T]) -> _T:
        """Await ``work``; on failure abort the call with the status of :func:`error_status`."""
        try:
            return await work
        except Exception as exc:
            code, details, md = error_status(
                exc, self.info, leader=self.driver.leader, not_leader=self.not_leader_status
            )
        await context.abort(code, details, trailing_metadata=md)
        raise AssertionError("unreachable: context.abort raises")

    def _response_header(self, revision: int) -> kv_pb2.ResponseHeader:
        return kv_pb2.ResponseHeader(
            cluster_id=self.info.cluster_id,
            member_id=self.info.id,
            revision=revision,
            raft_term=self.driver.raw.raft.term,
        )

    async def _propose(self, request: PbRequest) -> PbResponse:
        cmd, data = self._prepare_write(request)
        resp = await self.driver.propose(data)
        return self._write_response(cmd, resp)

    def _prepare_write(self, request: PbRequest) -> tuple[Command, bytes]:
        """The command of a write request and its log entry; raises what refuses it before it costs
        a log entry (size, malformed, the state machine's limits)."""
        size = request.ByteSize()
        if size > MAX_REQUEST_BYTES:
            raise InvalidArgument(
                f"request size is {size} bytes, over the limit of 2 MiB ({MAX_REQUEST_BYTES} bytes)")
        cmd = command_from_pb(request, timestamp=_now_ms())
        self.driver.sm.kv.validate(cmd.request)  # refuse a bad write before it costs a log entry
        data = encode_command(
            cmd.request, timestamp=cmd.timestamp, session_id=cmd.session_id, seq=cmd.seq,
            fence=cmd.fence,
        )
        return cmd, data

    def _write_response(self, cmd: Command, resp: Response) -> PbResponse:
        """The gRPC answer to an applied write; raises the state machine's refusal (KVError)."""
        return response_to_pb(
            cmd.request,
            resp,
            cluster_id=self.info.cluster_id,
            member_id=self.info.id,
            raft_term=self.driver.raw.raft.term,
            ttl_ms=self.driver.sm.sessions.ttl,
        )


class KVService(_Service):
    """``coterie.v1.KV``: Range, Put, DeleteRange, Txn, Compact and Watch (:mod:`.watch`)."""

    async def Range(self, request: kv_pb2.RangeRequest, context: Any) -> kv_pb2.RangeResponse:  # noqa: N802
        return await self._run(context, self._range(request))

    async def _range(self, request: kv_pb2.RangeRequest) -> PbResponse:
        req, barrier = self._range_request(request)
        if barrier:
            await self.driver.read_barrier()
        return self._serve_range(req)

    def _range_request(self, request: kv_pb2.RangeRequest) -> tuple[RangeRequest, bool]:
        """The checked request, and whether it must wait for a read barrier (linearizable)."""
        req = request_from_pb(request)
        assert isinstance(req, RangeRequest)
        if request.HasField("header") and request.header.HasField("fence"):
            raise InvalidArgument("RangeRequest.header.fence: only Put, DeleteRange and Txn take a fence "
                                  "(a fenced read is a Txn)")
        return req, not request.serializable and not self.info.unsafe_local_reads

    def _serve_range(self, req: RangeRequest) -> PbResponse:
        resp = self.driver.sm.kv.range(
            req.key,
            req.range_end,
            limit=req.limit,
            revision=req.revision,
            count_only=req.count_only,
            keys_only=req.keys_only,
        )
        return self._local_response(req, resp)

    async def Put(self, request: kv_pb2.PutRequest, context: Any) -> kv_pb2.PutResponse:  # noqa: N802
        return await self._run(context, self._propose(request))

    async def DeleteRange(  # noqa: N802
        self, request: kv_pb2.DeleteRangeRequest, context: Any
    ) -> kv_pb2.DeleteRangeResponse:
        return await self._run(context, self._propose(request))

    async def Txn(self, request: kv_pb2.TxnRequest, context: Any) -> kv_pb2.TxnResponse:  # noqa: N802
        return await self._run(context, self._txn(request))

    async def _txn(self, request: kv_pb2.TxnRequest) -> PbResponse:
        req = self._read_only_txn(request)
        if req is None:
            return await self._propose(request)
        await self.driver.read_barrier()
        return self._serve_txn(req)

    @staticmethod
    def _read_only_txn(request: kv_pb2.TxnRequest) -> TxnRequest | None:
        """The txn if it is served locally after a read barrier (only ranges, no fence), else None:
        it goes through the log."""
        req = request_from_pb(request)
        assert isinstance(req, TxnRequest)
        if not _txn_is_read_only(req) or (request.HasField("header") and request.header.HasField("fence")):
            # A fenced txn goes through the log even when it only reads: the fence is checked there.
            return None
        # Only ranges: evaluating it on the local store after a read barrier changes nothing and is
        # linearizable, so it need not go through the log.
        return req

    def _serve_txn(self, req: TxnRequest) -> PbResponse:
        return self._local_response(req, self.driver.sm.kv.execute_txn(req))

    async def Batch(  # noqa: N802
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[kv_pb2.BatchResponse]:
        """Range, Put, DeleteRange and Txn, many per message, each answered (or refused) alone as
        its unary call would be (:mod:`.batch`). Only a malformed stream message ends the call, with
        the status of :func:`error_status` (INVALID_ARGUMENT)."""
        stream = BatchStream(self)
        try:
            async for resp in stream.run(request_iterator):
                yield resp
        except Exception as exc:
            code, details, md = error_status(exc, self.info, leader=self.driver.leader)
            await context.abort(code, details, trailing_metadata=md)

    async def Compact(  # noqa: N802
        self, request: kv_pb2.CompactionRequest, context: Any
    ) -> kv_pb2.CompactionResponse:
        return await self._run(context, self._propose(request))

    async def Watch(  # noqa: N802
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[kv_pb2.WatchResponse]:
        """Bidirectional watch stream; see :mod:`.watch` for the semantics (exactly once, in
        revision order, served by followers too from their applied state). A malformed request
        ends the call with the status of :func:`error_status` (INVALID_ARGUMENT)."""
        stream = WatchStream(self.driver, cluster_id=self.info.cluster_id, member_id=self.info.id)
        try:
            async for resp in stream.run(request_iterator):
                yield resp
        except Exception as exc:
            code, details, md = error_status(exc, self.info, leader=self.driver.leader)
            await context.abort(code, details, trailing_metadata=md)

    def _local_response(self, req: RangeRequest | TxnRequest, resp: Any) -> PbResponse:
        return response_to_pb(
            req,
            resp,
            cluster_id=self.info.cluster_id,
            member_id=self.info.id,
            raft_term=self.driver.raw.raft.term,
        )


class SessionService(_Service):
    """``coterie.v1.Session``: Open, KeepAlive, Close; each one is a write through the log."""

    async def Open(  # noqa: N802
        self, request: kv_pb2.SessionOpenRequest, context: Any
    ) -> kv_pb2.SessionOpenResponse:
        return await self._run(context, self._propose(request))

    async def KeepAlive(  # noqa: N802
        self, request: kv_pb2.SessionKeepAliveRequest, context: Any
    ) -> kv_pb2.SessionKeepAliveResponse:
        return await self._run(context, self._propose(request))

    async def Close(  # noqa: N802
        self, request: kv_pb2.SessionCloseRequest, context: Any
    ) -> kv_pb2.SessionCloseResponse:
        return await self._run(context, self._propose(request))


class ClusterService(_Service):
    """``coterie.v1.Cluster``: Status, the membership calls (through :class:`~.members.Membership`)
    and TransferLeader."""

    not_leader_status = _SC.FAILED_PRECONDITION

    def __init__(self, driver: Driver, node_info: NodeInfo, *, transfer_timeout: float = 5.0,
                 membership: Membership | None = None, gossip: GossipHost | None = None) -> None:
        super().__init__(driver, node_info)
        self.gossip = gossip
        """This node's gossip (``Members``), None when it is off."""
        self.transfer_timeout = transfer_timeout
        """Longest wait for a transfer to complete when the call has no shorter deadline."""
        self.membership = membership if membership is not None else Membership(driver, node_info)

    async def Status(  # noqa: N802
        self, request: cluster_pb2.StatusRequest, context: Any
    ) -> cluster_pb2.StatusResponse:
        st = self.driver.status()
        resp = cluster_pb2.StatusResponse(
            header=kv_pb2.ResponseHeader(
                cluster_id=self.info.cluster_id,
                member_id=self.info.id,
                revision=self.driver.sm.revision,
                raft_term=st.term,
            ),
            member_id=st.id,
            name=self.info.name,
            role=cast(cluster_pb2.Role, int(st.role)),
            term=st.term,
            leader_id=st.leader,
            commit_index=st.commit,
            applied_index=st.applied,
            first_index=st.first_index,
            last_index=st.last_index,
            lead_transferee=st.lead_transferee,
            leader_contact_seconds=self.driver.leader_contact_seconds(),
            members=self._members(),
            leases=len(self.driver.sm.leases),
            locks=count_locks(self.driver.sm),
        )
        for pid in sorted(st.peers):
            p = st.peers[pid]
            resp.progress.add(
                id=pid,
                match=p.match,
                next=p.next,
                state=int(ProgressState[p.state]),
                is_learner=p.learner,
                recent_active=p.recent_active,
                last_contact_seconds=self.driver.peer_contact_seconds(pid),
            )
        return resp

    async def MemberList(  # noqa: N802
        self, request: cluster_pb2.MemberListRequest, context: Any
    ) -> cluster_pb2.MemberListResponse:
        return await self._run(context, self._member_list(request))

    async def _member_list(self, request: cluster_pb2.MemberListRequest) -> cluster_pb2.MemberListResponse:
        if request.linearizable:
            await self.driver.read_barrier()
        return cluster_pb2.MemberListResponse(
            header=self._response_header(self.driver.sm.revision), members=self._members()
        )

    def _members(self) -> list[cluster_pb2.Member]:
        return self.membership.members_pb()

    async def MemberAdd(  # noqa: N802
        self, request: cluster_pb2.MemberAddRequest, context: Any
    ) -> cluster_pb2.MemberAddResponse:
        return await self._run(context, self._member_add(request))

    async def _member_add(self, request: cluster_pb2.MemberAddRequest) -> cluster_pb2.MemberAddResponse:
        mid = await self.membership.add(
            peer_addr=request.peer_addr,
            name=request.name,
            client_addr=request.client_addr,
            learner=request.as_learner,
            member_id=request.id,
        )
        members = self._members()
        added = next((m for m in members if m.id == mid), cluster_pb2.Member(id=mid))
        return cluster_pb2.MemberAddResponse(
            header=self._response_header(self.driver.sm.revision), member=added, members=members
        )

    async def MemberRemove(  # noqa: N802
        self, request: cluster_pb2.MemberRemoveRequest, context: Any
    ) -> cluster_pb2.MemberRemoveResponse:
        return await self._run(context, self._member_remove(request))

    async def _member_remove(
        self, request: cluster_pb2.MemberRemoveRequest
    ) -> cluster_pb2.MemberRemoveResponse:
        await self.membership.remove(request.id)
        return cluster_pb2.MemberRemoveResponse(
            header=self._response_header(self.driver.sm.revision), members=self._members()
        )

    async def MemberPromote(  # noqa: N802
        self, request: cluster_pb2.MemberPromoteRequest, context: Any
    ) -> cluster_pb2.MemberPromoteResponse:
        return await self._run(context, self._member_promote(request))

    async def _member_promote(
        self, request: cluster_pb2.MemberPromoteRequest
    ) -> cluster_pb2.MemberPromoteResponse:
        await self.membership.promote(request.id)
        return cluster_pb2.MemberPromoteResponse(
            header=self._response_header(self.driver.sm.revision), members=self._members()
        )

    async def TransferLeader(  # noqa: N802
        self, request: cluster_pb2.TransferLeaderRequest, context: Any
    ) -> cluster_pb2.TransferLeaderResponse:
        target = request.target
        try:
            if not (target == self.info.id and self.driver.role == Role.LEADER):
                await self.driver.transfer_leader(target)
        except Exception as exc:
            code, details, md = error_status(
                exc, self.info, leader=self.driver.leader, not_leader=self.not_leader_status
            )
            await context.abort(code, details, trailing_metadata=md)
        remaining = context.time_remaining()
        timeout = self.transfer_timeout if remaining is None else min(remaining, self.transfer_timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        step = self.driver.cfg.tick_interval
        while self.driver.leader != target:
            st = self.driver.status()
            if st.role == Role.LEADER and st.lead_transferee != target:
                await context.abort(
                    _SC.ABORTED, f"transfer to {target} was abandoned; member {st.id} still leads"
                )
            if loop.time() >= deadline:
                await context.abort(
                    _SC.DEADLINE_EXCEEDED,
                    f"member {target} did not take over within {timeout:.1f} s "
                    f"(leader now {self.driver.leader or 'unknown'})",
                )
            await asyncio.sleep(step)
        return cluster_pb2.TransferLeaderResponse(
            header=self._response_header(self.driver.sm.revision), leader_id=target
        )

    async def Members(  # noqa: N802
        self, request: cluster_pb2.MembersRequest, context: Any
    ) -> cluster_pb2.MembersResponse:
        if self.gossip is None or self.gossip.core is None:
            await context.abort(_SC.FAILED_PRECONDITION,
                                f"gossip is off on {self.info.name} (start it with --gossip-addr or --join)")
        assert self.gossip is not None
        members, stats = self.gossip.members_pb(request.name)
        if request.name and not members:
            await context.abort(_SC.NOT_FOUND, f"{self.info.name} knows no member named {request.name!r}")
        return cluster_pb2.MembersResponse(
            header=self._response_header(self.driver.sm.revision), name=self.gossip.name,
            members=members, stats=stats)

    async def Snapshot(  # noqa: N802
        self, request: cluster_pb2.SnapshotRequest, context: Any
    ) -> AsyncIterator[cluster_pb2.SnapshotChunk]:
        """A consistent image of the state machine, streamed in :data:`SNAPSHOT_CHUNK_BYTES` chunks:
        read barrier first (every write committed before the call is in it), then
        ``StateMachine.snapshot()`` taken synchronously on the driver's loop, so nothing is applied
        half-way through the encoding. The last chunk carries the digest and where the image is at."""
        try:
            await self.driver.read_barrier()
        except Exception as exc:
            code, details, md = error_status(exc, self.info, leader=self.driver.leader,
                                             not_leader=self.not_leader_status)
            await context.abort(code, details, trailing_metadata=md)
        sm = self.driver.sm
        applied, revision = sm.applied_index, sm.revision
        blob = sm.snapshot()
        view = memoryview(blob)
        for start in range(0, len(blob), SNAPSHOT_CHUNK_BYTES):
            yield cluster_pb2.SnapshotChunk(data=bytes(view[start:start + SNAPSHOT_CHUNK_BYTES]))
        yield cluster_pb2.SnapshotChunk(
            last=True, sha256=hashlib.sha256(blob).digest(), size=len(blob), applied_index=applied,
            revision=revision, version=SNAPSHOT_VERSION, header=self._response_header(revision))


def add_services(
    server: grpc.aio.Server, driver: Driver, node_info: NodeInfo, *, membership: Membership | None = None,
    gossip: GossipHost | None = None,
) -> None:
    """Register the ``KV``, ``Session`` and ``Cluster`` services of ``driver`` on ``server``.

    The caller creates the server with ``("grpc.max_receive_message_length",
    MAX_RECEIVE_MESSAGE_LENGTH)`` (2 MiB + 64 KiB of slack): a request larger than that is refused
    by gRPC with RESOURCE_EXHAUSTED before any handler runs, while anything smaller reaches the state
    machine's own limits (4 KiB keys, 1 MiB values, 128 txn ops), which answer INVALID_ARGUMENT
    naming the limit.
    """
    kv_pb2_grpc.add_KVServicer_to_server(KVService(driver, node_info), server)
    kv_pb2_grpc.add_SessionServicer_to_server(SessionService(driver, node_info), server)
    cluster_pb2_grpc.add_ClusterServicer_to_server(
        ClusterService(driver, node_info, membership=membership, gossip=gossip), server
    )
