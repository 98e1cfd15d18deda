"""KV and Session requests, responses and watches <-> :mod:`coterie.v1.kv_pb2`, server side.

The server's half of the KV wire contract (the client has its own, in :mod:`coterie.client`):

- :func:`request_from_pb` / :func:`command_from_pb` turn a gRPC request into a state machine
  :data:`Request` (or :class:`Command`, with the exactly-once header);
- :func:`response_to_pb` turns the state machine's :data:`Response` into the gRPC response *for that
  request*, and raises the :class:`KVError` of an :class:`ErrorResponse` (:mod:`.status` maps it to a
  gRPC status);
- :func:`watch_request_from_pb` and :func:`watch_response_to_pb` for watch streams.

Anything malformed that arrives from the network (an unknown enum value, a missing oneof or
sub-message, a oneof member that does not fit, a negative revision, a seq without a session) raises
:class:`InvalidArgument` with a message naming the field. Encoding trusts its input (it comes from
this process).

Key ranges: protobuf has no "absent" bytes, so ``range_end=None`` is sent as ``b""`` and ``b""`` is
read back as ``None`` (the state machine treats both as "the single key").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

from coterie.v1 import kv_pb2

from ..statemachine.errors import InvalidArgument
from ..statemachine.types import (
    CloseSessionRequest,
    Command,
    CompactRequest,
    CompactResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    ErrorResponse,
    Event,
    Fence,
    KeepAliveRequest,
    KeyValue,
    Op,
    OpResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RegisterSessionRequest,
    Request,
    Response,
    SessionResponse,
    TxnRequest,
    TxnResponse,
)

__all__ = [
    "PbRequest",
    "PbResponse",
    "WatchCancel",
    "WatchCreate",
    "command_from_pb",
    "fence_from_pb",
    "request_from_pb",
    "response_to_pb",
    "session_from_header",
    "watch_request_from_pb",
    "watch_response_to_pb",
]

_MAX_INT = (1 << 63) - 1

# Enum lookups by wire number. proto3 enums are open: a parsed message may hold any int32, so every
# lookup goes through one of these dicts and a KeyError means "unknown value".
_COMPARE_RESULTS: dict[int, CompareResult] = {int(r): r for r in CompareResult}
_COMPARE_TARGETS: dict[int, CompareTarget] = {int(t): t for t in CompareTarget}


# ====================================================================================== records


def _kv_to_pb(kv: KeyValue) -> kv_pb2.KeyValue:
    """One key version as protobuf."""
    return kv_pb2.KeyValue(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    )


def _event_to_pb(ev: Event, prev_kv: bool = True) -> kv_pb2.Event:
    """A change as protobuf; ``prev_kv=False`` leaves the previous version out (``sub`` is not sent:
    the order of events in a response carries it)."""
    pb = kv_pb2.Event(type=cast(kv_pb2.Event.EventType, ev.type), kv=_kv_to_pb(ev.kv))
    if prev_kv and ev.prev_kv is not None:
        pb.prev_kv.CopyFrom(_kv_to_pb(ev.prev_kv))
    return pb


# ===================================================================================== requests


def _nonneg(v: int, what: str) -> int:
    if not 0 <= v <= _MAX_INT:
        raise InvalidArgument(f"{what}: must be in [0, 2**63), got {v}")
    return v


def _range_end(b: bytes) -> bytes | None:
    return b or None


_TARGET_FIELDS: dict[CompareTarget, str] = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE_REVISION: "create_revision",
    CompareTarget.MOD_REVISION: "mod_revision",
    CompareTarget.VALUE: "value",
    CompareTarget.LEASE: "lease",
}


def _compare_from_pb(pb: kv_pb2.Compare, what: str = "Compare") -> Compare:
    """A txn guard (``value`` comes from the ``target_union`` member of ``target``).
    :class:`InvalidArgument` for an unknown result or target, or a ``target_union`` member that is
    missing or does not match ``target``."""
    result = _COMPARE_RESULTS.get(pb.result)
    if result is None:
        raise InvalidArgument(f"{what}.result: unknown compare result {pb.result}")
    target = _COMPARE_TARGETS.get(pb.target)
    if target is None:
        raise InvalidArgument(f"{what}.target: unknown compare target {pb.target}")
    field = _TARGET_FIELDS[target]
    which = pb.WhichOneof("target_union")
    if which != field:
        got = "nothing" if which is None else which
        raise InvalidArgument(f"{what}.target_union: a {target.name} compare needs {field}, got {got}")
    value: bytes | int = getattr(pb, field)
    return Compare(pb.key, target, result, value, _range_end(pb.range_end))


def _no_header(pb: Any, what: str) -> None:
    if pb.HasField("header"):
        raise InvalidArgument(f"{what}.header: not allowed inside a txn (the txn's header covers it)")


def _put_from_pb(pb: kv_pb2.PutRequest, what: str) -> PutRequest:
    return PutRequest(
        pb.key,
        pb.value,
        _nonneg(pb.lease, f"{what}.lease"),
        pb.prev_kv,
        pb.ignore_value,
        pb.ignore_lease,
    )


def _range_from_pb(pb: kv_pb2.RangeRequest, what: str) -> RangeRequest:
    return RangeRequest(
        pb.key,
        _range_end(pb.range_end),
        _nonneg(pb.limit, f"{what}.limit"),
        _nonneg(pb.revision, f"{what}.revision"),
        pb.count_only,
        pb.keys_only,
    )


def _delete_from_pb(pb: kv_pb2.DeleteRangeRequest, what: str) -> DeleteRangeRequest:
    return DeleteRangeRequest(pb.key, _range_end(pb.range_end), pb.prev_kv)


def _op_from_pb(pb: kv_pb2.RequestOp, what: str = "RequestOp") -> Op:
    """One txn op. :class:`InvalidArgument` if ``request`` is unset or the op has a header."""
    which = pb.WhichOneof("request")
    if which == "request_put":
        _no_header(pb.request_put, f"{what}.request_put")
        return _put_from_pb(pb.request_put, f"{what}.request_put")
    if which == "request_range":
        _no_header(pb.request_range, f"{what}.request_range")
        return _range_from_pb(pb.request_range, f"{what}.request_range")
    if which == "request_delete_range":
        _no_header(pb.request_delete_range, f"{what}.request_delete_range")
        return _delete_from_pb(pb.request_delete_range, f"{what}.request_delete_range")
    raise InvalidArgument(f"{what}.request: missing")


def _txn_from_pb(pb: kv_pb2.TxnRequest, what: str) -> TxnRequest:
    return TxnRequest(
        tuple([_compare_from_pb(c, f"{what}.compare[{i}]") for i, c in enumerate(pb.compare)]),
        tuple([_op_from_pb(o, f"{what}.success[{i}]") for i, o in enumerate(pb.success)]),
        tuple([_op_from_pb(o, f"{what}.failure[{i}]") for i, o in enumerate(pb.failure)]),
    )


_REQUEST_DECODERS: dict[type, Any] = {
    kv_pb2.PutRequest: _put_from_pb,
    kv_pb2.RangeRequest: _range_from_pb,
    kv_pb2.DeleteRangeRequest: _delete_from_pb,
    kv_pb2.TxnRequest: _txn_from_pb,
    kv_pb2.CompactionRequest: lambda pb, what: CompactRequest(_nonneg(pb.revision, f"{what}.revision")),
    kv_pb2.SessionOpenRequest: lambda pb, what: RegisterSessionRequest(),
    kv_pb2.SessionKeepAliveRequest: lambda pb, what: KeepAliveRequest(
        _nonneg(pb.session_id, f"{what}.session_id")
    ),
    kv_pb2.SessionCloseRequest: lambda pb, what: CloseSessionRequest(
        _nonneg(pb.session_id, f"{what}.session_id")
    ),
}

PbRequest: TypeAlias = (
    kv_pb2.PutRequest
    | kv_pb2.RangeRequest
    | kv_pb2.DeleteRangeRequest
    | kv_pb2.TxnRequest
    | kv_pb2.CompactionRequest
    | kv_pb2.SessionOpenRequest
    | kv_pb2.SessionKeepAliveRequest
    | kv_pb2.SessionCloseRequest
)
"""The gRPC requests that map to a state machine :data:`Request`."""


def request_from_pb(pb: PbRequest) -> Request:
    """The state machine request for a KV or Session gRPC request (its header aside; see
    :func:`command_from_pb`). Range's ``serializable`` is the server's to read from ``pb``."""
    decode = _REQUEST_DECODERS.get(type(pb))
    if decode is None:
        raise TypeError(f"not a KV or Session request: {type(pb).__name__}")
    req: Request = decode(pb, type(pb).__name__)
    return req


def _session_from_header(pb: Any) -> tuple[int, int]:
    if not pb.HasField("header"):
        return 0, 0
    h = pb.header
    what = f"{type(pb).__name__}.header"
    session_id = _nonneg(h.session_id, f"{what}.session_id")
    seq = _nonneg(h.seq, f"{what}.seq")
    if session_id and not seq:
        raise InvalidArgument(f"{what}.seq: missing for session {session_id} (seq starts at 1)")
    if seq and not session_id:
        raise InvalidArgument(f"{what}.session_id: missing for seq {seq}")
    return session_id, seq


def fence_from_pb(pb: Any) -> Fence | None:
    """The ``header.fence`` of a request as a :class:`Fence`, or None when it has none.
    :class:`InvalidArgument` for an empty prefix or a token that is not positive (a holder's token
    is a create revision, >= 1)."""
    if not pb.HasField("header") or not pb.header.HasField("fence"):
        return None
    f = pb.header.fence
    what = f"{type(pb).__name__}.header.fence"
    if not f.prefix:
        raise InvalidArgument(f"{what}.prefix: empty")
    if not 1 <= f.token <= _MAX_INT:
        raise InvalidArgument(f"{what}.token: must be a create revision >= 1, got {f.token}")
    return Fence(f.prefix, f.token)


def session_from_header(pb: Any) -> tuple[int, int]:
    """``(session_id, seq)`` of a request's ``RequestHeader`` (``(0, 0)`` without one);
    :class:`InvalidArgument` if only one of them is set or one is negative."""
    return _session_from_header(pb)


def command_from_pb(pb: PbRequest, timestamp: int = 0) -> Command:
    """The state machine command for a gRPC request: :func:`request_from_pb` plus the exactly-once
    identity and the fence of its ``header`` (KV requests only; a fence only on Put, DeleteRange and
    Txn, the requests that have one). The leader sets ``timestamp`` when it proposes."""
    req = request_from_pb(pb)
    if isinstance(
        pb, kv_pb2.SessionOpenRequest | kv_pb2.SessionKeepAliveRequest | kv_pb2.SessionCloseRequest
    ):
        return Command(req, timestamp)
    session_id, seq = _session_from_header(pb)
    fence = None
    if isinstance(pb, kv_pb2.PutRequest | kv_pb2.DeleteRangeRequest | kv_pb2.TxnRequest):
        fence = fence_from_pb(pb)
    elif pb.HasField("header") and pb.header.HasField("fence"):
        raise InvalidArgument(f"{type(pb).__name__}.header.fence: only Put, DeleteRange and Txn take a fence")
    return Command(req, timestamp, session_id, seq, fence)


# ==================================================================================== responses

PbResponse: TypeAlias = (
    kv_pb2.PutResponse
    | kv_pb2.RangeResponse
    | kv_pb2.DeleteRangeResponse
    | kv_pb2.TxnResponse
    | kv_pb2.CompactionResponse
    | kv_pb2.SessionOpenResponse
    | kv_pb2.SessionKeepAliveResponse
    | kv_pb2.SessionCloseResponse
)
"""The gRPC responses that carry a state machine :data:`Response`."""

# Which state machine response answers which request, and as which gRPC response.
_ANSWERS: dict[type, tuple[type, type]] = {
    PutRequest: (PutResponse, kv_pb2.PutResponse),
    RangeRequest: (RangeResponse, kv_pb2.RangeResponse),
    DeleteRangeRequest: (DeleteRangeResponse, kv_pb2.DeleteRangeResponse),
    TxnRequest: (TxnResponse, kv_pb2.TxnResponse),
    CompactRequest: (CompactResponse, kv_pb2.CompactionResponse),
    RegisterSessionRequest: (SessionResponse, kv_pb2.SessionOpenResponse),
    KeepAliveRequest: (SessionResponse, kv_pb2.SessionKeepAliveResponse),
    CloseSessionRequest: (SessionResponse, kv_pb2.SessionCloseResponse),
}


def _op_response_to_pb(r: OpResponse) -> kv_pb2.ResponseOp:
    # Inner responses carry only the revision in their header.
    h = kv_pb2.ResponseHeader(revision=r.revision)
    if isinstance(r, PutResponse):
        pb = kv_pb2.PutResponse(header=h)
        if r.prev_kv is not None:
            pb.prev_kv.CopyFrom(_kv_to_pb(r.prev_kv))
        return kv_pb2.ResponseOp(response_put=pb)
    if isinstance(r, RangeResponse):
        return kv_pb2.ResponseOp(
            response_range=kv_pb2.RangeResponse(
                header=h, kvs=[_kv_to_pb(kv) for kv in r.kvs], more=r.more, count=r.count
            )
        )
    return kv_pb2.ResponseOp(
        response_delete_range=kv_pb2.DeleteRangeResponse(
            header=h, deleted=r.deleted, prev_kvs=[_kv_to_pb(kv) for kv in r.prev_kvs]
        )
    )


def response_to_pb(
    request: Request,
    resp: Response,
    *,
    cluster_id: str = "",
    member_id: int = 0,
    raft_term: int = 0,
    ttl_ms: int = 0,
) -> PbResponse:
    """The gRPC response to ``request`` carrying ``resp`` (server side). The header's revision is
    ``resp.revision``; ``ttl_ms`` goes to session open / keep-alive responses.

    Raises the :class:`KVError` of an :class:`ErrorResponse` (:func:`.status.error_status` maps it),
    and :class:`InvalidArgument` when ``resp`` does not answer ``request``, which happens when a
    client reuses a session ``seq`` for a different request and gets the cached response of the first.
    """
    if isinstance(resp, ErrorResponse):
        raise resp.error
    expected = _ANSWERS.get(type(request))
    if expected is None:
        raise TypeError(f"{type(request).__name__} has no gRPC response")
    sm_type, pb_type = expected
    if type(resp) is not sm_type:
        raise InvalidArgument(
            f"RequestHeader.seq: the session's response for this seq is a {type(resp).__name__}, "
            f"not an answer to a {type(request).__name__} (was the seq reused for another request?)"
        )
    h = kv_pb2.ResponseHeader(
        cluster_id=cluster_id, member_id=member_id, revision=resp.revision, raft_term=raft_term
    )
    if isinstance(resp, PutResponse):
        pb = kv_pb2.PutResponse(header=h)
        if resp.prev_kv is not None:
            pb.prev_kv.CopyFrom(_kv_to_pb(resp.prev_kv))
        return pb
    if isinstance(resp, RangeResponse):
        return kv_pb2.RangeResponse(
            header=h, kvs=[_kv_to_pb(kv) for kv in resp.kvs], more=resp.more, count=resp.count
        )
    if isinstance(resp, DeleteRangeResponse):
        return kv_pb2.DeleteRangeResponse(
            header=h, deleted=resp.deleted, prev_kvs=[_kv_to_pb(kv) for kv in resp.prev_kvs]
        )
    if isinstance(resp, TxnResponse):
        return kv_pb2.TxnResponse(
            header=h,
            succeeded=resp.succeeded,
            responses=[_op_response_to_pb(r) for r in resp.responses],
        )
    if isinstance(resp, CompactResponse):
        return kv_pb2.CompactionResponse(header=h)
    assert isinstance(resp, SessionResponse)
    if pb_type is kv_pb2.SessionCloseResponse:
        return kv_pb2.SessionCloseResponse(header=h, session_id=resp.session_id)
    if pb_type is kv_pb2.SessionKeepAliveResponse:
        return kv_pb2.SessionKeepAliveResponse(header=h, session_id=resp.session_id, ttl_ms=ttl_ms)
    return kv_pb2.SessionOpenResponse(header=h, session_id=resp.session_id, ttl_ms=ttl_ms)


# ======================================================================================== watch


@dataclass(frozen=True, slots=True)
class WatchCreate:
    """A request to watch ``[key, range_end)`` from ``start_revision`` (0 = from now on);
    ``watch_id`` 0 = the server picks."""

    key: bytes
    range_end: bytes | None = None
    start_revision: int = 0
    prev_kv: bool = False
    watch_id: int = 0


@dataclass(frozen=True, slots=True)
class WatchCancel:
    """A request to cancel the watcher ``watch_id`` of this stream."""

    watch_id: int


def watch_request_from_pb(pb: kv_pb2.WatchRequest) -> WatchCreate | WatchCancel:
    """A watch stream request. :class:`InvalidArgument` if ``request_union`` is unset or a revision
    or id is negative."""
    which = pb.WhichOneof("request_union")
    if which == "create_request":
        c = pb.create_request
        return WatchCreate(
            c.key,
            _range_end(c.range_end),
            _nonneg(c.start_revision, "WatchCreateRequest.start_revision"),
            c.prev_kv,
            _nonneg(c.watch_id, "WatchCreateRequest.watch_id"),
        )
    if which == "cancel_request":
        return WatchCancel(_nonneg(pb.cancel_request.watch_id, "WatchCancelRequest.watch_id"))
    raise InvalidArgument("WatchRequest.request_union: missing")


def watch_response_to_pb(
    watch_id: int,
    events: Sequence[Event] = (),
    *,
    revision: int = 0,
    prev_kv: bool = False,
    created: bool = False,
    canceled: bool = False,
    compact_revision: int = 0,
    cancel_reason: str = "",
    cluster_id: str = "",
    member_id: int = 0,
    raft_term: int = 0,
    progress_notify: bool = False,
) -> kv_pb2.WatchResponse:
    """One message of a watch stream; events keep their ``prev_kv`` only if ``prev_kv``."""
    return kv_pb2.WatchResponse(
        header=kv_pb2.ResponseHeader(
            cluster_id=cluster_id, member_id=member_id, revision=revision, raft_term=raft_term
        ),
        watch_id=watch_id,
        created=created,
        canceled=canceled,
        compact_revision=compact_revision,
        cancel_reason=cancel_reason,
        events=[_event_to_pb(ev, prev_kv) for ev in events],
        progress_notify=progress_notify,
    )
