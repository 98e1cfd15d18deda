"""Conversions between the core's dataclasses and the protobuf messages of ``proto/coterie/v1``.

Raft side (:mod:`coterie.v1.raft_pb2`, the hot peer path): :func:`message_to_pb` /
:func:`message_from_pb` and the same for :class:`Entry`, :class:`SnapshotMetadata`,
:class:`ConfState`, :class:`ConfChange`, plus :func:`batch_to_pb` / :func:`batch_from_pb`.

KV side (:mod:`coterie.v1.kv_pb2`):

- server: :func:`request_from_pb` / :func:`command_from_pb` turn a gRPC request into a state machine
  :data:`Request` (or :class:`Command`, with the exactly-once header); :func:`response_to_pb` turns
  the state machine's :data:`Response` into the gRPC response *for that request*, and raises the
  :class:`KVError` of an :class:`ErrorResponse` (map it with :func:`status_code_for` and
  :func:`error_to_pb`); :func:`watch_request_from_pb` and :func:`watch_response_to_pb` for watches;
- client: the inverses :func:`request_to_pb`, :func:`response_from_pb`, :func:`error_from_pb`,
  :func:`watch_request_to_pb`, :func:`event_from_pb`.

Anything malformed that arrives from the network (an unknown enum value, a missing oneof or
sub-message, a oneof member that does not fit, a negative revision, a seq without a session) raises
:class:`InvalidArgument` with a message naming the field. Conversions *to* protobuf trust their input
(it comes from this process).

Key ranges: protobuf has no "absent" bytes, so ``range_end=None`` is sent as ``b""`` and ``b""`` is
read back as ``None`` (the state machine treats both as "the single key").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import grpc  # type: ignore[import-untyped]

from coterie.v1 import kv_pb2, raft_pb2

from ..raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    SnapshotMetadata,
)
from ..statemachine.errors import (
    Compacted,
    FutureRevision,
    InvalidArgument,
    KVError,
    LimitExceeded,
    SessionExpired,
    StaleRequest,
)
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
    EventType,
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
    "WatchCancel",
    "WatchCreate",
    "batch_from_pb",
    "batch_to_pb",
    "command_from_pb",
    "compare_from_pb",
    "compare_to_pb",
    "conf_change_from_pb",
    "conf_change_to_pb",
    "conf_state_from_pb",
    "conf_state_to_pb",
    "entry_from_pb",
    "entry_to_pb",
    "error_from_pb",
    "error_to_pb",
    "event_from_pb",
    "event_to_pb",
    "events_from_pb",
    "kv_from_pb",
    "kv_to_pb",
    "message_from_pb",
    "message_to_pb",
    "op_from_pb",
    "op_to_pb",
    "request_from_pb",
    "request_to_pb",
    "response_from_pb",
    "response_to_pb",
    "snapshot_metadata_from_pb",
    "snapshot_metadata_to_pb",
    "status_code_for",
    "watch_request_from_pb",
    "watch_request_to_pb",
    "watch_response_to_pb",
]

_MAX_INT = (1 << 63) - 1

# Enum lookups by wire number. proto3 enums are open: a parsed message may hold any int32, so every
# lookup goes through one of these dicts and a KeyError means "unknown value".
_MESSAGE_TYPES: dict[int, MessageType] = {int(t): t for t in MessageType}
_ENTRY_TYPES: dict[int, EntryType] = {int(t): t for t in EntryType}
_CONF_CHANGE_TYPES: dict[int, ConfChangeType] = {int(t): t for t in ConfChangeType}
_COMPARE_RESULTS: dict[int, CompareResult] = {int(r): r for r in CompareResult}
_COMPARE_TARGETS: dict[int, CompareTarget] = {int(t): t for t in CompareTarget}
_EVENT_TYPES: dict[int, EventType] = {int(t): t for t in EventType}

_PbMessage = raft_pb2.RaftMessage
_PbEntry = raft_pb2.Entry


# ================================================================================================ Raft


def entry_to_pb(e: Entry) -> raft_pb2.Entry:
    """One log entry as protobuf."""
    return _PbEntry(term=e.term, index=e.index, type=cast(raft_pb2.EntryType, e.type), data=e.data)


def entry_from_pb(pb: raft_pb2.Entry) -> Entry:
    """Inverse of :func:`entry_to_pb`; :class:`InvalidArgument` for an unknown entry type."""
    t = _ENTRY_TYPES.get(pb.type)
    if t is None:
        raise InvalidArgument(f"Entry.type: unknown entry type {pb.type}")
    return Entry(pb.term, pb.index, t, pb.data)


def conf_state_to_pb(cs: ConfState) -> raft_pb2.ConfState:
    """A membership as protobuf."""
    return raft_pb2.ConfState(voters=cs.voters, learners=cs.learners)


def conf_state_from_pb(pb: raft_pb2.ConfState, what: str = "ConfState") -> ConfState:
    """Inverse of :func:`conf_state_to_pb`; :class:`InvalidArgument` if a node is in both lists."""
    try:
        return ConfState(tuple(pb.voters), tuple(pb.learners))
    except ValueError as e:
        raise InvalidArgument(f"{what}: {e}") from None


def snapshot_metadata_to_pb(meta: SnapshotMetadata) -> raft_pb2.SnapshotMetadata:
    """Snapshot metadata as protobuf."""
    cs = meta.conf_state
    return raft_pb2.SnapshotMetadata(
        index=meta.index,
        term=meta.term,
        conf_state=raft_pb2.ConfState(voters=cs.voters, learners=cs.learners),
    )


def snapshot_metadata_from_pb(
    pb: raft_pb2.SnapshotMetadata, what: str = "SnapshotMetadata"
) -> SnapshotMetadata:
    """Inverse of :func:`snapshot_metadata_to_pb`. An absent ``conf_state`` is the empty one."""
    return SnapshotMetadata(pb.index, pb.term, conf_state_from_pb(pb.conf_state, f"{what}.conf_state"))


def conf_change_to_pb(cc: ConfChange) -> raft_pb2.ConfChange:
    """A membership change as protobuf."""
    return raft_pb2.ConfChange(type=cast(raft_pb2.ConfChangeType, cc.type), node_id=cc.node_id,
                               context=cc.context)


def conf_change_from_pb(pb: raft_pb2.ConfChange) -> ConfChange:
    """Inverse of :func:`conf_change_to_pb`; :class:`InvalidArgument` for an unknown change type."""
    t = _CONF_CHANGE_TYPES.get(pb.type)
    if t is None:
        raise InvalidArgument(f"ConfChange.type: unknown conf change type {pb.type}")
    return ConfChange(t, pb.node_id, pb.context)


def _fill_message(pb: raft_pb2.RaftMessage, m: Message) -> None:
    # Only non-default fields are set: most messages (heartbeats, responses) use a handful.
    pb.type = cast(raft_pb2.MessageType, m.type)
    pb.to = m.to
    pb.from_id = m.frm
    if m.term:
        pb.term = m.term
    if m.log_term:
        pb.log_term = m.log_term
    if m.index:
        pb.index = m.index
    if m.entries:
        add = pb.entries.add
        for e in m.entries:
            add(term=e.term, index=e.index, type=e.type, data=e.data)
    if m.commit:
        pb.commit = m.commit
    if m.reject:
        pb.reject = True
    if m.reject_hint:
        pb.reject_hint = m.reject_hint
    if m.context:
        pb.context = m.context
    if m.read_seq:
        pb.read_seq = m.read_seq
    if m.snapshot is not None:
        s = m.snapshot
        ps = pb.snapshot
        ps.index = s.index
        ps.term = s.term
        ps.conf_state.SetInParent()
        ps.conf_state.voters.extend(s.conf_state.voters)
        ps.conf_state.learners.extend(s.conf_state.learners)
    if m.snap_offset:
        pb.snap_offset = m.snap_offset
    if m.snap_data:
        pb.snap_data = m.snap_data
    if m.snap_done:
        pb.snap_done = True
    if m.transfer:
        pb.transfer = True


def message_to_pb(m: Message) -> raft_pb2.RaftMessage:
    """A Raft message as protobuf (``frm`` becomes ``from_id``)."""
    pb = _PbMessage()
    _fill_message(pb, m)
    return pb


def message_from_pb(pb: raft_pb2.RaftMessage) -> Message:
    """Inverse of :func:`message_to_pb`.

    :class:`InvalidArgument` for an unknown message or entry type, a SNAP message without
    ``snapshot`` metadata, or a snapshot whose membership lists a node twice.
    """
    try:
        typ = _MESSAGE_TYPES[pb.type]
        et = _ENTRY_TYPES
        entries = tuple([Entry(e.term, e.index, et[e.type], e.data) for e in pb.entries])
    except KeyError:
        raise _bad_message(pb) from None
    if pb.HasField("snapshot"):
        snapshot: SnapshotMetadata | None = snapshot_metadata_from_pb(pb.snapshot, "RaftMessage.snapshot")
    elif typ is MessageType.SNAP:
        raise InvalidArgument("RaftMessage.snapshot: missing on a SNAP message")
    else:
        snapshot = None
    return Message(
        typ,
        pb.to,
        pb.from_id,
        pb.term,
        pb.log_term,
        pb.index,
        entries,
        pb.commit,
        pb.reject,
        pb.reject_hint,
        pb.context,
        pb.read_seq,
        snapshot,
        pb.snap_offset,
        pb.snap_data,
        pb.snap_done,
        pb.transfer,
    )


def _bad_message(pb: raft_pb2.RaftMessage) -> InvalidArgument:
    if pb.type not in _MESSAGE_TYPES:
        return InvalidArgument(f"RaftMessage.type: unknown message type {pb.type}")
    for i, e in enumerate(pb.entries):
        if e.type not in _ENTRY_TYPES:
            return InvalidArgument(f"RaftMessage.entries[{i}].type: unknown entry type {e.type}")
    return InvalidArgument("RaftMessage: malformed")  # pragma: no cover - one of the above holds


def batch_to_pb(cluster_id: str, from_id: int, messages: Iterable[Message]) -> raft_pb2.MessageBatch:
    """Messages from ``from_id`` (each one's ``frm``) to one peer, as one batch."""
    batch = raft_pb2.MessageBatch(cluster_id=cluster_id, from_id=from_id)
    add = batch.messages.add
    for m in messages:
        _fill_message(add(), m)
    return batch


def batch_from_pb(batch: raft_pb2.MessageBatch) -> list[Message]:
    """The messages of a batch, in order. :class:`InvalidArgument` if one is malformed or claims a
    sender other than the batch's ``from_id``. (Checking ``cluster_id`` is the caller's job.)"""
    msgs = [message_from_pb(pb) for pb in batch.messages]
    sender = batch.from_id
    for i, m in enumerate(msgs):
        if m.frm != sender:
            raise InvalidArgument(
                f"MessageBatch.messages[{i}].from_id: {m.frm} differs from the batch's from_id {sender}"
            )
    return msgs


# ====================================================================================== KV: records


def kv_to_pb(kv: KeyValue) -> kv_pb2.KeyValue:
    """One key version as protobuf."""
    return kv_pb2.KeyValue(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    )


def kv_from_pb(pb: kv_pb2.KeyValue) -> KeyValue:
    """Inverse of :func:`kv_to_pb`."""
    return KeyValue(pb.key, pb.value, pb.create_revision, pb.mod_revision, pb.version, pb.lease)


def event_to_pb(ev: Event, prev_kv: bool = True) -> kv_pb2.Event:
    """A change as protobuf; ``prev_kv=False`` leaves the previous version out (``sub`` is not sent:
    the order of events in a response carries it)."""
    pb = kv_pb2.Event(type=cast(kv_pb2.Event.EventType, ev.type), kv=kv_to_pb(ev.kv))
    if prev_kv and ev.prev_kv is not None:
        pb.prev_kv.CopyFrom(kv_to_pb(ev.prev_kv))
    return pb


def event_from_pb(pb: kv_pb2.Event, sub: int = 0, what: str = "Event") -> Event:
    """Inverse of :func:`event_to_pb` (``sub`` is the caller's to give). :class:`InvalidArgument`
    for an unknown event type or a missing ``kv``."""
    t = _EVENT_TYPES.get(pb.type)
    if t is None:
        raise InvalidArgument(f"{what}.type: unknown event type {pb.type}")
    if not pb.HasField("kv"):
        raise InvalidArgument(f"{what}.kv: missing")
    prev = kv_from_pb(pb.prev_kv) if pb.HasField("prev_kv") else None
    return Event(t, kv_from_pb(pb.kv), prev, sub)


# ===================================================================================== KV: requests


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


def compare_to_pb(c: Compare) -> kv_pb2.Compare:
    """A txn guard as protobuf: ``value`` goes to the ``target_union`` member of ``target``."""
    pb = kv_pb2.Compare(result=cast(kv_pb2.Compare.CompareResult, c.result),
                        target=cast(kv_pb2.Compare.CompareTarget, c.target), key=c.key,
                        range_end=c.range_end or b"")
    setattr(pb, _TARGET_FIELDS[c.target], c.value)
    return pb


def compare_from_pb(pb: kv_pb2.Compare, what: str = "Compare") -> Compare:
    """Inverse of :func:`compare_to_pb`. :class:`InvalidArgument` for an unknown result or target, or
    a ``target_union`` member that is missing or does not match ``target``."""
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


def op_from_pb(pb: kv_pb2.RequestOp, what: str = "RequestOp") -> Op:
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
        tuple([compare_from_pb(c, f"{what}.compare[{i}]") for i, c in enumerate(pb.compare)]),
        tuple([op_from_pb(o, f"{what}.success[{i}]") for i, o in enumerate(pb.success)]),
        tuple([op_from_pb(o, f"{what}.failure[{i}]") for i, o in enumerate(pb.failure)]),
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


def command_from_pb(pb: PbRequest, timestamp: int = 0) -> Command:
    """The state machine command for a gRPC request: :func:`request_from_pb` plus the exactly-once
    identity of its ``header`` (KV requests only). The leader sets ``timestamp`` when it proposes."""
    req = request_from_pb(pb)
    if isinstance(
        pb, kv_pb2.SessionOpenRequest | kv_pb2.SessionKeepAliveRequest | kv_pb2.SessionCloseRequest
    ):
        return Command(req, timestamp)
    session_id, seq = _session_from_header(pb)
    return Command(req, timestamp, session_id, seq)


def _header(session_id: int, seq: int) -> kv_pb2.RequestHeader | None:
    return kv_pb2.RequestHeader(session_id=session_id, seq=seq) if session_id or seq else None


def _put_to_pb(op: PutRequest, header: kv_pb2.RequestHeader | None = None) -> kv_pb2.PutRequest:
    return kv_pb2.PutRequest(
        header=header,
        key=op.key,
        value=op.value,
        lease=op.lease,
        prev_kv=op.prev_kv,
        ignore_value=op.ignore_value,
        ignore_lease=op.ignore_lease,
    )


def _range_to_pb(
    op: RangeRequest, header: kv_pb2.RequestHeader | None = None, serializable: bool = False
) -> kv_pb2.RangeRequest:
    return kv_pb2.RangeRequest(
        header=header,
        key=op.key,
        range_end=op.range_end or b"",
        limit=op.limit,
        revision=op.revision,
        serializable=serializable,
        keys_only=op.keys_only,
        count_only=op.count_only,
    )


def _delete_to_pb(
    op: DeleteRangeRequest, header: kv_pb2.RequestHeader | None = None
) -> kv_pb2.DeleteRangeRequest:
    return kv_pb2.DeleteRangeRequest(
        header=header, key=op.key, range_end=op.range_end or b"", prev_kv=op.prev_kv
    )


def op_to_pb(op: Op) -> kv_pb2.RequestOp:
    """One txn op as protobuf."""
    if isinstance(op, PutRequest):
        return kv_pb2.RequestOp(request_put=_put_to_pb(op))
    if isinstance(op, RangeRequest):
        return kv_pb2.RequestOp(request_range=_range_to_pb(op))
    return kv_pb2.RequestOp(request_delete_range=_delete_to_pb(op))


def request_to_pb(
    req: Request, session_id: int = 0, seq: int = 0, *, serializable: bool = False
) -> PbRequest:
    """The gRPC request for a state machine request (client side). ``session_id``/``seq`` go to the
    header of KV requests; ``serializable`` applies to a range. ``NoopRequest`` has no gRPC form."""
    h = _header(session_id, seq)
    if isinstance(req, PutRequest):
        return _put_to_pb(req, h)
    if isinstance(req, RangeRequest):
        return _range_to_pb(req, h, serializable)
    if isinstance(req, DeleteRangeRequest):
        return _delete_to_pb(req, h)
    if isinstance(req, TxnRequest):
        return kv_pb2.TxnRequest(
            header=h,
            compare=[compare_to_pb(c) for c in req.compare],
            success=[op_to_pb(o) for o in req.success],
            failure=[op_to_pb(o) for o in req.failure],
        )
    if isinstance(req, CompactRequest):
        return kv_pb2.CompactionRequest(header=h, revision=req.revision)
    if isinstance(req, RegisterSessionRequest):
        return kv_pb2.SessionOpenRequest()
    if isinstance(req, KeepAliveRequest):
        return kv_pb2.SessionKeepAliveRequest(session_id=req.session_id)
    if isinstance(req, CloseSessionRequest):
        return kv_pb2.SessionCloseRequest(session_id=req.session_id)
    raise TypeError(f"{type(req).__name__} has no gRPC request")


# ==================================================================================== KV: responses

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
            pb.prev_kv.CopyFrom(kv_to_pb(r.prev_kv))
        return kv_pb2.ResponseOp(response_put=pb)
    if isinstance(r, RangeResponse):
        return kv_pb2.ResponseOp(
            response_range=kv_pb2.RangeResponse(
                header=h, kvs=[kv_to_pb(kv) for kv in r.kvs], more=r.more, count=r.count
            )
        )
    return kv_pb2.ResponseOp(
        response_delete_range=kv_pb2.DeleteRangeResponse(
            header=h, deleted=r.deleted, prev_kvs=[kv_to_pb(kv) for kv in r.prev_kvs]
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

    Raises the :class:`KVError` of an :class:`ErrorResponse` (see :func:`status_code_for`), and
    :class:`InvalidArgument` when ``resp`` does not answer ``request``, which happens when a client
    reuses a session ``seq`` for a different request and gets the cached response of the first.
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
            pb.prev_kv.CopyFrom(kv_to_pb(resp.prev_kv))
        return pb
    if isinstance(resp, RangeResponse):
        return kv_pb2.RangeResponse(
            header=h, kvs=[kv_to_pb(kv) for kv in resp.kvs], more=resp.more, count=resp.count
        )
    if isinstance(resp, DeleteRangeResponse):
        return kv_pb2.DeleteRangeResponse(
            header=h, deleted=resp.deleted, prev_kvs=[kv_to_pb(kv) for kv in resp.prev_kvs]
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


def _op_response_from_pb(pb: kv_pb2.ResponseOp, what: str) -> OpResponse:
    which = pb.WhichOneof("response")
    if which is None:
        raise InvalidArgument(f"{what}.response: missing")
    r = response_from_pb(getattr(pb, which))
    assert isinstance(r, PutResponse | RangeResponse | DeleteRangeResponse)
    return r


def response_from_pb(pb: PbResponse) -> Response:
    """Inverse of :func:`response_to_pb` (client side); the revision comes from the header."""
    rev = pb.header.revision
    if isinstance(pb, kv_pb2.PutResponse):
        return PutResponse(rev, kv_from_pb(pb.prev_kv) if pb.HasField("prev_kv") else None)
    if isinstance(pb, kv_pb2.RangeResponse):
        return RangeResponse(rev, tuple([kv_from_pb(kv) for kv in pb.kvs]), pb.count, pb.more)
    if isinstance(pb, kv_pb2.DeleteRangeResponse):
        return DeleteRangeResponse(rev, pb.deleted, tuple([kv_from_pb(kv) for kv in pb.prev_kvs]))
    if isinstance(pb, kv_pb2.TxnResponse):
        return TxnResponse(
            rev,
            pb.succeeded,
            tuple(
                [_op_response_from_pb(r, f"TxnResponse.responses[{i}]") for i, r in enumerate(pb.responses)]
            ),
        )
    if isinstance(pb, kv_pb2.CompactionResponse):
        return CompactResponse(rev)
    if isinstance(
        pb, kv_pb2.SessionOpenResponse | kv_pb2.SessionKeepAliveResponse | kv_pb2.SessionCloseResponse
    ):
        return SessionResponse(rev, pb.session_id)
    raise TypeError(f"not a KV or Session response: {type(pb).__name__}")


# ======================================================================================= KV: errors


_STATUS_CODES: dict[type[KVError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    LimitExceeded: grpc.StatusCode.INVALID_ARGUMENT,
    Compacted: grpc.StatusCode.OUT_OF_RANGE,
    FutureRevision: grpc.StatusCode.OUT_OF_RANGE,
    StaleRequest: grpc.StatusCode.FAILED_PRECONDITION,
    SessionExpired: grpc.StatusCode.NOT_FOUND,
}


def status_code_for(error: KVError) -> grpc.StatusCode:
    """The gRPC status of a failed call (as in etcd: compacted / future revision -> OUT_OF_RANGE)."""
    return _STATUS_CODES.get(type(error), grpc.StatusCode.UNKNOWN)


def error_to_pb(error: KVError) -> kv_pb2.ErrorDetail:
    """A state machine error as protobuf: its code, message and constructor arguments."""
    d = kv_pb2.ErrorDetail(code=cast(kv_pb2.ErrorCode, error.code), message=error.message)
    if isinstance(error, LimitExceeded):
        d.limit, d.actual, d.maximum, d.what = error.limit, error.actual, error.maximum, error.what
    elif isinstance(error, Compacted):
        d.requested_revision, d.compact_revision = error.requested_revision, error.compact_revision
    elif isinstance(error, FutureRevision):
        d.requested_revision, d.current_revision = error.requested_revision, error.current_revision
    elif isinstance(error, StaleRequest):
        d.session_id, d.seq, d.latest_seq = error.session_id, error.seq, error.latest_seq
    elif isinstance(error, SessionExpired):
        d.session_id = error.session_id
    return d


def error_from_pb(d: kv_pb2.ErrorDetail) -> KVError:
    """Inverse of :func:`error_to_pb`; an unknown code becomes a plain :class:`KVError`."""
    code = d.code
    if code == LimitExceeded.code:
        return LimitExceeded(d.limit, d.actual, d.maximum, d.what)
    if code == Compacted.code:
        return Compacted(d.requested_revision, d.compact_revision)
    if code == FutureRevision.code:
        return FutureRevision(d.requested_revision, d.current_revision)
    if code == StaleRequest.code:
        return StaleRequest(d.session_id, d.seq, d.latest_seq)
    if code == SessionExpired.code:
        return SessionExpired(d.session_id)
    if code == InvalidArgument.code:
        return InvalidArgument(d.message)
    return KVError(d.message)


# ======================================================================================== KV: watch


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


def watch_request_to_pb(req: WatchCreate | WatchCancel) -> kv_pb2.WatchRequest:
    """Inverse of :func:`watch_request_from_pb`."""
    if isinstance(req, WatchCancel):
        return kv_pb2.WatchRequest(cancel_request=kv_pb2.WatchCancelRequest(watch_id=req.watch_id))
    return kv_pb2.WatchRequest(
        create_request=kv_pb2.WatchCreateRequest(
            key=req.key,
            range_end=req.range_end or b"",
            start_revision=req.start_revision,
            prev_kv=req.prev_kv,
            watch_id=req.watch_id,
        )
    )


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
        events=[event_to_pb(ev, prev_kv) for ev in events],
        progress_notify=progress_notify,
    )


def events_from_pb(pb: kv_pb2.WatchResponse) -> list[Event]:
    """The events of a watch response (client side); ``sub`` numbers events of one revision 0, 1, ..."""
    out: list[Event] = []
    last_rev, sub = -1, 0
    for i, e in enumerate(pb.events):
        rev = e.kv.mod_revision
        sub = sub + 1 if rev == last_rev else 0
        last_rev = rev
        out.append(event_from_pb(e, sub, f"WatchResponse.events[{i}]"))
    return out
