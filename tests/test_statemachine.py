"""Tests of the replicated KV state machine: etcd v3 semantics, MVCC history, compaction, watch events,
exactly-once sessions, limits, the command codec, snapshots, and a model-based comparison against a
reference model that keeps a full dict per revision."""

from __future__ import annotations

import ast
import pathlib
import random
from dataclasses import replace
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coterie.node.statemachine import (
    COMMAND_VERSION,
    CloseSessionRequest,
    Command,
    Compacted,
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
    FutureRevision,
    InvalidArgument,
    KeepAliveRequest,
    KeyValue,
    KVError,
    KVStore,
    LimitExceeded,
    Limits,
    NoopRequest,
    NoopResponse,
    Op,
    OpType,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RegisterSessionRequest,
    Request,
    Response,
    SessionExpired,
    SessionResponse,
    StaleRequest,
    StateMachine,
    TxnRequest,
    TxnResponse,
    decode_command,
    decode_response,
    encode_command,
    encode_response,
    in_range,
    prefix_end,
)
from coterie.node.statemachine.errors import error_from_wire, error_to_wire

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALL = (b"\0", b"\0")  # key, range_end selecting every key


def kv_of(store: KVStore, key: bytes, revision: int = 0) -> KeyValue:
    kv = store.get(key, revision)
    assert kv is not None
    return kv


def keys(resp: RangeResponse) -> list[bytes]:
    return [kv.key for kv in resp.kvs]


# ------------------------------------------------------------------------------------------ purity


FORBIDDEN = {"asyncio", "socket", "time", "datetime", "threading", "random", "os", "pickle", "uuid", "select"}


def test_statemachine_is_pure() -> None:
    """No clock, randomness, I/O or pickle anywhere in node/statemachine."""
    paths = list((ROOT / "node/statemachine").rglob("*.py"))
    assert paths
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module.split(".")[0]]
            for mod in mods:
                assert mod not in FORBIDDEN, f"{path}: imports {mod}"


# ---------------------------------------------------------------------------- revisions and versions


def test_empty_store_is_at_revision_1() -> None:
    s = KVStore()
    assert s.revision == 1 and s.compact_revision == 0
    assert s.range(*ALL) == RangeResponse(1, (), 0, False)


def test_put_same_key_twice_keeps_create_revision() -> None:
    s = KVStore()
    assert s.put(b"k", b"v1") == PutResponse(2)
    assert kv_of(s, b"k") == KeyValue(b"k", b"v1", 2, 2, 1, 0)
    r = s.put(b"k", b"v2", prev_kv=True)
    assert r == PutResponse(3, KeyValue(b"k", b"v1", 2, 2, 1, 0))
    assert kv_of(s, b"k") == KeyValue(b"k", b"v2", 2, 3, 2, 0)
    assert s.put(b"k", b"v2").revision == 4  # same value: still a new revision
    assert kv_of(s, b"k").version == 3


def test_delete_then_put_starts_a_new_generation() -> None:
    s = KVStore()
    s.put(b"k", b"a")
    s.put(b"k", b"b")
    assert s.delete_range(b"k", prev_kv=True) == DeleteRangeResponse(
        4, 1, (KeyValue(b"k", b"b", 2, 3, 2, 0),)
    )
    assert s.get(b"k") is None
    s.put(b"k", b"c")
    assert kv_of(s, b"k") == KeyValue(b"k", b"c", 5, 5, 1, 0)


def test_delete_of_nothing_keeps_the_revision() -> None:
    s = KVStore()
    s.put(b"a", b"1")
    assert s.delete_range(b"zz") == DeleteRangeResponse(2, 0, ())
    assert s.delete_range(b"b", b"c") == DeleteRangeResponse(2, 0, ())
    assert s.revision == 2


def test_delete_range_counts_and_returns_prev_kvs_sorted() -> None:
    s = KVStore()
    for k in (b"c", b"a", b"b", b"d"):
        s.put(k, k.upper())
    r = s.delete_range(b"a", b"c", prev_kv=True)
    assert r.deleted == 2 and [kv.key for kv in r.prev_kvs] == [b"a", b"b"] and r.revision == 6
    assert s.delete_range(b"a", b"\0").deleted == 2  # c, d
    assert s.delete_range(b"a", b"\0", prev_kv=False).deleted == 0


def test_lease_is_stored_and_ignore_flags() -> None:
    s = KVStore()
    s.put(b"k", b"v", lease=7)
    assert kv_of(s, b"k").lease == 7
    s.put(b"k", b"w")
    assert kv_of(s, b"k").lease == 0
    s.put(b"k", b"x", lease=9)
    s.put(b"k", ignore_value=True, lease=3)
    assert kv_of(s, b"k") == KeyValue(b"k", b"x", 2, 5, 4, 3)
    s.put(b"k", b"y", ignore_lease=True)
    assert kv_of(s, b"k") == KeyValue(b"k", b"y", 2, 6, 5, 3)
    with pytest.raises(InvalidArgument, match="key not found"):
        s.put(b"missing", ignore_value=True)
    with pytest.raises(InvalidArgument, match="ignore_value"):
        s.put(b"k", b"v", ignore_value=True)
    with pytest.raises(InvalidArgument, match="ignore_lease"):
        s.put(b"k", b"v", lease=1, ignore_lease=True)
    assert s.revision == 6


# -------------------------------------------------------------------------------------------- range


def _abc_store() -> KVStore:
    s = KVStore()
    for k in (b"a", b"ab", b"abc", b"abd", b"b", b"b\xff", b"c", b"\xff", b"\xff\xff"):
        s.put(k, b"v-" + k)
    return s


def test_prefix_end() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"") == b"\0"


def test_range_conventions() -> None:
    s = _abc_store()
    assert keys(s.range(b"ab")) == [b"ab"]
    assert keys(s.range(b"ab", b"")) == [b"ab"]  # protobuf default: single key
    assert keys(s.range(b"nope")) == []
    assert keys(s.range(b"ab", prefix_end(b"ab"))) == [b"ab", b"abc", b"abd"]
    assert keys(s.range(b"b", prefix_end(b"b"))) == [b"b", b"b\xff"]
    assert keys(s.range(b"\xff", prefix_end(b"\xff"))) == [b"\xff", b"\xff\xff"]
    assert keys(s.range(b"abd", b"\0")) == [b"abd", b"b", b"b\xff", b"c", b"\xff", b"\xff\xff"]
    assert len(s.range(*ALL).kvs) == 9
    assert keys(s.range(b"ab", b"b")) == [b"ab", b"abc", b"abd"]  # half-open
    assert keys(s.range(b"c", b"b")) == []  # range_end <= key: empty
    assert keys(s.range(b"c", b"c")) == []


