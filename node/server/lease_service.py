"""The client-facing gRPC ``Lease`` service (``coterie.v1.Lease``, ``proto/coterie/v1/lease.proto``).

Only the leader answers: every call on a follower is refused like a KV write (UNAVAILABLE, with the
leader in the trailing metadata of :func:`.status.error_status`), so a client moves to the leader.

- **Grant** proposes a ``LeaseGrantRequest``. A TTL below the node's minimum (``min_ttl_ms``,
  :meth:`.config.NodeConfig.effective_min_lease_ttl`) is raised to it and ``notice`` says so. The
  ``RequestHeader`` session/seq makes it exactly-once, as for KV writes: a retry with the same seq
  returns the first grant.
- **Revoke** proposes a ``LeaseRevokeRequest`` (exactly-once the same way); an unknown lease is
  NOT_FOUND with ``ErrorDetail`` ``LEASE_NOT_FOUND``.
- **KeepAlive** (bidirectional stream): each request joins the node-wide :class:`KeepAliveBatcher`,
  which turns the keep-alives that arrive together, from every stream, into one
  ``LeaseKeepAliveRequest`` entry. While one entry is in flight the next batch gathers, so there is
  at most one keep-alive entry in flight per leader. Each request is answered after its entry was
  applied here (so it committed under this leader), in request order; ``ttl_ms`` 0 for a lease that
  does not exist. If the entry's outcome is unknown (leadership lost) the stream ends with the
  status of :func:`.status.error_status` (UNAVAILABLE with the new leader's hint): the client
  reconnects to the leader and renews again, which is always safe.
- **TimeToLive** and **Leases** read ``sm.leases`` and the leader's
  :class:`~.lease_timer.LeaseTimer` after a read barrier (ReadIndex), so the answer reflects every
  grant, keep-alive, revoke and expiry committed before the call. ``remaining_ms`` is the leader's
  own countdown; -1 (TimeToLive) when the lease does not exist.

A ``RequestHeader.fence`` on a Grant or Revoke is refused (INVALID_ARGUMENT): lease calls are not
fenced.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc  # type: ignore[import-untyped]

from coterie.v1 import lease_pb2, lease_pb2_grpc

from ..raft import NotLeader, Role
from ..statemachine import (
    ErrorResponse,
    InvalidArgument,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    Response,
    encode_command,
)
from .driver import Driver, consume_outcome
from .info import NodeInfo
from .kv_codec import session_from_header
from .services import _now_ms, _Service
from .status import error_status

__all__ = ["MAX_KEEPALIVE_BATCH", "KeepAliveBatcher", "LeaseService", "add_lease_service"]

MAX_KEEPALIVE_BATCH = 10_000
"""Most lease ids in one keep-alive entry (about 90 KB); more waiting keep-alives go in the next."""

_MAX_INT = (1 << 63) - 1


class KeepAliveBatcher:
    """Coalesces keep-alives from every stream of one node into ``LeaseKeepAliveRequest`` entries.

    :meth:`submit` returns a future resolved, once the entry carrying the id is applied, with
    ``(ttl_ms, revision)`` (``ttl_ms`` 0: the lease does not exist), or failed with the proposal's
    error. Futures resolve in submission order (one entry in flight at a time, batches in order).
    """

    def __init__(self, driver: Driver, *, max_batch: int = MAX_KEEPALIVE_BATCH) -> None:
        self.driver = driver
        self.max_batch = max_batch
        self._pending: list[tuple[int, asyncio.Future[tuple[int, int]]]] = []
        self._task: asyncio.Task[None] | None = None
        self.entries = 0
        """Keep-alive entries proposed so far (for tests: coalescing shows as fewer entries)."""

    def submit(self, lease_id: int) -> asyncio.Future[tuple[int, int]]:
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(consume_outcome)
        self._pending.append((lease_id, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lease-keepalive")
        return fut

    async def _run(self) -> None:
        while self._pending:
            # One loop turn: every keep-alive already received (from any stream) joins this entry.
            await asyncio.sleep(0)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            batch = [(i, f) for i, f in batch if not f.done()]
            if not batch:
                continue
            ids = tuple(dict.fromkeys(i for i, _ in batch))
            try:
                self.entries += 1
                resp: Response = await self.driver.propose(
                    encode_command(LeaseKeepAliveRequest(ids), timestamp=_now_ms()))
                if isinstance(resp, ErrorResponse):
                    raise resp.error
                assert isinstance(resp, LeaseKeepAliveResponse)
            except Exception as exc:  # handed to each waiting stream
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                continue
            renewed = dict(resp.renewed)
            for lease_id, f in batch:
                if not f.done():
                    f.set_result((renewed.get(lease_id, 0), resp.revision))


def _no_fence(pb: Any) -> None:
    if pb.HasField("header") and pb.header.HasField("fence"):
        raise InvalidArgument(f"{type(pb).__name__}.header.fence: lease calls are not fenced")


class LeaseService(_Service):
    """``coterie.v1.Lease`` (see the module docstring)."""

    def __init__(self, driver: Driver, node_info: NodeInfo, *, min_ttl_ms: int) -> None:
        super().__init__(driver, node_info)
        if min_ttl_ms < 1:
            raise ValueError(f"min_ttl_ms must be >= 1, got {min_ttl_ms}")
        self.min_ttl_ms = min_ttl_ms
        self.batcher = KeepAliveBatcher(driver)

    def _require_leader(self) -> None:
        if self.driver.role != Role.LEADER:
            raise NotLeader(self.driver.leader)

    async def _propose_lease(self, pb: Any, req: LeaseGrantRequest | LeaseRevokeRequest) -> Response:
        _no_fence(pb)
        session_id, seq = session_from_header(pb)
        self._require_leader()
        resp = await self.driver.propose(
            encode_command(req, timestamp=_now_ms(), session_id=session_id, seq=seq))
        if isinstance(resp, ErrorResponse):
            raise resp.error
        want = LeaseGrantResponse if isinstance(req, LeaseGrantRequest) else LeaseRevokeResponse
        if not isinstance(resp, want):
            raise InvalidArgument(
                f"RequestHeader.seq: the session's response for this seq is a {type(resp).__name__}, "
                f"not an answer to a {type(req).__name__} (was the seq reused for another request?)")
        return resp

    # ------------------------------------------------------------------------------------ Grant

    async def Grant(  # noqa: N802
        self, request: lease_pb2.LeaseGrantRequest, context: Any
    ) -> lease_pb2.LeaseGrantResponse:
        return await self._run(context, self._grant(request))

    async def _grant(self, request: lease_pb2.LeaseGrantRequest) -> lease_pb2.LeaseGrantResponse:
        if not 1 <= request.ttl_ms <= _MAX_INT:
            raise InvalidArgument(f"LeaseGrantRequest.ttl_ms: must be > 0, got {request.ttl_ms}")
        if request.id < 0:
            raise InvalidArgument(
                f"LeaseGrantRequest.id: must be >= 0 (0: the cluster picks), got {request.id}")
        ttl = max(request.ttl_ms, self.min_ttl_ms)
        resp = await self._propose_lease(request, LeaseGrantRequest(ttl, request.id))
        assert isinstance(resp, LeaseGrantResponse)
        notice = ""
        if resp.ttl_ms != request.ttl_ms:
            notice = (f"requested TTL {request.ttl_ms} ms is below this cluster's minimum lease TTL "
                      f"({self.min_ttl_ms} ms, --min-lease-ttl; it outlasts a leader election); "
                      f"granted {resp.ttl_ms} ms")
        return lease_pb2.LeaseGrantResponse(header=self._response_header(resp.revision), id=resp.lease_id,
                                            ttl_ms=resp.ttl_ms, notice=notice)

    # ----------------------------------------------------------------------------------- Revoke

    async def Revoke(  # noqa: N802
        self, request: lease_pb2.LeaseRevokeRequest, context: Any
    ) -> lease_pb2.LeaseRevokeResponse:
        return await self._run(context, self._revoke(request))

    async def _revoke(self, request: lease_pb2.LeaseRevokeRequest) -> lease_pb2.LeaseRevokeResponse:
        if request.id < 0:
            raise InvalidArgument(f"LeaseRevokeRequest.id: must be >= 0, got {request.id}")
        resp = await self._propose_lease(request, LeaseRevokeRequest(request.id))
        assert isinstance(resp, LeaseRevokeResponse)
        return lease_pb2.LeaseRevokeResponse(header=self._response_header(resp.revision),
                                             deleted=resp.deleted)

    # -------------------------------------------------------------------------------- KeepAlive

    async def KeepAlive(  # noqa: N802
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[lease_pb2.LeaseKeepAliveResponse]:
        answers: asyncio.Queue[tuple[int, asyncio.Future[tuple[int, int]]] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                async for req in request_iterator:
                    if 1 <= req.id <= _MAX_INT:
                        fut = self.batcher.submit(req.id)
                    else:  # no such lease can exist; answered in its turn
                        fut = loop.create_future()
                        fut.set_result((0, 0))
                    answers.put_nowait((req.id, fut))
            finally:
                answers.put_nowait(None)

        reader: asyncio.Task[None] | None = None
        try:
            self._require_leader()
            reader = loop.create_task(read(), name="lease-keepalive-reader")
            while (item := await answers.get()) is not None:
                lease_id, fut = item
                ttl, revision = await fut
                header = self._response_header(revision or self.driver.sm.revision)
                yield lease_pb2.LeaseKeepAliveResponse(header=header, id=lease_id, ttl_ms=ttl)
            await reader  # re-raises a failure of the request stream
        except Exception as exc:
            code, details, md = error_status(exc, self.info, leader=self.driver.leader)
            await context.abort(code, details, trailing_metadata=md)
        finally:
            if reader is not None and not reader.done():
                reader.cancel()

    # ------------------------------------------------------------------------------------ reads

    async def _barrier(self) -> None:
        self._require_leader()
        await self.driver.read_barrier()
        self._require_leader()

    def _remaining(self, lease_id: int, checkpointed: int) -> int:
        rem = self.driver.leases.remaining(lease_id, self.driver.clock.now())
        return checkpointed if rem is None else rem

    async def TimeToLive(  # noqa: N802
        self, request: lease_pb2.LeaseTimeToLiveRequest, context: Any
    ) -> lease_pb2.LeaseTimeToLiveResponse:
        return await self._run(context, self._time_to_live(request))

    async def _time_to_live(
        self, request: lease_pb2.LeaseTimeToLiveRequest
    ) -> lease_pb2.LeaseTimeToLiveResponse:
        await self._barrier()
        sm = self.driver.sm
        header = self._response_header(sm.revision)
        lease = sm.leases.get(request.id)
        if lease is None:
            return lease_pb2.LeaseTimeToLiveResponse(header=header, id=request.id, remaining_ms=-1)
        return lease_pb2.LeaseTimeToLiveResponse(
            header=header, id=request.id, remaining_ms=self._remaining(lease.lease_id, lease.remaining_ms),
            ttl_ms=lease.ttl_ms, keys=list(lease.keys) if request.keys else [])

    async def Leases(  # noqa: N802
        self, request: lease_pb2.LeaseLeasesRequest, context: Any
    ) -> lease_pb2.LeaseLeasesResponse:
        return await self._run(context, self._leases())

    async def _leases(self) -> lease_pb2.LeaseLeasesResponse:
        await self._barrier()
        sm = self.driver.sm
        return lease_pb2.LeaseLeasesResponse(
            header=self._response_header(sm.revision),
            leases=[lease_pb2.LeaseStatus(id=x.lease_id, ttl_ms=x.ttl_ms,
                                          remaining_ms=self._remaining(x.lease_id, x.remaining_ms),
                                          keys=len(x.keys)) for x in sm.leases])


def add_lease_service(server: grpc.aio.Server, driver: Driver, node_info: NodeInfo, *,
                      min_ttl_ms: int) -> LeaseService:
    """Register the ``Lease`` service of ``driver`` on ``server`` (the client listener, beside KV,
    Session and Cluster); ``min_ttl_ms`` is the shortest TTL granted."""
    svc = LeaseService(driver, node_info, min_ttl_ms=min_ttl_ms)
    lease_pb2_grpc.add_LeaseServicer_to_server(svc, server)
    return svc
