"""The server's wire codecs and error mapping: Raft batches (node/server/raft_codec.py, both
directions, round trips), KV requests decoded and responses encoded (node/server/kv_codec.py, the
server's half; the client has its own codec), typed errors mapped to gRPC statuses
(node/server/status.py), and rejection of malformed protobuf input with InvalidArgument."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, cast

import grpc  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coterie.node.raft import NotLeader
from coterie.node.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    SnapshotMetadata,
)
from coterie.node.server.info import MemberInfo, NodeInfo
from coterie.node.server.kv_codec import (
    WatchCancel,
    WatchCreate,
    command_from_pb,
    request_from_pb,
    response_to_pb,
    watch_request_from_pb,
    watch_response_to_pb,
)
from coterie.node.server.raft_codec import batch_from_pb, batch_to_pb
from coterie.node.server.status import error_detail, error_status
from coterie.node.statemachine.errors import (
    Compacted,
    FutureRevision,
    InvalidArgument,
    KVError,
    LimitExceeded,
    SessionExpired,
    StaleRequest,
)
from coterie.node.statemachine.types import (
    CloseSessionRequest,
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
from coterie.v1 import kv_pb2, raft_pb2
from coterie.v1.wire import ERROR_DETAIL_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY

FAST = settings(max_examples=150, deadline=None)

U64 = st.integers(0, 2**64 - 1)
U63 = st.integers(0, 2**63 - 1)
SMALL_BYTES = st.binary(max_size=24)


def _wire(pb: Any) -> Any:
    """``pb`` serialized and parsed back, as the peer sees it."""
    return type(pb).FromString(pb.SerializeToString())


# ============================================================================================ Raft

entries = st.builds(Entry, U64, U64, st.sampled_from(EntryType), SMALL_BYTES)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    voters = draw(st.lists(st.integers(1, 2**64 - 1), max_size=5, unique=True))
    learners = draw(
        st.lists(st.integers(1, 2**64 - 1).filter(lambda x: x not in voters), max_size=3, unique=True)
    )
    return ConfState(tuple(voters), tuple(learners))


snapshot_metas = st.builds(SnapshotMetadata, U64, U64, conf_states())


@st.composite
def messages(draw: st.DrawFn, frm: int = 0) -> Message:
    typ = draw(st.sampled_from(MessageType))
    snapshot = draw(snapshot_metas if typ is MessageType.SNAP else st.none() | snapshot_metas)
    return Message(
        typ,
        draw(U64),
        frm,
        draw(U64),
        draw(U64),
        draw(U64),
        tuple(draw(st.lists(entries, max_size=4))),
        draw(U64),
        draw(st.booleans()),
        draw(U64),
        draw(SMALL_BYTES),
        draw(U64),
        snapshot,
        draw(U64),
        draw(SMALL_BYTES),
        draw(st.booleans()),
        draw(st.booleans()),
    )


@FAST
@given(st.lists(messages(), max_size=4), U64, st.text(max_size=8))
def test_batch_round_trip(msgs: list[Message], sender: int, cluster_id: str) -> None:
    msgs = [dataclasses.replace(m, frm=sender) for m in msgs]
    pb = _wire(batch_to_pb(cluster_id, sender, msgs))
    assert pb.cluster_id == cluster_id
    assert pb.from_id == sender
    assert [m.from_id for m in pb.messages] == [sender] * len(msgs)
    assert [m.HasField("snapshot") for m in pb.messages] == [m.snapshot is not None for m in msgs]
    assert batch_from_pb(pb) == msgs


def test_message_defaults_round_trip_to_an_empty_message() -> None:
    m = Message(MessageType.APP, 0, 0)
    pb = batch_to_pb("", 0, [m])
    assert pb.messages[0].SerializeToString() == b""
    assert batch_from_pb(raft_pb2.MessageBatch(messages=[raft_pb2.RaftMessage()])) == [m]


def test_snapshot_with_empty_conf_state_is_present() -> None:
    m = Message(MessageType.SNAP, 2, 1, snapshot=SnapshotMetadata())
    assert batch_from_pb(_wire(batch_to_pb("c", 1, [m]))) == [m]


@pytest.mark.parametrize(
    ("pb", "field"),
    [
        (raft_pb2.RaftMessage(type=cast(Any, 99)), "type"),
        (raft_pb2.RaftMessage(type=cast(Any, -1)), "type"),
        (
            raft_pb2.RaftMessage(entries=[raft_pb2.Entry(index=1),
                                          raft_pb2.Entry(index=2, type=cast(Any, 5))]),
            "entries[1].type",
        ),
        (raft_pb2.RaftMessage(type=raft_pb2.MSG_SNAP), "snapshot"),
        (
            raft_pb2.RaftMessage(
                type=raft_pb2.MSG_SNAP,
                snapshot=raft_pb2.SnapshotMetadata(
                    conf_state=raft_pb2.ConfState(voters=[1, 2], learners=[2])
                ),
            ),
            "snapshot.conf_state",
        ),
    ],
)
def test_malformed_message_is_invalid_argument(pb: raft_pb2.RaftMessage, field: str) -> None:
    batch = raft_pb2.MessageBatch(messages=[raft_pb2.RaftMessage(), pb])
    with pytest.raises(InvalidArgument, match=rf"^{re.escape(f'MessageBatch.messages[1].{field}')}:"):
        batch_from_pb(_wire(batch))


def test_message_from_another_sender_is_invalid_argument() -> None:
    batch = batch_to_pb("c", 1, [Message(MessageType.HEARTBEAT, 2, 1), Message(MessageType.APP, 2, 3)])
    with pytest.raises(InvalidArgument, match=r"MessageBatch.messages\[1\].from_id"):
        batch_from_pb(batch)


# ====================================================================================== KV requests

_TXN = kv_pb2.TxnRequest(
    compare=[
        kv_pb2.Compare(key=b"a", target=kv_pb2.Compare.VERSION, result=kv_pb2.Compare.EQUAL, version=0),
        kv_pb2.Compare(key=b"b", range_end=b"c", target=kv_pb2.Compare.VALUE,
                       result=kv_pb2.Compare.NOT_EQUAL, value=b"x"),
        kv_pb2.Compare(key=b"d", target=kv_pb2.Compare.MOD, result=kv_pb2.Compare.LESS, mod_revision=7),
        kv_pb2.Compare(key=b"e", target=kv_pb2.Compare.CREATE, result=kv_pb2.Compare.GREATER,
                       create_revision=2),
        kv_pb2.Compare(key=b"f", target=kv_pb2.Compare.LEASE, result=kv_pb2.Compare.EQUAL, lease=5),
    ],
    success=[
        kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"a", value=b"1", prev_kv=True)),
        kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=b"a", range_end=b"z", limit=3)),
    ],
    failure=[kv_pb2.RequestOp(request_delete_range=kv_pb2.DeleteRangeRequest(key=b"q"))],
)


@pytest.mark.parametrize(
    ("pb", "expected"),
    [
        (
            kv_pb2.PutRequest(key=b"k", value=b"v", lease=3, prev_kv=True, ignore_value=True,
                              ignore_lease=True),
            PutRequest(b"k", b"v", 3, True, True, True),
        ),
        (kv_pb2.RangeRequest(key=b"k"), RangeRequest(b"k", None)),
        (
            kv_pb2.RangeRequest(key=b"a", range_end=b"b", limit=4, revision=9, serializable=True,
                                keys_only=True, count_only=True),
            RangeRequest(b"a", b"b", 4, 9, True, True),
        ),
        (kv_pb2.DeleteRangeRequest(key=b"a", range_end=b"\0", prev_kv=True),
         DeleteRangeRequest(b"a", b"\0", True)),
        (
            _TXN,
            TxnRequest(
                (
                    Compare(b"a", CompareTarget.VERSION, CompareResult.EQUAL, 0),
                    Compare(b"b", CompareTarget.VALUE, CompareResult.NOT_EQUAL, b"x", b"c"),
                    Compare(b"d", CompareTarget.MOD_REVISION, CompareResult.LESS, 7),
                    Compare(b"e", CompareTarget.CREATE_REVISION, CompareResult.GREATER, 2),
                    Compare(b"f", CompareTarget.LEASE, CompareResult.EQUAL, 5),
                ),
                (PutRequest(b"a", b"1", prev_kv=True), RangeRequest(b"a", b"z", 3)),
                (DeleteRangeRequest(b"q"),),
            ),
        ),
        (kv_pb2.CompactionRequest(revision=12), CompactRequest(12)),
        (kv_pb2.SessionOpenRequest(), RegisterSessionRequest()),
        (kv_pb2.SessionKeepAliveRequest(session_id=4), KeepAliveRequest(4)),
        (kv_pb2.SessionCloseRequest(session_id=4), CloseSessionRequest(4)),
    ],
    ids=lambda v: type(v).__name__,
)
def test_request_from_pb(pb: Any, expected: Request) -> None:
    assert request_from_pb(_wire(pb)) == expected
    cmd = command_from_pb(_wire(pb), timestamp=7)
    assert (cmd.request, cmd.timestamp, cmd.session_id, cmd.seq) == (expected, 7, 0, 0)


@pytest.mark.parametrize(
    "pb",
    [
        kv_pb2.PutRequest(key=b"k"),
        kv_pb2.RangeRequest(key=b"k"),
        kv_pb2.DeleteRangeRequest(key=b"k"),
        kv_pb2.TxnRequest(),
        kv_pb2.CompactionRequest(revision=1),
    ],
    ids=lambda v: type(v).__name__,
)
def test_command_carries_the_session_of_the_header(pb: Any) -> None:
    pb.header.CopyFrom(kv_pb2.RequestHeader(session_id=2**63 - 1, seq=5))
    cmd = command_from_pb(_wire(pb))
    assert (cmd.session_id, cmd.seq) == (2**63 - 1, 5)


@pytest.mark.parametrize(
    ("pb", "field"),
    [
        (kv_pb2.RangeRequest(key=b"a", limit=-1), "RangeRequest.limit"),
        (kv_pb2.RangeRequest(key=b"a", revision=-5), "RangeRequest.revision"),
        (kv_pb2.PutRequest(key=b"a", lease=-1), "PutRequest.lease"),
        (kv_pb2.CompactionRequest(revision=-1), "CompactionRequest.revision"),
        (kv_pb2.SessionKeepAliveRequest(session_id=2**63), "SessionKeepAliveRequest.session_id"),
        (kv_pb2.TxnRequest(success=[kv_pb2.RequestOp()]), r"TxnRequest.success\[0\].request"),
        (
            kv_pb2.TxnRequest(
                failure=[
                    kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"a")),
                    kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=b"a", revision=-1)),
                ]
            ),
            r"TxnRequest.failure\[1\].request_range.revision",
        ),
        (
            kv_pb2.TxnRequest(
                success=[
                    kv_pb2.RequestOp(
                        request_put=kv_pb2.PutRequest(
                            key=b"a", header=kv_pb2.RequestHeader(session_id=1, seq=1)
                        )
                    )
                ]
            ),
            r"TxnRequest.success\[0\].request_put.header",
        ),
        (
            kv_pb2.TxnRequest(compare=[kv_pb2.Compare(key=b"a", target=kv_pb2.Compare.VERSION)]),
            r"TxnRequest.compare\[0\].target_union",
        ),
        (
            kv_pb2.TxnRequest(
                compare=[kv_pb2.Compare(key=b"a", target=kv_pb2.Compare.VALUE, mod_revision=3)]
            ),
            r"TxnRequest.compare\[0\].target_union",
        ),
        (
            kv_pb2.TxnRequest(compare=[kv_pb2.Compare(key=b"a", target=cast(Any, 9), version=1)]),
            r"TxnRequest.compare\[0\].target",
        ),
        (
            kv_pb2.TxnRequest(compare=[kv_pb2.Compare(key=b"a", result=cast(Any, 9), version=1)]),
            r"TxnRequest.compare\[0\].result",
        ),
    ],
)
def test_malformed_request_is_invalid_argument(pb: Any, field: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"^{field}:"):
        request_from_pb(_wire(pb))


@pytest.mark.parametrize(
    ("header", "field"),
    [
        (kv_pb2.RequestHeader(session_id=5), "PutRequest.header.seq"),
        (kv_pb2.RequestHeader(seq=5), "PutRequest.header.session_id"),
        (kv_pb2.RequestHeader(session_id=2**63, seq=1), "PutRequest.header.session_id"),
    ],
)
def test_malformed_header_is_invalid_argument(header: kv_pb2.RequestHeader, field: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"^{field}:"):
        command_from_pb(kv_pb2.PutRequest(key=b"k", header=header))


def test_empty_header_means_no_session() -> None:
    cmd = command_from_pb(kv_pb2.PutRequest(key=b"k", header=kv_pb2.RequestHeader()))
    assert (cmd.session_id, cmd.seq) == (0, 0)


def test_request_from_pb_rejects_other_messages() -> None:
    with pytest.raises(TypeError):
        request_from_pb(cast(Any, kv_pb2.WatchRequest()))


# ===================================================================================== KV responses

keys = st.binary(min_size=1, max_size=12)
kvs = st.builds(KeyValue, keys, SMALL_BYTES, U63, U63, U63, U63)
put_responses = st.builds(PutResponse, U63, st.none() | kvs)
range_responses = st.builds(RangeResponse, U63, st.lists(kvs, max_size=3).map(tuple), U63, st.booleans())
delete_responses = st.builds(DeleteRangeResponse, U63, U63, st.lists(kvs, max_size=3).map(tuple))
op_responses = put_responses | range_responses | delete_responses

_PB_RESPONSE = {
    PutRequest: kv_pb2.PutResponse,
    RangeRequest: kv_pb2.RangeResponse,
    DeleteRangeRequest: kv_pb2.DeleteRangeResponse,
    TxnRequest: kv_pb2.TxnResponse,
    CompactRequest: kv_pb2.CompactionResponse,
    RegisterSessionRequest: kv_pb2.SessionOpenResponse,
    KeepAliveRequest: kv_pb2.SessionKeepAliveResponse,
    CloseSessionRequest: kv_pb2.SessionCloseResponse,
}


@st.composite
def answered(draw: st.DrawFn) -> tuple[Request, Response]:
    """A request and a response of the type that answers it."""
    rev = draw(U63)
    req: Request
    resp: Response
    kind = draw(st.sampled_from(sorted(_PB_RESPONSE, key=lambda t: t.__name__)))
    if kind is PutRequest:
        req, resp = PutRequest(b"k"), draw(put_responses)
    elif kind is RangeRequest:
        req, resp = RangeRequest(b"k"), draw(range_responses)
    elif kind is DeleteRangeRequest:
        req, resp = DeleteRangeRequest(b"k"), draw(delete_responses)
    elif kind is TxnRequest:
        req = TxnRequest()
        resp = TxnResponse(rev, draw(st.booleans()), tuple(draw(st.lists(op_responses, max_size=3))))
    elif kind is CompactRequest:
        req, resp = CompactRequest(1), CompactResponse(rev)
    elif kind is RegisterSessionRequest:
        req, resp = RegisterSessionRequest(), SessionResponse(rev, draw(U63))
    elif kind is KeepAliveRequest:
        req, resp = KeepAliveRequest(1), SessionResponse(rev, draw(U63))
    else:
        req, resp = CloseSessionRequest(1), SessionResponse(rev, draw(U63))
    return req, resp


def _kv(pb: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(pb.key, pb.value, pb.create_revision, pb.mod_revision, pb.version, pb.lease)


def _check_body(resp: Response, pb: Any) -> None:
    """``pb`` carries what ``resp`` says (the header aside)."""
    if isinstance(resp, PutResponse):
        assert (_kv(pb.prev_kv) if pb.HasField("prev_kv") else None) == resp.prev_kv
    elif isinstance(resp, RangeResponse):
        assert (tuple(_kv(k) for k in pb.kvs), pb.count, pb.more) == (resp.kvs, resp.count, resp.more)
    elif isinstance(resp, DeleteRangeResponse):
        assert (pb.deleted, tuple(_kv(k) for k in pb.prev_kvs)) == (resp.deleted, resp.prev_kvs)
    elif isinstance(resp, TxnResponse):
        assert pb.succeeded == resp.succeeded
        assert len(pb.responses) == len(resp.responses)
        for r, op in zip(resp.responses, pb.responses, strict=True):
            inner = getattr(op, op.WhichOneof("response"))
            assert type(inner).__name__ == type(r).__name__
            assert inner.header.revision == r.revision
            _check_body(r, inner)
    elif isinstance(resp, SessionResponse):
        assert pb.session_id == resp.session_id


@FAST
@given(answered(), st.text(max_size=8), U64, U64)
def test_response_to_pb(pair: tuple[Request, Response], cluster_id: str, member: int, term: int) -> None:
    req, resp = pair
    pb = _wire(response_to_pb(req, resp, cluster_id=cluster_id, member_id=member, raft_term=term, ttl_ms=9))
    kind: Any = type(pb)
    assert kind is _PB_RESPONSE[type(req)]
    assert (pb.header.cluster_id, pb.header.member_id, pb.header.revision, pb.header.raft_term) == (
        cluster_id,
        member,
        resp.revision,
        term,
    )
    _check_body(resp, pb)
    if isinstance(req, RegisterSessionRequest | KeepAliveRequest):
        assert pb.ttl_ms == 9


def test_error_response_raises_its_error() -> None:
    err = Compacted(3, 5)
    with pytest.raises(Compacted) as info:
        response_to_pb(RangeRequest(b"a"), ErrorResponse(9, err))
    assert info.value == err


def test_response_for_another_request_is_invalid_argument() -> None:
    # A session's cached response for a reused seq can be of another request's type.
    with pytest.raises(InvalidArgument, match="seq"):
        response_to_pb(RangeRequest(b"a"), PutResponse(3))


# ============================================================================================ watch


@FAST
@given(st.lists(st.builds(Event, st.sampled_from(EventType), kvs, st.none() | kvs, st.just(0)), max_size=4),
       st.booleans())
def test_watch_response_to_pb(events: list[Event], prev_kv: bool) -> None:
    pb = _wire(watch_response_to_pb(3, events, revision=7, prev_kv=prev_kv, member_id=2))
    assert (pb.watch_id, pb.header.revision, pb.header.member_id) == (3, 7, 2)
    assert [(int(e.type), _kv(e.kv)) for e in pb.events] == [(int(ev.type), ev.kv) for ev in events]
    want_prev = [ev.prev_kv if prev_kv else None for ev in events]
    assert [_kv(e.prev_kv) if e.HasField("prev_kv") else None for e in pb.events] == want_prev


@pytest.mark.parametrize(
    ("pb", "expected"),
    [
        (kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(key=b"a")), WatchCreate(b"a")),
        (
            kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(
                key=b"a", range_end=b"b", start_revision=4, prev_kv=True, watch_id=9)),
            WatchCreate(b"a", b"b", 4, True, 9),
        ),
        (kv_pb2.WatchRequest(cancel_request=kv_pb2.WatchCancelRequest(watch_id=9)), WatchCancel(9)),
    ],
)
def test_watch_request_from_pb(pb: kv_pb2.WatchRequest, expected: WatchCreate | WatchCancel) -> None:
    assert watch_request_from_pb(_wire(pb)) == expected


@pytest.mark.parametrize(
    ("pb", "field"),
    [
        (kv_pb2.WatchRequest(), "WatchRequest.request_union"),
        (
            kv_pb2.WatchRequest(create_request=kv_pb2.WatchCreateRequest(key=b"a", start_revision=-1)),
            "WatchCreateRequest.start_revision",
        ),
        (
            kv_pb2.WatchRequest(cancel_request=kv_pb2.WatchCancelRequest(watch_id=-1)),
            "WatchCancelRequest.watch_id",
        ),
    ],
)
def test_malformed_watch_request(pb: kv_pb2.WatchRequest, field: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"^{field}:"):
        watch_request_from_pb(_wire(pb))


# =========================================================================== errors -> gRPC status

SC = grpc.StatusCode
INFO = NodeInfo(1, "n1", "c", members={2: MemberInfo(2, "n2", client_addr="h2:1")})


@pytest.mark.parametrize(
    ("error", "code", "fields"),
    [
        (InvalidArgument("empty key"), SC.INVALID_ARGUMENT, {}),
        (
            LimitExceeded("max_key_bytes", 5000, 4096, "key size"),
            SC.INVALID_ARGUMENT,
            {"limit": "max_key_bytes", "actual": 5000, "maximum": 4096, "what": "key size"},
        ),
        (Compacted(3, 10), SC.OUT_OF_RANGE, {"requested_revision": 3, "compact_revision": 10}),
        (FutureRevision(30, 10), SC.OUT_OF_RANGE, {"requested_revision": 30, "current_revision": 10}),
        (StaleRequest(7, 2, 5), SC.FAILED_PRECONDITION, {"session_id": 7, "seq": 2, "latest_seq": 5}),
        (SessionExpired(7), SC.NOT_FOUND, {"session_id": 7}),
        (KVError("something else"), SC.UNKNOWN, {}),
    ],
)
def test_kv_error_status_carries_its_detail(error: KVError, code: Any, fields: dict[str, Any]) -> None:
    got, message, md = error_status(error, INFO)
    assert got == code
    assert message.startswith(error.message)
    assert [k for k, _ in md] == [ERROR_DETAIL_KEY]
    detail = kv_pb2.ErrorDetail.FromString(dict(md)[ERROR_DETAIL_KEY])
    assert detail == _wire(error_detail(error))
    assert (detail.code, detail.message) == (error.code, error.message)
    assert {f: getattr(detail, f) for f in fields} == fields


def test_size_limit_message_names_the_limit_in_human_units() -> None:
    _code, message, _md = error_status(LimitExceeded("max_value_bytes", 2 << 20, 1 << 20, "value"), INFO)
    assert message.endswith("(1 MiB)")


def test_not_leader_status_names_the_leader() -> None:
    code, _msg, md = error_status(NotLeader(2), INFO)
    assert code == SC.UNAVAILABLE
    assert dict(md) == {LEADER_ID_KEY: "2", LEADER_ADDR_KEY: "h2:1"}
    code, _msg, md = error_status(NotLeader(0), INFO, leader=3, not_leader=SC.FAILED_PRECONDITION)
    assert code == SC.FAILED_PRECONDITION
    assert dict(md) == {LEADER_ID_KEY: "3"}


def test_unexpected_error_is_internal() -> None:
    code, msg, md = error_status(ZeroDivisionError("x"), INFO)
    assert (code, md) == (SC.INTERNAL, ())
    assert "ZeroDivisionError" in msg


# ---- A server error status, read back by the client's error mapping.
from coterie.client import _errors as client_core  # noqa: E402
from coterie.client import errors as client_errors  # noqa: E402


class _FakeRpcError(Exception):
    def __init__(self, code: Any, details: str, md: Any) -> None:
        self._c, self._d, self._md = code, details, md

    def code(self) -> Any:
        return self._c

    def details(self) -> str:
        return self._d

    def trailing_metadata(self) -> Any:
        return self._md


@pytest.mark.parametrize(
    ("error", "client_type"),
    [
        (InvalidArgument("empty key"), client_errors.InvalidArgument),
        (LimitExceeded("max_key_bytes", 5000, 4096, "key size"), client_errors.InvalidArgument),
        (Compacted(3, 10), client_errors.Compacted),
        (SessionExpired(7), client_errors.SessionExpired),
        (StaleRequest(7, 2, 5), client_errors.FailedPrecondition),
        (NotLeader(2), client_errors.NotLeader),
    ],
)
def test_client_reads_the_server_status(error: Exception, client_type: type) -> None:
    code, details, md = error_status(error, INFO)
    got = client_core.map_rpc_error(_FakeRpcError(code, details, md), endpoint="e", write=True,
                                    idempotent=True)
    assert type(got) is client_type
    if isinstance(error, Compacted):
        assert isinstance(got, client_errors.Compacted)
        assert (got.compact_revision, got.requested_revision) == (10, 3)
    if isinstance(error, NotLeader):
        assert isinstance(got, client_errors.NotLeader)
        assert (got.leader_id, got.leader_addr) == (2, "h2:1")