def test_range_limit_count_more_and_projections() -> None:
    s = _abc_store()
    r = s.range(b"a", b"c", limit=2)
    assert keys(r) == [b"a", b"ab"] and r.count == 6 and r.more
    r = s.range(b"a", b"c", limit=6)
    assert len(r.kvs) == 6 and r.count == 6 and not r.more
    r = s.range(b"a", b"c", count_only=True)
    assert r.kvs == () and r.count == 6 and not r.more
    r = s.range(b"a", b"c", keys_only=True, limit=1)
    assert r.kvs == (KeyValue(b"a", b"", 2, 2, 1, 0),) and r.more
    assert s.range(b"a", b"c").revision == s.revision


def test_range_errors() -> None:
    s = _abc_store()
    with pytest.raises(InvalidArgument, match="range key is empty"):
        s.range(b"")
    with pytest.raises(InvalidArgument, match="limit"):
        s.range(b"a", limit=-1)
    with pytest.raises(InvalidArgument, match="revision"):
        s.range(b"a", revision=-1)
    with pytest.raises(FutureRevision) as e:
        s.range(b"a", revision=s.revision + 1)
    assert e.value.requested_revision == 11 and e.value.current_revision == 10
    assert "11" in str(e.value) and "10" in str(e.value)


def test_historical_reads() -> None:
    s = KVStore()
    s.put(b"a", b"1")  # 2
    s.put(b"b", b"1")  # 3
    s.put(b"a", b"2")  # 4
    s.delete_range(b"b")  # 5
    s.put(b"b", b"3")  # 6
    assert s.range(*ALL, revision=1).kvs == ()
    assert [(kv.key, kv.value) for kv in s.range(*ALL, revision=3).kvs] == [(b"a", b"1"), (b"b", b"1")]
    assert [(kv.key, kv.value) for kv in s.range(*ALL, revision=4).kvs] == [(b"a", b"2"), (b"b", b"1")]
    assert keys(s.range(*ALL, revision=5)) == [b"a"]
    assert kv_of(s, b"b", 6) == KeyValue(b"b", b"3", 6, 6, 1, 0)
    assert kv_of(s, b"b", 3) == KeyValue(b"b", b"1", 3, 3, 1, 0)
    r = s.range(*ALL, revision=3)
    assert r.revision == 6  # the header is the current revision, like etcd


# ------------------------------------------------------------------------------------------ compaction


def test_compaction_drops_history_below_and_keeps_reads_at_and_above() -> None:
    s = KVStore()
    s.put(b"a", b"1")  # 2
    s.put(b"b", b"1")  # 3
    s.put(b"a", b"2")  # 4
    s.delete_range(b"b")  # 5
    s.put(b"c", b"1")  # 6
    before = {r: s.range(*ALL, revision=r) for r in range(4, 7)}
    assert s.compact(4) == CompactResponse(6)
    assert s.compact_revision == 4 and s.revision == 6
    for r in range(4, 7):
        assert s.range(*ALL, revision=r) == before[r]
    with pytest.raises(Compacted) as e:
        s.range(b"a", revision=3)
    assert (e.value.requested_revision, e.value.compact_revision, e.value.oldest_revision) == (3, 4, 4)
    assert "3" in str(e.value) and "4" in str(e.value)
    s.check_invariants()
    s.compact(6)
    assert keys(s.range(*ALL, revision=6)) == [b"a", b"c"]
    assert s.dump()[2] == [[b"a", b"2", 2, 4, 2, 0]]  # b's history is gone; a keeps one old version
    s.check_invariants()


def test_compaction_errors() -> None:
    s = KVStore()
    s.put(b"a", b"1")
    s.put(b"a", b"2")
    with pytest.raises(FutureRevision):
        s.compact(4)
    with pytest.raises(InvalidArgument):
        s.compact(0)
    s.compact(2)
    with pytest.raises(Compacted, match="compact revision 2"):
        s.compact(2)
    with pytest.raises(Compacted):
        s.compact(1)
    s.compact(3)  # compacting at the current revision is allowed


def test_compaction_keeps_a_tombstone_at_the_compaction_revision() -> None:
    s = KVStore()
    s.put(b"a", b"1")  # 2
    s.delete_range(b"a")  # 3
    s.compact(3)
    assert s.events_since(3, b"a") == [
        Event(EventType.DELETE, KeyValue(b"a", b"", 0, 3, 0, 0), KeyValue(b"a", b"1", 2, 2, 1, 0), 0)
    ]
    assert s.get(b"a", 3) is None
    s.put(b"b", b"x")
    s.compact(4)
    assert s.dump()[2] == [] and len(s._index) == 1  # a fully gone
    s.check_invariants()


# -------------------------------------------------------------------------------------------- watch


def test_events_since_put_delete_with_prev_kv() -> None:
    s = KVStore()
    s.put(b"k", b"1")  # 2
    s.put(b"other", b"x")  # 3
    s.put(b"k", b"2", lease=5)  # 4
    s.delete_range(b"k")  # 5
    evs = s.events_since(1, b"k")
    v1 = KeyValue(b"k", b"1", 2, 2, 1, 0)
    v2 = KeyValue(b"k", b"2", 2, 4, 2, 5)
    assert evs == [
        Event(EventType.PUT, v1, None, 0),
        Event(EventType.PUT, v2, v1, 0),
        Event(EventType.DELETE, KeyValue(b"k", b"", 0, 5, 0, 0), v2, 0),
    ]
    assert [e.revision for e in evs] == [2, 4, 5]
    assert s.events_since(4, b"k") == evs[1:]
    assert s.events_since(6, b"k") == []  # the future: nothing yet, no error
    assert s.events_since(1000, b"k") == []
    assert [e.kv.key for e in s.events_since(1, *ALL)] == [b"k", b"other", b"k", b"k"]
    assert [e.kv.key for e in s.events_since(1, b"o", prefix_end(b"o"))] == [b"other"]
    with pytest.raises(InvalidArgument):
        s.events_since(0, b"k")
    with pytest.raises(InvalidArgument):
        s.events_since(1, b"")


