"""The client's protobuf codec (coterie.client._codec) against the server's (coterie.node.server.kv_codec):
what the client encodes, the server decodes to the request the client meant, and what the server
encodes, the client decodes to the answer the state machine gave. Both sides are exercised through
serialized bytes, as on the wire; neither side has an inverse half kept only for tests."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from coterie.client import Compare as CCompare
from coterie.client import KeyValue as CKeyValue
from coterie.client import Op as COp
from coterie.client import _codec as cc
from coterie.client.types import DeleteResult, PutResult, RangeResult, TxnResult
from coterie.node.server import kv_codec as sc
from coterie.node.statemachine.types import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    KeyValue,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)

KEYS = st.binary(min_size=1, max_size=8)
POS = st.integers(min_value=0, max_value=2**40)
_TARGET = {"value": CompareTarget.VALUE, "version": CompareTarget.VERSION,
           "create": CompareTarget.CREATE_REVISION, "mod": CompareTarget.MOD_REVISION,
           "lease": CompareTarget.LEASE}
_RESULT = {"==": CompareResult.EQUAL, "!=": CompareResult.NOT_EQUAL, "<": CompareResult.LESS,
           ">": CompareResult.GREATER}


def _wire(pb: Any) -> Any:
    return type(pb).FromString(pb.SerializeToString())


@st.composite
def client_compares(draw: st.DrawFn) -> CCompare:
    target = draw(st.sampled_from(sorted(_TARGET)))
    operand: int | bytes = draw(st.binary(max_size=8)) if target == "value" else draw(POS)
    return CCompare(draw(KEYS), target, draw(st.sampled_from(sorted(_RESULT))),  # type: ignore[arg-type]
                    operand, draw(st.sampled_from([b"", b"\x00", b"zz"])))


def client_ops() -> st.SearchStrategy[COp]:
    return st.one_of(
        st.builds(COp.get, KEYS, st.sampled_from([None, b"zz"]), limit=POS, revision=POS,
                  keys_only=st.booleans()),
        st.builds(COp.put, KEYS, st.binary(max_size=16), lease=POS, prev_kv=st.booleans()),
        st.builds(COp.delete, KEYS, st.sampled_from([None, b"zz"]), prev_kv=st.booleans()),
    )


def _expected_op(op: COp) -> PutRequest | RangeRequest | DeleteRangeRequest:
    end = op.range_end or None
    if op.kind == "get":
        return RangeRequest(op.key, end, limit=op.limit, revision=op.revision, keys_only=op.keys_only)
    if op.kind == "put":
        return PutRequest(op.key, op.value, lease=op.lease, prev_kv=op.prev_kv)
    return DeleteRangeRequest(op.key, end, prev_kv=op.prev_kv)


@given(st.lists(client_compares(), max_size=4), st.lists(client_ops(), max_size=4),
       st.lists(client_ops(), max_size=4))
def test_a_client_txn_is_the_request_the_server_decodes(compares: list[CCompare], success: list[COp],
                                                        failure: list[COp]) -> None:
    got = sc.request_from_pb(_wire(cc.txn_request(compares, success, failure)))
    want = TxnRequest(
        tuple(Compare(c.key, _TARGET[c.target], _RESULT[c.result], c.operand, c.range_end or None)
              for c in compares),
        tuple(_expected_op(o) for o in success),
        tuple(_expected_op(o) for o in failure),
    )
    assert got == want


@given(KEYS, st.sampled_from([b"", b"\x00", b"zz"]), POS, POS, st.booleans(), st.booleans())
def test_a_client_range_is_the_request_the_server_decodes(key: bytes, end: bytes, limit: int, rev: int,
                                                          serializable: bool, keys_only: bool) -> None:
    pb = cc.range_request(key, end, limit=limit, revision=rev, serializable=serializable, keys_only=keys_only)
    got = sc.request_from_pb(_wire(pb))
    assert got == RangeRequest(key, end or None, limit=limit, revision=rev, keys_only=keys_only)


@st.composite
def kvs(draw: st.DrawFn) -> KeyValue:
    create = draw(st.integers(min_value=1, max_value=2**40))
    return KeyValue(draw(KEYS), draw(st.binary(max_size=16)), create,
                    create + draw(st.integers(min_value=0, max_value=100)),
                    draw(st.integers(min_value=1, max_value=100)), draw(POS))


def _ckv(kv: KeyValue) -> CKeyValue:
    return CKeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def _respond(req: Any, resp: Any) -> Any:
    return _wire(sc.response_to_pb(req, resp, cluster_id="c", member_id=1, raft_term=2))


@given(POS, st.lists(kvs(), max_size=3), st.booleans(), st.none() | kvs(), st.lists(kvs(), max_size=3),
       st.booleans())
def test_server_answers_read_back_by_the_client(rev: int, kv_list: list[KeyValue], more: bool,
                                                 prev: KeyValue | None, deleted: list[KeyValue],
                                                 succeeded: bool) -> None:
    rng = RangeResponse(rev, tuple(kv_list), len(kv_list) + int(more), more)
    assert cc.range_from_pb(_respond(RangeRequest(b"k"), rng)) == RangeResult(
        tuple(_ckv(k) for k in kv_list), more, rng.count, rev)

    put = PutResponse(rev, prev)
    assert cc.put_from_pb(_respond(PutRequest(b"k", b"v", prev_kv=True), put)) == PutResult(
        rev, _ckv(prev) if prev else None)

    dele = DeleteRangeResponse(rev, len(deleted), tuple(deleted))
    assert cc.delete_from_pb(_respond(DeleteRangeRequest(b"k", prev_kv=True), dele)) == DeleteResult(
        len(deleted), tuple(_ckv(k) for k in deleted), rev)

    txn = TxnResponse(rev, succeeded, (rng, put, dele))
    txn_req = TxnRequest((), (RangeRequest(b"k"), PutRequest(b"k", b"v", prev_kv=True),
                              DeleteRangeRequest(b"k", prev_kv=True)))
    got = cc.txn_from_pb(_respond(txn_req, txn))
    assert got == TxnResult(succeeded, (cc.range_from_pb(_respond(RangeRequest(b"k"), rng)),
                                        cc.put_from_pb(_respond(PutRequest(b"k", b"v"), put)),
                                        cc.delete_from_pb(_respond(DeleteRangeRequest(b"k"), dele))), rev)
