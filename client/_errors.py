"""THE mapping of a failed gRPC call to a typed error of :mod:`coterie.client.errors`, read from its
status code, its details and the wire metadata (``coterie.v1.wire``: the error detail and the leader
hint). Nothing else here: what a call does with the error is :mod:`._call`'s and the clients' job."""

from __future__ import annotations

from typing import Any

import grpc  # type: ignore[import-untyped]

from coterie.v1 import kv_pb2
from coterie.v1.wire import ERROR_DETAIL_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY

from .errors import (
    Compacted,
    CoterieError,
    FailedPrecondition,
    FenceRejected,
    InvalidArgument,
    LeaseNotFound,
    NotLeader,
    OutcomeUnknown,
    ResourceExhausted,
    SessionExpired,
    Unavailable,
)

_COMPACTED = kv_pb2.ERROR_CODE_COMPACTED
_EXPIRED = kv_pb2.ERROR_CODE_SESSION_EXPIRED
_LEASE_NOT_FOUND = kv_pb2.ERROR_CODE_LEASE_NOT_FOUND
_FENCE_REJECTED = kv_pb2.ERROR_CODE_FENCE_REJECTED


def _metadata(md: Any) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {}
    for item in md or ():
        k, v = item if isinstance(item, tuple) else (item.key, item.value)
        out[k] = v
    return out


def map_rpc_error(exc: Any, *, endpoint: str, write: bool, idempotent: bool) -> CoterieError:
    """THE mapping of a failed gRPC call (``grpc.RpcError`` or ``grpc.aio.AioRpcError``) to a typed
    error. ``write``: the call may change state; ``idempotent``: it carries a session seq (or is a
    read), so sending it again is safe."""
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if callable(getattr(exc, "details", None)) else "") or str(code)
    try:
        md = _metadata(exc.trailing_metadata())
    except Exception:
        md = {}
    name = code.name if code is not None else "UNKNOWN"
    kw: dict[str, Any] = {"code": name, "endpoint": endpoint}
    detail = kv_pb2.ErrorDetail()
    raw = md.get(ERROR_DETAIL_KEY)
    if isinstance(raw, bytes):
        try:
            detail.ParseFromString(raw)
        except Exception:
            detail = kv_pb2.ErrorDetail()
    leader_id = 0
    leader_raw = md.get(LEADER_ID_KEY)
    if leader_raw:
        try:
            leader_id = int(leader_raw)
        except ValueError:
            leader_id = 0
    leader_addr_raw = md.get(LEADER_ADDR_KEY, "")
    leader_addr = leader_addr_raw.decode() if isinstance(leader_addr_raw, bytes) else leader_addr_raw
    SC = grpc.StatusCode  # noqa: N806
    if code == SC.INVALID_ARGUMENT:
        return InvalidArgument(f"invalid request: {details}", **kw)
    if code == SC.OUT_OF_RANGE:
        if detail.code == _COMPACTED:
            return Compacted(
                f"revision {detail.requested_revision} is compacted; the oldest readable revision "
                f"is {detail.compact_revision}",
                compact_revision=detail.compact_revision,
                requested_revision=detail.requested_revision,
                **kw,
            )
        return InvalidArgument(f"revision out of range: {details}", **kw)
    if code == SC.NOT_FOUND and detail.code == _EXPIRED:
        return SessionExpired(f"session {detail.session_id} expired or is unknown: {details}", **kw)
    if code == SC.NOT_FOUND and detail.code == _LEASE_NOT_FOUND:
        return LeaseNotFound(f"lease {detail.lease_id} not found (expired or revoked): {details}",
                             lease_id=detail.lease_id, **kw)
    if code == SC.FAILED_PRECONDITION and detail.code == _FENCE_REJECTED:
        holder = f"token {detail.holder_token}" if detail.holder_token else "no holder"
        return FenceRejected(f"fenced write refused: fencing token {detail.fence_token} is not the "
                             f"current holder's ({holder}): {details}", token=detail.fence_token,
                             holder_token=detail.holder_token, **kw)
    if code == SC.FAILED_PRECONDITION:
        if leader_id or leader_addr:
            what = details if details.startswith("not the leader") else f"not the leader: {details}"
            return NotLeader(what, leader_id=leader_id, leader_addr=leader_addr, **kw)
        return FailedPrecondition(f"failed precondition: {details}", **kw)
    if code == SC.RESOURCE_EXHAUSTED:
        # The node's own queue bound says "overloaded"; gRPC's server says "Concurrent RPC limit
        # exceeded" when its maximum_concurrent_rpcs is reached. Both are load, not a bad request.
        low = details.lower()
        overloaded = "overload" in low or "concurrent rpc limit" in low
        what = "server overloaded" if overloaded else "request or response too large"
        return ResourceExhausted(f"{what}: {details}", retriable=overloaded, **kw)
    if code == SC.UNAVAILABLE:
        if details.startswith("outcome unknown"):
            return OutcomeUnknown(
                f"the write may or may not have been applied: {details}", retriable=idempotent, **kw
            )
        if leader_id or leader_addr or details.startswith("not the leader"):
            what = details if details.startswith("not the leader") else f"not the leader: {details}"
            return NotLeader(what, leader_id=leader_id, leader_addr=leader_addr, **kw)
        return Unavailable(f"member unavailable: {details}", **kw)
    if code == SC.DEADLINE_EXCEEDED:
        if write:
            return OutcomeUnknown(
                f"the attempt timed out; the write may or may not have been applied: {details}",
                retriable=idempotent,
                **kw,
            )
        return Unavailable(f"the attempt timed out: {details}", **kw)
    if code == SC.CANCELLED:
        # The server's gRPC core cancels calls it cannot take under load; this client cancels only
        # watch streams, which handle that themselves.
        if write:
            return OutcomeUnknown(f"the server canceled the call; the write may or may not have been "
                                  f"applied: {details}", retriable=idempotent, **kw)
        return Unavailable(f"the server canceled the call: {details}", **kw)
    return CoterieError(f"call failed with {name}: {details}", retriable=False,
                        unsafe=write and not idempotent, **kw)