def test_events_for_multi_op_txn_share_revision_in_op_order() -> None:
    s = KVStore()
    s.put(b"x", b"0")
    s.put(b"y", b"0")
    r = s.txn(
        [],
        [
            PutRequest(b"z", b"1"),
            DeleteRangeRequest(b"x", b"y\0"),  # deletes x and y (sorted), one event each
            PutRequest(b"a", b"1"),
        ],
    )
    assert r.revision == 4
    evs = s.events_since(4, *ALL)
    assert [(e.type, e.kv.key, e.revision, e.sub) for e in evs] == [
        (EventType.PUT, b"z", 4, 0),
        (EventType.DELETE, b"x", 4, 1),
        (EventType.DELETE, b"y", 4, 2),
        (EventType.PUT, b"a", 4, 3),
    ]
    assert evs[1].prev_kv == KeyValue(b"x", b"0", 2, 2, 1, 0)


def test_watch_compaction_rule() -> None:
    """events_since fails iff start < compact_revision; events at compact_revision are all kept."""
    s = KVStore()
    s.put(b"a", b"1")  # 2
    s.txn([], [PutRequest(b"a", b"2"), PutRequest(b"b", b"1")])  # 3
    s.put(b"a", b"3")  # 4
    full = s.events_since(1, *ALL)
    s.compact(3)
    with pytest.raises(Compacted) as e:
        s.events_since(2, *ALL)
    assert e.value.compact_revision == 3 and e.value.oldest_revision == 3
    assert s.events_since(3, *ALL) == [ev for ev in full if ev.revision >= 3]
    assert len(s.events_since(3, *ALL)) == 3


# ---------------------------------------------------------------------------------------------- txn


def test_txn_compare_targets_and_branches() -> None:
    s = KVStore()
    s.put(b"k", b"m", lease=3)  # 2
    s.put(b"k", b"m")  # 3 (lease back to 0)
    s.put(b"k", b"m", lease=4)  # 4
    T, R = CompareTarget, CompareResult  # noqa: N806
    cases = [
        (Compare(b"k", T.VALUE, R.EQUAL, b"m"), True),
        (Compare(b"k", T.VALUE, R.GREATER, b"l"), True),
        (Compare(b"k", T.VALUE, R.LESS, b"l"), False),
        (Compare(b"k", T.VALUE, R.NOT_EQUAL, b"m"), False),
        (Compare(b"k", T.VERSION, R.EQUAL, 3), True),
        (Compare(b"k", T.VERSION, R.GREATER, 3), False),
        (Compare(b"k", T.CREATE_REVISION, R.EQUAL, 2), True),
        (Compare(b"k", T.MOD_REVISION, R.LESS, 5), True),
        (Compare(b"k", T.MOD_REVISION, R.NOT_EQUAL, 4), False),
        (Compare(b"k", T.LEASE, R.EQUAL, 4), True),
        (Compare.exists(b"k"), True),
        (Compare.missing(b"k"), False),
        (Compare.exists(b"nope"), False),
        (Compare.missing(b"nope"), True),
        (Compare(b"nope", T.VERSION, R.EQUAL, 0), True),
        (Compare(b"nope", T.MOD_REVISION, R.EQUAL, 0), True),
        (Compare(b"nope", T.VALUE, R.NOT_EQUAL, b"x"), False),  # VALUE on a missing key is always false
        (Compare(b"nope", T.VALUE, R.EQUAL, b""), False),
    ]
    for cmp, expected in cases:
        r = s.txn([cmp], [RangeRequest(b"k")], [])
        assert r.succeeded is expected, cmp
        assert len(r.responses) == (1 if expected else 0)
    assert s.revision == 4  # read-only txns never change the revision


def test_txn_range_compare_needs_every_key() -> None:
    s = KVStore()
    s.put(b"p/1", b"a")
    s.put(b"p/2", b"b")
    T, R = CompareTarget, CompareResult  # noqa: N806
    assert s.txn([Compare(b"p/", T.VERSION, R.EQUAL, 1, prefix_end(b"p/"))]).succeeded
    assert not s.txn([Compare(b"p/", T.VALUE, R.EQUAL, b"a", prefix_end(b"p/"))]).succeeded
    assert s.txn([Compare(b"q/", T.CREATE_REVISION, R.EQUAL, 0, prefix_end(b"q/"))]).succeeded


def test_txn_is_one_revision_and_ranges_see_own_writes() -> None:
    s = KVStore()
    s.put(b"counter", b"1")  # 2
    r = s.txn(
        [Compare(b"counter", CompareTarget.VALUE, CompareResult.EQUAL, b"1")],
        [
            RangeRequest(b"counter"),
            PutRequest(b"counter", b"2", prev_kv=True),
            RangeRequest(b"counter"),
            PutRequest(b"log/1", b"x"),
            RangeRequest(b"counter", revision=2),
            DeleteRangeRequest(b"nothing"),
        ],
        [PutRequest(b"never", b"x")],
    )
    assert r.succeeded and r.revision == 3 and s.revision == 3
    assert [resp.revision for resp in r.responses] == [3] * 6
    r0, r1, r2, _, r4, r5 = r.responses
    assert isinstance(r0, RangeResponse) and r0.kvs[0].value == b"1"
    assert isinstance(r1, PutResponse) and r1.prev_kv is not None and r1.prev_kv.value == b"1"
    assert isinstance(r2, RangeResponse) and r2.kvs[0] == KeyValue(b"counter", b"2", 2, 3, 2, 0)
    assert isinstance(r4, RangeResponse) and r4.kvs[0].value == b"1"
    assert r5 == DeleteRangeResponse(3, 0, ())
    assert kv_of(s, b"log/1").create_revision == 3 and s.get(b"never") is None
    # failure branch
    r = s.txn([Compare.missing(b"counter")], [PutRequest(b"never", b"x")], [PutRequest(b"failed", b"y")])
    assert not r.succeeded and r.revision == 4 and s.get(b"failed") is not None and s.get(b"never") is None


def _snapshot_state(s: KVStore) -> Any:
    return (s.dump(), s.revision, s.compact_revision)


