"""Round trips between the core's dataclasses and protobuf (node/server/codec.py), and rejection of
malformed protobuf input with InvalidArgument."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coterie.node.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    SnapshotMetadata,
)
from coterie.node.server import codec
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
    NoopRequest,
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

FAST = settings(max_examples=150, deadline=None)

U64 = st.integers(0, 2**64 - 1)
U63 = st.integers(0, 2**63 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
SMALL_BYTES = st.binary(max_size=24)

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
def messages(draw: st.DrawFn) -> Message:
    typ = draw(st.sampled_from(MessageType))
    snapshot = draw(snapshot_metas if typ is MessageType.SNAP else st.none() | snapshot_metas)
    return Message(
        typ,
        draw(U64),
        draw(U64),
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


def _wire(pb: Any) -> Any:
    """``pb`` serialized and parsed back, as the peer sees it."""
    return type(pb).FromString(pb.SerializeToString())


@FAST
@given(messages())
def test_message_round_trip(m: Message) -> None:
    pb = codec.message_to_pb(m)
    assert pb.from_id == m.frm
    assert pb.HasField("snapshot") == (m.snapshot is not None)
    assert codec.message_from_pb(_wire(pb)) == m


@FAST
@given(st.lists(messages(), max_size=4), U64, st.text(max_size=8))
def test_batch_round_trip(msgs: list[Message], sender: int, cluster_id: str) -> None:
    msgs = [dataclasses.replace(m, frm=sender) for m in msgs]
    pb = _wire(codec.batch_to_pb(cluster_id, sender, msgs))
    assert pb.cluster_id == cluster_id
    assert pb.from_id == sender
    assert codec.batch_from_pb(pb) == msgs


@FAST
@given(entries, snapshot_metas, st.builds(ConfChange, st.sampled_from(ConfChangeType), U64, SMALL_BYTES))
def test_raft_records_round_trip(e: Entry, meta: SnapshotMetadata, cc: ConfChange) -> None:
    assert codec.entry_from_pb(_wire(codec.entry_to_pb(e))) == e
    assert codec.snapshot_metadata_from_pb(_wire(codec.snapshot_metadata_to_pb(meta))) == meta
    assert codec.conf_state_from_pb(_wire(codec.conf_state_to_pb(meta.conf_state))) == meta.conf_state
    assert codec.conf_change_from_pb(_wire(codec.conf_change_to_pb(cc))) == cc


def test_message_defaults_round_trip_to_an_empty_message() -> None:
    m = Message(MessageType.APP, 0, 0)
    assert codec.message_to_pb(m).SerializeToString() == b""
    assert codec.message_from_pb(raft_pb2.RaftMessage()) == m


def test_snapshot_with_empty_conf_state_is_present() -> None:
    m = Message(MessageType.SNAP, 2, 1, snapshot=SnapshotMetadata())
    assert codec.message_from_pb(_wire(codec.message_to_pb(m))) == m


@pytest.mark.parametrize(
    ("pb", "field"),
    [
        (raft_pb2.RaftMessage(type=cast(raft_pb2.MessageType, 99)), "RaftMessage.type"),
        (raft_pb2.RaftMessage(type=cast(raft_pb2.MessageType, -1)), "RaftMessage.type"),
        (
            raft_pb2.RaftMessage(
                entries=[raft_pb2.Entry(index=1), raft_pb2.Entry(index=2, type=cast(raft_pb2.EntryType, 5))]
            ),
            "RaftMessage.entries[1].type",
        ),
        (raft_pb2.RaftMessage(type=raft_pb2.MSG_SNAP), "RaftMessage.snapshot"),
        (
            raft_pb2.RaftMessage(
                type=raft_pb2.MSG_SNAP,
                snapshot=raft_pb2.SnapshotMetadata(
                    conf_state=raft_pb2.ConfState(voters=[1, 2], learners=[2])
                ),
            ),
            "RaftMessage.snapshot.conf_state",
        ),
    ],
)
def test_malformed_message_is_invalid_argument(pb: raft_pb2.RaftMessage, field: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"^{re.escape(field)}:"):
        codec.message_from_pb(_wire(pb))


def test_malformed_raft_records() -> None:
    with pytest.raises(InvalidArgument, match=r"^Entry\.type:"):
        codec.entry_from_pb(raft_pb2.Entry(type=cast(raft_pb2.EntryType, 2)))
    with pytest.raises(InvalidArgument, match=r"^ConfChange\.type:"):
        codec.conf_change_from_pb(raft_pb2.ConfChange(type=cast(raft_pb2.ConfChangeType, 3)))
    with pytest.raises(InvalidArgument, match="ConfState"):
        codec.conf_state_from_pb(raft_pb2.ConfState(voters=[3], learners=[3]))
    batch = codec.batch_to_pb("c", 1, [Message(MessageType.HEARTBEAT, 2, 1), Message(MessageType.APP, 2, 3)])
    with pytest.raises(InvalidArgument, match=r"MessageBatch.messages\[1\].from_id"):
        codec.batch_from_pb(batch)


# ====================================================================================== KV requests

keys = st.binary(min_size=1, max_size=12)
range_ends = st.none() | st.binary(min_size=1, max_size=12)

puts = st.builds(PutRequest, keys, SMALL_BYTES, U63, st.booleans(), st.booleans(), st.booleans())
ranges = st.builds(RangeRequest, keys, range_ends, U63, U63, st.booleans(), st.booleans())
deletes = st.builds(DeleteRangeRequest, keys, range_ends, st.booleans())
ops = puts | ranges | deletes


@st.composite
def compares(draw: st.DrawFn) -> Compare:
    target = draw(st.sampled_from(CompareTarget))
    value: bytes | int = draw(SMALL_BYTES) if target is CompareTarget.VALUE else draw(I64)
    return Compare(draw(keys), target, draw(st.sampled_from(CompareResult)), value, draw(range_ends))


txns = st.builds(
    TxnRequest,
    st.lists(compares(), max_size=3).map(tuple),
    st.lists(ops, max_size=3).map(tuple),
    st.lists(ops, max_size=3).map(tuple),
)
requests: st.SearchStrategy[Request] = st.one_of(
    puts,
    ranges,
    deletes,
    txns,
    st.builds(CompactRequest, U63),
    st.just(RegisterSessionRequest()),
    st.builds(KeepAliveRequest, U63),
    st.builds(CloseSessionRequest, U63),
)
sessions = st.just((0, 0)) | st.tuples(st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1))

_SESSION_OPS = (RegisterSessionRequest, KeepAliveRequest, CloseSessionRequest)


@FAST
@given(requests, sessions, st.booleans())
def test_request_round_trip(req: Request, session: tuple[int, int], serializable: bool) -> None:
    session_id, seq = session
    pb = _wire(codec.request_to_pb(req, session_id, seq, serializable=serializable))
    assert codec.request_from_pb(pb) == req
    cmd = codec.command_from_pb(pb, timestamp=7)
    assert cmd.request == req
    assert cmd.timestamp == 7
    if isinstance(req, _SESSION_OPS):
        assert (cmd.session_id, cmd.seq) == (0, 0)
    else:
        assert (cmd.session_id, cmd.seq) == session
    if isinstance(req, RangeRequest):
        assert pb.serializable == serializable


def test_noop_request_has_no_grpc_form() -> None:
    with pytest.raises(TypeError):
        codec.request_to_pb(NoopRequest())


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
            kv_pb2.TxnRequest(
                compare=[kv_pb2.Compare(key=b"a", target=cast(kv_pb2.Compare.CompareTarget, 9), version=1)]
            ),
            r"TxnRequest.compare\[0\].target",
        ),
        (
            kv_pb2.TxnRequest(
                compare=[kv_pb2.Compare(key=b"a", result=cast(kv_pb2.Compare.CompareResult, 9), version=1)]
            ),
            r"TxnRequest.compare\[0\].result",
        ),
    ],
)
def test_malformed_request_is_invalid_argument(pb: Any, field: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"^{field}:"):
        codec.request_from_pb(_wire(pb))


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
        codec.command_from_pb(kv_pb2.PutRequest(key=b"k", header=header))


def test_empty_header_means_no_session() -> None:
    cmd = codec.command_from_pb(kv_pb2.PutRequest(key=b"k", header=kv_pb2.RequestHeader()))
    assert (cmd.session_id, cmd.seq) == (0, 0)


def test_request_from_pb_rejects_other_messages() -> None:
    with pytest.raises(TypeError):
        codec.request_from_pb(cast(Any, kv_pb2.WatchRequest()))  # deliberately the wrong type


# ===================================================================================== KV responses

kvs = st.builds(KeyValue, keys, SMALL_BYTES, U63, U63, U63, U63)
put_responses = st.builds(PutResponse, U63, st.none() | kvs)
range_responses = st.builds(RangeResponse, U63, st.lists(kvs, max_size=3).map(tuple), U63, st.booleans())
delete_responses = st.builds(DeleteRangeResponse, U63, U63, st.lists(kvs, max_size=3).map(tuple))
op_responses = put_responses | range_responses | delete_responses


@st.composite
def answered(draw: st.DrawFn) -> tuple[Request, Response]:
    """A request and a response of the type that answers it."""
    req = draw(requests)
    rev = draw(U63)
    resp: Response
    if isinstance(req, PutRequest):
        resp = draw(put_responses)
    elif isinstance(req, RangeRequest):
        resp = draw(range_responses)
    elif isinstance(req, DeleteRangeRequest):
        resp = draw(delete_responses)
    elif isinstance(req, TxnRequest):
        resp = TxnResponse(rev, draw(st.booleans()), tuple(draw(st.lists(op_responses, max_size=3))))
    elif isinstance(req, CompactRequest):
        resp = CompactResponse(rev)
    else:
        resp = SessionResponse(rev, draw(U63))
    return req, resp


@FAST
@given(answered(), st.text(max_size=8), U64, U64)
def test_response_round_trip(pair: tuple[Request, Response], cluster_id: str, member: int, term: int) -> None:
    req, resp = pair
    pb = _wire(
        codec.response_to_pb(req, resp, cluster_id=cluster_id, member_id=member, raft_term=term, ttl_ms=9)
    )
    # PutRequest -> PutResponse, SessionOpenRequest -> SessionOpenResponse, ...
    assert type(pb).__name__ == type(codec.request_to_pb(req)).__name__.replace("Request", "Response")
    assert (pb.header.cluster_id, pb.header.member_id, pb.header.revision, pb.header.raft_term) == (
        cluster_id,
        member,
        resp.revision,
        term,
    )
    assert codec.response_from_pb(pb) == resp
    if isinstance(req, RegisterSessionRequest | KeepAliveRequest):
        assert pb.ttl_ms == 9


def test_response_types_per_request() -> None:
    s = SessionResponse(3, 4)
    assert isinstance(codec.response_to_pb(RegisterSessionRequest(), s), kv_pb2.SessionOpenResponse)
    assert isinstance(codec.response_to_pb(KeepAliveRequest(4), s), kv_pb2.SessionKeepAliveResponse)
    assert isinstance(codec.response_to_pb(CloseSessionRequest(4), s), kv_pb2.SessionCloseResponse)
    assert isinstance(codec.response_to_pb(CompactRequest(1), CompactResponse(2)), kv_pb2.CompactionResponse)


def test_error_response_raises_its_error() -> None:
    err = Compacted(3, 5)
    with pytest.raises(Compacted) as info:
        codec.response_to_pb(RangeRequest(b"a"), ErrorResponse(9, err))
    assert info.value == err


def test_response_for_another_request_is_invalid_argument() -> None:
    # A session's cached response for a reused seq can be of another request's type.
    with pytest.raises(InvalidArgument, match="seq"):
        codec.response_to_pb(RangeRequest(b"a"), PutResponse(3))


def test_malformed_txn_response() -> None:
    with pytest.raises(InvalidArgument, match=r"TxnResponse.responses\[0\].response"):
        codec.response_from_pb(kv_pb2.TxnResponse(responses=[kv_pb2.ResponseOp()]))


@pytest.mark.parametrize(
    "error",
    [
        InvalidArgument("empty key"),
        LimitExceeded("max_key_bytes", 5000, 4096, "key size"),
        Compacted(3, 10),
        FutureRevision(30, 10),
        StaleRequest(7, 2, 5),
        SessionExpired(7),
        KVError("something else"),
    ],
)
def test_error_round_trip(error: KVError) -> None:
    back = codec.error_from_pb(_wire(codec.error_to_pb(error)))
    assert back == error
    assert back.message == error.message
    assert codec.status_code_for(error).name in {
        "INVALID_ARGUMENT",
        "OUT_OF_RANGE",
        "FAILED_PRECONDITION",
        "NOT_FOUND",
        "UNKNOWN",
    }


# ============================================================================================ watch

events = st.builds(Event, st.sampled_from(EventType), kvs, st.none() | kvs, st.integers(0, 5))


@FAST
@given(events)
def test_event_round_trip(ev: Event) -> None:
    assert codec.event_from_pb(_wire(codec.event_to_pb(ev)), ev.sub) == ev
    stripped = codec.event_from_pb(codec.event_to_pb(ev, prev_kv=False), ev.sub)
    assert stripped.prev_kv is None


def test_watch_response_numbers_events_of_one_revision() -> None:
    def ev(rev: int) -> Event:
        return Event(EventType.PUT, KeyValue(b"k", b"v", rev, rev, 1), None, 0)

    pb = _wire(codec.watch_response_to_pb(3, [ev(5), ev(5), ev(6), ev(7), ev(7), ev(7)], revision=7))
    assert pb.watch_id == 3
    assert pb.header.revision == 7
    assert [e.sub for e in codec.events_from_pb(pb)] == [0, 1, 0, 0, 1, 2]


watch_requests = st.builds(codec.WatchCreate, keys, range_ends, U63, st.booleans(), U63) | st.builds(
    codec.WatchCancel, U63
)


@FAST
@given(watch_requests)
def test_watch_request_round_trip(req: codec.WatchCreate | codec.WatchCancel) -> None:
    assert codec.watch_request_from_pb(_wire(codec.watch_request_to_pb(req))) == req


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
        codec.watch_request_from_pb(_wire(pb))


def test_malformed_events() -> None:
    with pytest.raises(InvalidArgument, match=r"^Event\.type:"):
        codec.event_from_pb(kv_pb2.Event(type=cast(kv_pb2.Event.EventType, 4), kv=kv_pb2.KeyValue(key=b"a")))
    with pytest.raises(InvalidArgument, match=r"^Event\.kv:"):
        codec.event_from_pb(kv_pb2.Event())
    pb = kv_pb2.WatchResponse(
        events=[kv_pb2.Event(kv=kv_pb2.KeyValue(key=b"a")), kv_pb2.Event(type=kv_pb2.Event.DELETE)]
    )
    with pytest.raises(InvalidArgument, match=r"WatchResponse.events\[1\].kv"):
        codec.events_from_pb(pb)