@pytest.mark.parametrize(
    ("ops", "error", "match"),
    [
        (
            [PutRequest(b"a", b"1"), PutRequest(b"b", b"x" * (1024 * 1024 + 1))],
            LimitExceeded,
            "max_value_bytes",
        ),
        ([PutRequest(b"a", b"1"), PutRequest(b"")], InvalidArgument, "empty"),
        ([PutRequest(b"a", b"1"), PutRequest(b"a", b"2")], InvalidArgument, "duplicate key"),
        ([DeleteRangeRequest(b"a", b"c"), PutRequest(b"b", b"2")], InvalidArgument, "duplicate key"),
        ([PutRequest(b"b", b"2"), DeleteRangeRequest(b"a", b"\0")], InvalidArgument, "duplicate key"),
        ([PutRequest(b"a", b"1"), PutRequest(b"missing", ignore_value=True)], InvalidArgument, "not found"),
        ([PutRequest(b"a", b"1"), RangeRequest(b"a", revision=99)], FutureRevision, "99"),
        ([PutRequest(b"a", b"1"), RangeRequest(b"a", revision=1)], Compacted, "compacted"),
        ([PutRequest(b"a", b"1"), RangeRequest(b"", b"\0")], InvalidArgument, "empty"),
        ([PutRequest(b"k%d" % i) for i in range(129)], LimitExceeded, "max_txn_ops"),
    ],
)
def test_invalid_txn_changes_nothing(ops: list[Op], error: type[KVError], match: str) -> None:
    s = KVStore()
    s.put(b"x", b"1")
    s.put(b"x", b"2")
    s.compact(2)
    before = _snapshot_state(s)
    with pytest.raises(error, match=match):
        s.txn([Compare.exists(b"x")], ops, [])
    assert _snapshot_state(s) == before
    # the failure branch is checked statically too, even when it would not run
    if error is not FutureRevision and error is not Compacted and "not found" not in match:
        with pytest.raises(error, match=match):
            s.txn([Compare.exists(b"x")], [], ops)
    assert _snapshot_state(s) == before


def test_txn_overlapping_deletes_are_allowed() -> None:
    s = _abc_store()
    r = s.txn([], [DeleteRangeRequest(b"a", b"b"), DeleteRangeRequest(b"ab", b"c", prev_kv=True)])
    d0, d1 = r.responses
    assert isinstance(d0, DeleteRangeResponse) and isinstance(d1, DeleteRangeResponse)
    assert d0.deleted == 4 and d1.deleted == 2 and [kv.key for kv in d1.prev_kvs] == [b"b", b"b\xff"]


def test_txn_compare_limits_and_types() -> None:
    s = KVStore()
    with pytest.raises(LimitExceeded, match="compares"):
        s.txn([Compare.exists(b"a")] * 129)
    with pytest.raises(InvalidArgument, match="bytes"):
        s.txn([Compare(b"a", CompareTarget.VALUE, CompareResult.EQUAL, 1)])
    with pytest.raises(InvalidArgument, match="int"):
        s.txn([Compare(b"a", CompareTarget.VERSION, CompareResult.EQUAL, b"1")])
    with pytest.raises(InvalidArgument, match="compare key is empty"):
        s.txn([Compare(b"", CompareTarget.VERSION, CompareResult.EQUAL, 0)])


# -------------------------------------------------------------------------------------------- limits


def test_limits() -> None:
    s = KVStore()
    with pytest.raises(InvalidArgument, match="put key is empty"):
        s.put(b"", b"v")
    with pytest.raises(LimitExceeded) as e:
        s.put(b"k" * 4097, b"v")
    assert (e.value.limit, e.value.actual, e.value.maximum) == ("max_key_bytes", 4097, 4096)
    assert "Limits.max_key_bytes = 4096" in str(e.value) and "4097" in str(e.value)
    s.put(b"k" * 4096, b"v" * (1024 * 1024))
    with pytest.raises(
        LimitExceeded, match=r"value length is 1048577, over the limit Limits.max_value_bytes"
    ):
        s.put(b"k", b"v" * (1024 * 1024 + 1))
    with pytest.raises(LimitExceeded, match="range_end"):
        s.range(b"a", b"z" * 5000)
    with pytest.raises(InvalidArgument, match="delete key is empty"):
        s.delete_range(b"")
    s.txn([], [PutRequest(b"t%d" % i) for i in range(128)])
    assert s.revision == 3


def test_limits_are_configurable_and_validated() -> None:
    s = KVStore(Limits(max_key_bytes=4, max_value_bytes=2, max_txn_ops=2))
    s.put(b"abcd", b"xy")
    with pytest.raises(LimitExceeded, match="max_key_bytes = 4"):
        s.put(b"abcde")
    with pytest.raises(LimitExceeded, match="max_value_bytes = 2"):
        s.put(b"a", b"xyz")
    with pytest.raises(LimitExceeded, match="number of txn failure ops is 3"):
        s.txn([], [], [RangeRequest(b"a")] * 3)
    with pytest.raises(ValueError, match="max_txn_ops"):
        Limits(max_txn_ops=0)


# -------------------------------------------------------------------------------------- codec


ALL_REQUESTS: list[Request] = [
    PutRequest(b"k", b"v", 3, True, False, False),
    PutRequest(b"k", ignore_value=True, ignore_lease=True),
    RangeRequest(b"a", b"b", 10, 5, True, True),
    RangeRequest(b"a"),
    DeleteRangeRequest(b"a", b"\0", True),
    TxnRequest(
        (
            Compare(b"a", CompareTarget.VALUE, CompareResult.EQUAL, b"x"),
            Compare(b"a", CompareTarget.VERSION, CompareResult.LESS, -1, b"b"),
        ),
        (PutRequest(b"a", b"y"), RangeRequest(b"a", b"c")),
        (DeleteRangeRequest(b"a"),),
    ),
    CompactRequest(5),
    RegisterSessionRequest(),
    KeepAliveRequest(9),
    CloseSessionRequest(9),
    NoopRequest(),
]


@pytest.mark.parametrize("request_", ALL_REQUESTS)
def test_command_round_trip(request_: Request) -> None:
    data = encode_command(request_, timestamp=123, session_id=4, seq=2)
    assert decode_command(data) == Command(request_, 123, 4, 2)
    assert decode_command(encode_command(request_)) == Command(request_)


def test_command_format_is_versioned_and_append_only() -> None:
    raw = msgpack.unpackb(encode_command(PutRequest(b"k", b"v")))
    assert raw == [COMMAND_VERSION, OpType.PUT, 0, 0, 0, [b"k", b"v", 0, False, False, False]]
    # an older encoder that knew only (key, value): trailing fields take their defaults
    old = msgpack.packb([1, int(OpType.PUT), 0, 0, 0, [b"k", b"v"]], use_bin_type=True)
    assert decode_command(old).request == PutRequest(b"k", b"v")
    assert decode_command(b"") == Command(NoopRequest())
    bad = [
        ([2, 1, 0, 0, 0, [b"k"]], "unsupported command version 2"),
        ([1, 99, 0, 0, 0, []], "unknown command op type 99"),
        ([1, 1, 0, 0, 0, [b"k", b"v", 0, False, False, False, "new"]], "fields"),
        ([1, 1, 0, 0, 0, ["k"]], "put.key must be bytes"),
        ([1, 1, 0, 0, 0, [b"k", b"v", -1]], "lease"),
        ([1, 1, 0, 0, 0, [b"k", b"v", 0, 1]], "prev_kv must be a bool"),
        ([1, 1, 0, 5, 0, [b"k"]], "seq 0"),
        ([1, 1, 0, 0, 5, [b"k"]], "no session"),
        ([1, 4, 0, 0, 0, [[], [[int(OpType.COMPACT), [3]]], []]], "not allowed in a txn"),
        ([1, 4, 0, 0, 0, [[[9, 0, b"k", 1]], [], []]], "compare target"),
        ([1, 4, 0, 0, 0, [[[3, 0, b"k", 1]], [], []]], "must be bytes"),
        ([1, 1, 1.5, 0, 0, [b"k"]], "timestamp"),
        ({"a": 1}, "command must be an array"),
    ]
    for obj, match in bad:
        with pytest.raises(InvalidArgument, match=match):
            decode_command(msgpack.packb(obj, use_bin_type=True))


def test_response_round_trip() -> None:
    kv = KeyValue(b"k", b"v", 2, 3, 2, 7)
    responses: list[Response] = [
        PutResponse(3, kv),
        PutResponse(3),
        RangeResponse(3, (kv, kv), 5, True),
        DeleteRangeResponse(3, 1, (kv,)),
        TxnResponse(4, True, (PutResponse(4), RangeResponse(4, (kv,), 1, False), DeleteRangeResponse(4))),
        CompactResponse(3),
        SessionResponse(3, 11),
        NoopResponse(3),
        ErrorResponse(3, LimitExceeded("max_key_bytes", 5000, 4096, "key length")),
        ErrorResponse(3, Compacted(2, 5)),
        ErrorResponse(3, FutureRevision(9, 5)),
        ErrorResponse(3, StaleRequest(1, 2, 3)),
        ErrorResponse(3, SessionExpired(4)),
        ErrorResponse(3, InvalidArgument("nope")),
    ]
    for resp in responses:
        assert decode_response(encode_response(resp)) == resp


def test_errors_equality_and_wire() -> None:
    assert Compacted(1, 2) == Compacted(1, 2) != Compacted(1, 3)
    assert InvalidArgument("x") != KVError("x")
    assert hash(StaleRequest(1, 2, 3)) == hash(StaleRequest(1, 2, 3))
    assert isinstance(LimitExceeded("max_txn_ops", 2, 1, "ops"), InvalidArgument)
    for bad in ([], [99], [3, "a", 1], [6], "x"):
        with pytest.raises(InvalidArgument):
            error_from_wire(bad)
    assert error_from_wire(error_to_wire(SessionExpired(3))) == SessionExpired(3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_apply_never_raises_on_garbage(data: bytes) -> None:
    sm = StateMachine()
    sm.apply(1, encode_command(PutRequest(b"k", b"v")))
    resp = sm.apply(2, data)
    assert isinstance(resp, Response)
    assert sm.applied_index == 2


def test_apply_never_raises_on_mutated_commands() -> None:
    rng = random.Random(7)
    encoded = [encode_command(r, timestamp=5, session_id=1, seq=1) for r in ALL_REQUESTS]
    sm = StateMachine()
    for index in range(1, 3001):
        data = bytearray(rng.choice(encoded))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        sm.apply(index, bytes(data))
    sm.kv.check_invariants()


# ------------------------------------------------------------------------------------- state machine


def put_cmd(key: bytes, value: bytes = b"v", *, timestamp: int = 0, session_id: int = 0,
            seq: int = 0) -> bytes:
    return encode_command(PutRequest(key, value), timestamp=timestamp, session_id=session_id, seq=seq)


def test_apply_dispatch_and_index_contract() -> None:
    sm = StateMachine()
    assert sm.apply(1, b"") == NoopResponse(1)
    assert sm.apply(3, put_cmd(b"k")) == PutResponse(2)  # gaps are fine
    assert sm.apply(4, encode_command(RangeRequest(b"k"))) == RangeResponse(
        2, (KeyValue(b"k", b"v", 2, 2, 1),), 1
    )
    assert sm.apply(5, encode_command(CompactRequest(7))) == ErrorResponse(2, FutureRevision(7, 2))
    assert sm.apply(6, encode_command(CompactRequest(2))) == CompactResponse(2)
    assert sm.apply(7, encode_command(RangeRequest(b"k", revision=1))) == ErrorResponse(2, Compacted(1, 2))
    assert sm.apply(8, put_cmd(b"", b"")) == ErrorResponse(2, InvalidArgument("put key is empty"))
    assert sm.applied_index == 8
    with pytest.raises(ValueError, match="applied index 8"):
        sm.apply(8, b"")


def test_sessions_exactly_once() -> None:
    sm = StateMachine()
    reg = sm.apply(10, encode_command(RegisterSessionRequest()))
    assert reg == SessionResponse(1, 10)
    first = sm.apply(11, put_cmd(b"k", b"1", session_id=10, seq=1))
    assert first == PutResponse(2)
    # the client retries seq 1 (e.g. after a leader change): same response, not applied again
    assert sm.apply(12, put_cmd(b"k", b"1", session_id=10, seq=1)) == first
    assert sm.revision == 2 and kv_of(sm.kv, b"k").version == 1
    assert sm.apply(13, put_cmd(b"k", b"2", session_id=10, seq=3)) == PutResponse(3)  # seqs may skip
    assert sm.apply(14, put_cmd(b"k", b"1", session_id=10, seq=1)) == ErrorResponse(3, StaleRequest(10, 1, 3))
    assert sm.apply(15, put_cmd(b"k", b"1", session_id=99, seq=1)) == ErrorResponse(3, SessionExpired(99))
    # an error outcome is cached too: the retry sees the same error
    err = sm.apply(16, encode_command(CompactRequest(100), session_id=10, seq=4))
    assert err == ErrorResponse(3, FutureRevision(100, 3))
    sm.apply(17, put_cmd(b"z"))
    assert sm.apply(18, encode_command(CompactRequest(100), session_id=10, seq=4)) == err
    # sessions are independent
    sm.apply(19, encode_command(RegisterSessionRequest()))
    assert sm.apply(20, put_cmd(b"k", b"3", session_id=19, seq=1)) == PutResponse(5)
    assert sorted(s.session_id for s in sm.sessions) == [10, 19]


def test_session_expiry_uses_command_timestamps() -> None:
    sm = StateMachine(session_ttl=100)
    sm.apply(1, encode_command(RegisterSessionRequest(), timestamp=1000))
    assert sm.apply(2, put_cmd(b"k", session_id=1, seq=1, timestamp=1100)) == PutResponse(2)  # idle 100: ok
    sm.apply(3, encode_command(NoopRequest(), timestamp=1150))
    # a timestamp that goes backwards (new leader with a slower clock) does not move the clock back
    sm.apply(4, encode_command(KeepAliveRequest(1), timestamp=900))
    assert sm.now == 1150 and next(iter(sm.sessions)).last_active == 1150
    sm.apply(5, encode_command(NoopRequest(), timestamp=1250))
    assert len(sm.sessions) == 1  # idle exactly ttl
    sm.apply(6, encode_command(NoopRequest(), timestamp=1251))
    assert len(sm.sessions) == 0
    assert sm.apply(7, put_cmd(b"k", session_id=1, seq=1)) == ErrorResponse(2, SessionExpired(1))
    # a command arriving too late for its own session fails: expiry runs before the lookup
    sm.apply(8, encode_command(RegisterSessionRequest(), timestamp=2000))
    assert sm.apply(9, put_cmd(b"k", session_id=8, seq=1, timestamp=2101)) == ErrorResponse(
        2, SessionExpired(8)
    )


def test_session_expiry_order_and_keep_alive_close() -> None:
    sm = StateMachine(session_ttl=10)
    sm.apply(1, encode_command(RegisterSessionRequest(), timestamp=0))
    sm.apply(2, encode_command(RegisterSessionRequest(), timestamp=5))
    sm.apply(3, encode_command(RegisterSessionRequest(), timestamp=6))
    assert sm.apply(4, encode_command(KeepAliveRequest(1), timestamp=8)) == SessionResponse(1, 1)
    sm.apply(5, encode_command(NoopRequest(), timestamp=16))
    assert [s.session_id for s in sm.sessions] == [3, 1]  # 2 expired (idle 11), 1 was kept alive
    assert sm.apply(6, encode_command(CloseSessionRequest(3))) == SessionResponse(1, 3)
    assert sm.apply(7, encode_command(CloseSessionRequest(3))) == ErrorResponse(1, SessionExpired(3))
    assert sm.apply(8, encode_command(KeepAliveRequest(2))) == ErrorResponse(1, SessionExpired(2))
    # a session closing itself inside its own command does not resurrect its cache
    assert sm.apply(9, encode_command(CloseSessionRequest(1), session_id=1, seq=1)) == SessionResponse(1, 1)
    assert len(sm.sessions) == 0


def test_replicas_agree_byte_for_byte() -> None:
    log = random_log(random.Random(3), 300)
    a, b = StateMachine(session_ttl=SESSION_TTL), StateMachine(session_ttl=SESSION_TTL)
    for i, data in enumerate(log, 1):
        assert a.apply(i, data) == b.apply(i, data)
    assert a.snapshot() == b.snapshot()


# ------------------------------------------------------------------------------------------ snapshots


class LogGen:
    """Random commands for a whole state machine, including sessions, retries and bad input."""

    KEYS = [b"a", b"ab", b"abc", b"b", b"ba", b"c", b"\xff"]

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sessions: dict[int, int] = {}  # id -> last seq sent
        self.ts = 0
        self.revision = 1

    def _op(self) -> Op:
        r, k = self.rng, self.rng.choice(self.KEYS)
        roll = r.random()
        if roll < 0.5:
            return PutRequest(
                k, bytes([r.randrange(3)]) * r.randrange(3), lease=r.choice([0, 0, 5]), prev_kv=True
            )
        if roll < 0.7:
            return DeleteRangeRequest(k, r.choice([None, prefix_end(k), b"\0"]), prev_kv=r.random() < 0.5)
        return RangeRequest(
            k, r.choice([None, b"\0"]), limit=r.randrange(3), revision=r.randrange(self.revision + 2)
        )

    def request(self) -> Request:
        r = self.rng
        roll = r.random()
        if roll < 0.4:
            op = self._op()
            return op
        if roll < 0.6:
            cmp = r.choice([Compare.exists(r.choice(self.KEYS)), Compare.missing(r.choice(self.KEYS))])
            return TxnRequest((cmp,), tuple(self._op() for _ in range(r.randrange(3))), (self._op(),))
        if roll < 0.65:
            return CompactRequest(r.randrange(1, self.revision + 2))
        if roll < 0.75:
            return RegisterSessionRequest()
        if roll < 0.8 and self.sessions:
            return KeepAliveRequest(r.choice(sorted(self.sessions)))
        if roll < 0.82 and self.sessions:
            return CloseSessionRequest(r.choice(sorted(self.sessions)))
        return NoopRequest()

    def command(self, index: int) -> bytes:
        r = self.rng
        self.ts += r.randrange(-3, 15)
        if r.random() < 0.02:
            return bytes(r.randrange(256) for _ in range(r.randrange(8)))
        req = self.request()
        if isinstance(req, RegisterSessionRequest):
            self.sessions[index] = 0
        sid = seq = 0
        if self.sessions and r.random() < 0.5:
            sid = r.choice(sorted(self.sessions))
            last = self.sessions[sid]
            seq = r.choice([last + 1, last + 1, last + 2, max(last, 1), max(last - 1, 1)])
            self.sessions[sid] = max(last, seq)
        return encode_command(req, timestamp=max(self.ts, 0), session_id=sid, seq=seq)


SESSION_TTL = 80


def random_log(rng: random.Random, n: int) -> list[bytes]:
    gen = LogGen(rng)
    sm = StateMachine(session_ttl=SESSION_TTL)
    out = []
    for i in range(1, n + 1):
        data = gen.command(i)
        out.append(data)
        sm.apply(i, data)
        gen.revision = sm.revision
        # mostly forget sessions that ended, but keep using a few to exercise SessionExpired
        live = {sess.session_id for sess in sm.sessions}
        gen.sessions = {k: v for k, v in gen.sessions.items() if k in live or rng.random() < 0.05}
    return out


def full_view(sm: StateMachine) -> Any:
    """Everything observable: every readable revision and every event."""
    kv = sm.kv
    first = max(kv.compact_revision, 1)
    return (
        [kv.range(*ALL, revision=r) for r in range(first, kv.revision + 1)],
        kv.events_since(first, *ALL),
        kv.revision,
        kv.compact_revision,
        [(s.session_id, s.last_seq, s.last_active, s.response) for s in sm.sessions],
        sm.now,
        sm.applied_index,
    )


@pytest.mark.parametrize("seed", range(6))
def test_snapshot_restore_equivalence(seed: int) -> None:
    rng = random.Random(seed)
    log = random_log(rng, 400)
    n = rng.randrange(50, 350)
    original = StateMachine(session_ttl=SESSION_TTL)
    for i, data in enumerate(log[:n], 1):
        original.apply(i, data)
    snap = original.snapshot()
    restored = StateMachine(session_ttl=SESSION_TTL)
    restored.apply(1, put_cmd(b"junk"))  # restore replaces whatever was there
    restored.restore(snap)
    assert restored.snapshot() == snap
    assert full_view(restored) == full_view(original)
    for i, data in enumerate(log[n:], n + 1):
        assert restored.apply(i, data) == original.apply(i, data)
    assert restored.snapshot() == original.snapshot()
    assert full_view(restored) == full_view(original)
    restored.kv.check_invariants()


def test_snapshot_header_and_bad_snapshots() -> None:
    sm = StateMachine()
    sm.apply(1, put_cmd(b"k"))
    snap = sm.snapshot()
    obj = msgpack.unpackb(snap)
    assert obj[:4] == [b"coterie-sm", 2, 1, 0]
    v1 = [b"coterie-sm", 1, 1, 0]
    good = sm.snapshot()
    for bad in (
        b"",
        b"\x00",
        msgpack.packb([b"coterie-sm", 3, 1, 0, [], [], [], []]),
        msgpack.packb([b"coterie-sm", 2, 1, 0, [], []]),  # version 2 needs the lease table
        msgpack.packb([b"coterie-sm", 1, 1, 0, [], [], [], []]),  # version 1 has none
        msgpack.packb([b"other", 1, 1, 0, [], []]),
        msgpack.packb([*v1, [2, 0, [], [[0, [b"k", b"v", 2, 2, 1, 0], None, 0]] * 2], []]),
        msgpack.packb([*v1, obj[4], [[1, 5, 0, None], [2, 4, 0, None]]]),
        msgpack.packb([*obj[:7], [[5, 10, 11, 1]]]),  # remaining above the TTL
        msgpack.packb([*obj[:7], [[5, 10, 1, 1], [5, 10, 1, 1]]]),  # duplicate lease
        msgpack.packb([*obj[:7], [[5, 10, 1]]]),
    ):
        with pytest.raises(InvalidArgument):
            sm.restore(bad)
        assert sm.snapshot() == good  # a failed restore leaves the state alone
    assert StateMachine.from_snapshot(snap).kv.get(b"k") == KeyValue(b"k", b"v", 2, 2, 1)


# --------------------------------------------------------------------------- model-based comparison


class RefModel:
    """The obvious implementation: a full dict for every revision, and an explicit event list."""

    def __init__(self) -> None:
        self.states: list[dict[bytes, KeyValue]] = [{}, {}]  # states[r] is the store at revision r
        self.events: list[Event] = []
        self.compact_rev = 0

    @property
    def revision(self) -> int:
        return len(self.states) - 1

    @staticmethod
    def read(state: dict[bytes, KeyValue], key: bytes, end: bytes | None) -> list[KeyValue]:
        return [state[k] for k in sorted(state) if in_range(k, key, end)]

    def range(self, key: bytes, end: bytes | None, revision: int) -> list[KeyValue]:
        if revision and revision < self.compact_rev:
            raise Compacted(revision, self.compact_rev)
        if revision > self.revision:
            raise FutureRevision(revision, self.revision)
        return self.read(self.states[revision or self.revision], key, end)

    def events_since(self, start: int, key: bytes, end: bytes | None) -> list[Event]:
        if start < self.compact_rev:
            raise Compacted(start, self.compact_rev)
        return [e for e in self.events if e.revision >= start and in_range(e.kv.key, key, end)]

    def compact(self, revision: int) -> None:
        if revision <= self.compact_rev:
            raise Compacted(revision, self.compact_rev)
        if revision > self.revision:
            raise FutureRevision(revision, self.revision)
        self.compact_rev = revision

    def _holds(self, c: Compare, state: dict[bytes, KeyValue]) -> bool:
        kvs = self.read(state, c.key, c.range_end)
        if not kvs:
            if c.target == CompareTarget.VALUE:
                return False
            kvs = [KeyValue(c.key, b"", 0, 0, 0, 0)]
        for kv in kvs:
            actual = {
                CompareTarget.VALUE: kv.value,
                CompareTarget.VERSION: kv.version,
                CompareTarget.CREATE_REVISION: kv.create_revision,
                CompareTarget.MOD_REVISION: kv.mod_revision,
                CompareTarget.LEASE: kv.lease,
            }[c.target]
            expected = c.value
            if c.result == CompareResult.EQUAL:
                ok = actual == expected
            elif c.result == CompareResult.NOT_EQUAL:
                ok = actual != expected
            elif isinstance(actual, bytes) and isinstance(expected, bytes):
                ok = actual > expected if c.result == CompareResult.GREATER else actual < expected
            else:
                assert isinstance(actual, int) and isinstance(expected, int)
                ok = actual > expected if c.result == CompareResult.GREATER else actual < expected
            if not ok:
                return False
        return True

    @staticmethod
    def _duplicate(ops: tuple[Op, ...]) -> bool:
        puts = [op.key for op in ops if isinstance(op, PutRequest)]
        if len(puts) != len(set(puts)):
            return True
        dels = [op for op in ops if isinstance(op, DeleteRangeRequest)]
        return any(in_range(k, d.key, d.range_end) for k in puts for d in dels)

    def txn(self, req: TxnRequest) -> TxnResponse:
        if self._duplicate(req.success) or self._duplicate(req.failure):
            raise InvalidArgument("duplicate key")
        cur = self.states[-1]
        ok = all(self._holds(c, cur) for c in req.compare)
        ops = req.success if ok else req.failure
        for op in ops:
            if isinstance(op, PutRequest) and op.ignore_value and op.key not in cur:
                raise InvalidArgument("key not found")
        rev = self.revision + 1
        work = dict(cur)
        events: list[Event] = []
        results: list[Any] = []
        for op in ops:
            if isinstance(op, PutRequest):
                prev = work.get(op.key)
                value = prev.value if (op.ignore_value and prev) else op.value
                if prev is None:
                    kv = KeyValue(op.key, value, rev, rev, 1, op.lease)
                else:
                    kv = KeyValue(op.key, value, prev.create_revision, rev, prev.version + 1, op.lease)
                work[op.key] = kv
                events.append(Event(EventType.PUT, kv, prev, len(events)))
                results.append(PutResponse(0, prev if op.prev_kv else None))
            elif isinstance(op, DeleteRangeRequest):
                gone = self.read(work, op.key, op.range_end)
                for kv in gone:
                    del work[kv.key]
                    events.append(
                        Event(EventType.DELETE, KeyValue(kv.key, b"", 0, rev, 0, 0), kv, len(events))
                    )
                results.append(DeleteRangeResponse(0, len(gone), tuple(gone) if op.prev_kv else ()))
            else:
                kvs = self.read(work, op.key, op.range_end)
                results.append(RangeResponse(0, tuple(kvs), len(kvs), False))
        if events:
            self.states.append(work)
            self.events.extend(events)
        final = self.revision
        return TxnResponse(final, ok, tuple(replace(r, revision=final) for r in results))


MODEL_KEYS = [b"a", b"ab", b"abc", b"b", b"b\0", b"ba", b"c", b"\xff"]
key_st = st.sampled_from(MODEL_KEYS)
end_st = st.one_of(st.none(), st.just(b"\0"), key_st, key_st.map(prefix_end))
value_st = st.sampled_from([b"", b"x", b"y", b"zz"])
op_st: st.SearchStrategy[Op] = st.one_of(
    st.builds(
        PutRequest,
        key_st,
        value_st,
        lease=st.sampled_from([0, 0, 3]),
        prev_kv=st.booleans(),
    ),
    st.builds(PutRequest, key_st, prev_kv=st.booleans(), ignore_value=st.just(True)),
    st.builds(DeleteRangeRequest, key_st, end_st, prev_kv=st.booleans()),
    st.builds(RangeRequest, key_st, end_st),
)
compare_st = st.one_of(
    st.builds(Compare.exists, key_st),
    st.builds(Compare.missing, key_st),
    st.builds(
        Compare, key_st, st.just(CompareTarget.VALUE), st.sampled_from(CompareResult), value_st, end_st
    ),
    st.builds(
        Compare,
        key_st,
        st.sampled_from([CompareTarget.VERSION, CompareTarget.MOD_REVISION, CompareTarget.LEASE]),
        st.sampled_from(CompareResult),
        st.integers(0, 6),
        end_st,
    ),
)


class KVModelMachine(RuleBasedStateMachine):
    """Random writes, compactions, snapshot round trips; every read and watch checked against RefModel."""

    def __init__(self) -> None:
        super().__init__()
        self.store = KVStore()
        self.model = RefModel()

    def _same(self, got: Any, expected: Any) -> None:
        assert got == expected

    @rule(op=op_st)
    def single_op(self, op: Op) -> None:
        self.txn(TxnRequest((), (op,), ()))

    @rule(
        req=st.builds(
            TxnRequest,
            st.lists(compare_st, max_size=2).map(tuple),
            st.lists(op_st, max_size=4).map(tuple),
            st.lists(op_st, max_size=3).map(tuple),
        )
    )
    def txn(self, req: TxnRequest) -> None:
        try:
            expected: Any = self.model.txn(req)
        except KVError as e:
            expected = type(e)
        try:
            got: Any = self.store.execute_txn(req)
        except KVError as e:
            got = type(e)
        assert got == expected

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        revision = data.draw(st.integers(1, self.model.revision + 1))
        outcomes: list[type[KVError] | None] = []
        for target in (self.model, self.store):
            try:
                target.compact(revision)
                outcomes.append(None)
            except KVError as e:
                outcomes.append(type(e))
        assert outcomes[0] == outcomes[1]

    @rule()
    def snapshot_round_trip(self) -> None:
        dumped = msgpack.packb(self.store.dump(), use_bin_type=True)
        self.store = KVStore.load(msgpack.unpackb(dumped, raw=False))
        assert msgpack.packb(self.store.dump(), use_bin_type=True) == dumped

    @precondition(lambda self: self.model.revision > 1)
    @rule(data=st.data(), key=key_st, end=end_st, limit=st.integers(0, 3))
    def read_at_revision(self, data: st.DataObject, key: bytes, end: bytes | None, limit: int) -> None:
        revision = data.draw(st.integers(0, self.model.revision + 1))
        try:
            full = self.model.range(key, end, revision)
            expected: Any = RangeResponse(
                self.model.revision,
                tuple(full[:limit] if limit else full),
                len(full),
                bool(limit) and len(full) > limit,
            )
        except KVError as e:
            expected = type(e)
        try:
            got: Any = self.store.range(key, end, revision=revision, limit=limit)
        except KVError as e:
            got = type(e)
        assert got == expected

    @rule(data=st.data(), key=key_st, end=end_st)
    def watch(self, data: st.DataObject, key: bytes, end: bytes | None) -> None:
        start = data.draw(st.integers(1, self.model.revision + 2))
        try:
            expected: Any = self.model.events_since(start, key, end)
        except KVError as e:
            expected = type(e)
        try:
            got: Any = self.store.events_since(start, key, end)
        except KVError as e:
            got = type(e)
        assert got == expected

    @invariant()
    def same_revisions_and_consistent(self) -> None:
        assert self.store.revision == self.model.revision
        assert self.store.compact_revision == self.model.compact_rev
        self.store.check_invariants()


KVModelMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_kv_against_reference_model = KVModelMachine.TestCase


def test_every_revision_against_model_after_long_random_run() -> None:
    """A longer plain random sequence: after each step, every readable revision is compared."""
    rng = random.Random(11)
    store, model = KVStore(), RefModel()
    for step in range(400):
        k = rng.choice(MODEL_KEYS)
        roll = rng.random()
        if roll < 0.55:
            req = TxnRequest((), (PutRequest(k, rng.choice([b"1", b"2"]), prev_kv=True),), ())
        elif roll < 0.75:
            req = TxnRequest((), (DeleteRangeRequest(k, rng.choice([None, prefix_end(k)])),), ())
        elif roll < 0.95:
            req = TxnRequest(
                (Compare.exists(k),),
                (PutRequest(rng.choice(MODEL_KEYS), b"t"), DeleteRangeRequest(rng.choice(MODEL_KEYS))),
                (PutRequest(k, b"f"),),
            )
        else:
            r = rng.randrange(max(model.compact_rev, 1), model.revision + 1)
            if r > model.compact_rev:
                model.compact(r)
                store.compact(r)
            continue
        try:
            expected: Any = model.txn(req)
        except KVError as e:
            expected = type(e)
        try:
            got: Any = store.execute_txn(req)
        except KVError as e:
            got = type(e)
        assert got == expected, step
        if step % 40 == 0:
            for r in range(max(model.compact_rev, 1), model.revision + 1):
                assert list(store.range(*ALL, revision=r).kvs) == model.range(*ALL, r)
            start = max(model.compact_rev, 1)
            assert store.events_since(start, *ALL) == model.events_since(start, *ALL)
