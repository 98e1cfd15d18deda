"""Leases and fences in the replicated state machine, their codec, and the pure lease timer."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coterie.node.server.lease_timer import LeaseTimer
from coterie.node.statemachine import (
    Command,
    DeleteRangeRequest,
    ErrorResponse,
    EventType,
    Fence,
    FenceRejected,
    InvalidArgument,
    KeyValue,
    LeaseCheckpointRequest,
    LeaseExpireRequest,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseNotFound,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseUpdate,
    NoopResponse,
    OpType,
    PutRequest,
    PutResponse,
    RangeRequest,
    RegisterSessionRequest,
    Request,
    Response,
    StateMachine,
    TxnRequest,
    TxnResponse,
    decode_command,
    decode_response,
    encode_command,
    encode_response,
)
from coterie.node.statemachine.errors import error_from_wire, error_to_wire
from coterie.v1 import kv_pb2


class SM:
    """A state machine with an auto-incrementing log index."""

    def __init__(self) -> None:
        self.sm = StateMachine()
        self.index = 0

    def __call__(self, req: Request, **env: object) -> Response:
        self.index += 1
        return self.sm.apply(self.index, encode_command(req, **env))  # type: ignore[arg-type]

    def check(self) -> None:
        """The lease key sets match the store exactly (the leases module invariant)."""
        sm = self.sm
        sm.kv.check_invariants()
        live = sm.kv.range(b"\0", b"\0").kvs
        for lid in sm.leases.ids():
            assert sm.leases.keys_of(lid) == [kv.key for kv in live if kv.lease == lid]


def grant(s: SM, ttl: int = 1000, lease_id: int = 0) -> int:
    r = s(LeaseGrantRequest(ttl, lease_id))
    assert isinstance(r, LeaseGrantResponse), r
    return r.lease_id


# --------------------------------------------------------------------------------------- requests


def test_grant_ids_ttl_and_errors() -> None:
    s = SM()
    assert s(LeaseGrantRequest(500)) == LeaseGrantResponse(1, 1, 500)  # id = the entry index
    assert s(LeaseGrantRequest(700, 4)) == LeaseGrantResponse(1, 4, 700)
    assert s(LeaseGrantRequest(700, 4)) == ErrorResponse(1, InvalidArgument("lease already exists: 4"))
    # entry 4's auto id is taken by the explicit grant: the next free id above it
    assert s(LeaseGrantRequest(100)) == LeaseGrantResponse(1, 5, 100)
    assert s(LeaseGrantRequest(0)) == ErrorResponse(1, InvalidArgument("lease TTL must be >= 1 ms, got 0"))
    assert s.sm.leases.ids() == [1, 4, 5]
    lease = s.sm.leases.get(4)
    assert lease is not None and (lease.ttl_ms, lease.remaining_ms, lease.refreshed_index) == (700, 700, 2)
    assert s.sm.take_lease_updates() == [
        LeaseUpdate(1, 500, 1),
        LeaseUpdate(4, 700, 2),
        LeaseUpdate(5, 100, 4),
    ]
    assert s.sm.take_lease_updates() == []


def test_put_with_unknown_lease_is_refused_and_put_moves_keys_between_leases() -> None:
    s = SM()
    assert s(PutRequest(b"k", b"v", lease=9)) == ErrorResponse(1, LeaseNotFound(9))
    assert str(LeaseNotFound(9)) == "requested lease not found: 9"
    a, b = grant(s), grant(s)
    assert s(PutRequest(b"k", b"1", lease=a)) == PutResponse(2)
    assert s(PutRequest(b"j", b"1", lease=a)) == PutResponse(3)
    assert s.sm.leases.keys_of(a) == [b"j", b"k"]
    assert s(PutRequest(b"k", b"2", lease=b)) == PutResponse(4)
    assert (s.sm.leases.keys_of(a), s.sm.leases.keys_of(b)) == ([b"j"], [b"k"])
    assert s(PutRequest(b"k", b"3", ignore_lease=True)) == PutResponse(5)  # keeps lease b
    assert s.sm.kv.get(b"k") == KeyValue(b"k", b"3", 2, 5, 3, b)
    assert s.sm.leases.keys_of(b) == [b"k"]
    assert s(PutRequest(b"k", b"4")) == PutResponse(6)  # a lease-less put detaches
    assert s.sm.leases.keys_of(b) == []
    assert s(DeleteRangeRequest(b"j")).revision == 7  # a delete detaches
    assert s.sm.leases.keys_of(a) == []
    assert s.sm.leases.keys_of(12345) == []
    s.check()


def test_txn_with_lease_checks_only_the_branch_that_runs_and_changes_nothing_on_failure() -> None:
    s = SM()
    a = grant(s)
    txn = TxnRequest.of((), (PutRequest(b"x", b"1", lease=a), PutRequest(b"y", b"1", lease=77)))
    assert s(txn) == ErrorResponse(1, LeaseNotFound(77))
    assert s.sm.kv.get(b"x") is None and s.sm.leases.keys_of(a) == []
    ok = TxnRequest.of(
        (), (PutRequest(b"x", b"1", lease=a), PutRequest(b"y", b"1")), (PutRequest(b"z", lease=77),)
    )
    r = s(ok)
    assert isinstance(r, TxnResponse) and r.succeeded and r.revision == 2
    assert s.sm.leases.keys_of(a) == [b"x"]
    s.check()


def test_revoke_deletes_every_attached_key_in_one_revision() -> None:
    s = SM()
    a, b = grant(s), grant(s)
    keys = [b"k%03d" % i for i in range(200)]  # more than Limits.max_txn_ops
    for k in keys:
        s(PutRequest(k, b"v", lease=a))
    s(PutRequest(b"other", b"v", lease=b))
    rev = s.sm.revision
    s.sm.take_lease_updates()
    assert s(LeaseRevokeRequest(a)) == LeaseRevokeResponse(rev + 1, 200)
    assert s.sm.take_lease_updates() == [LeaseUpdate(a, None, 1)]
    events = s.sm.kv.events_since(rev + 1, b"\0", b"\0")
    assert [(e.type, e.kv.key, e.revision, e.sub) for e in events] == [
        (EventType.DELETE, k, rev + 1, i) for i, k in enumerate(keys)
    ]
    assert all(e.prev_kv is not None and e.prev_kv.lease == a for e in events)
    assert a not in s.sm.leases and s.sm.kv.get(b"other") is not None
    assert s(LeaseRevokeRequest(a)) == ErrorResponse(rev + 1, LeaseNotFound(a))
    c = grant(s)
    assert s(LeaseRevokeRequest(c)) == LeaseRevokeResponse(rev + 1, 0)  # no keys: no new revision
    s.check()


def test_keep_alive_renews_reports_missing_and_dedups() -> None:
    s = SM()
    a, b = grant(s, 300), grant(s, 400)
    s.sm.take_lease_updates()
    assert s(LeaseKeepAliveRequest((b, 99, a, b))) == LeaseKeepAliveResponse(1, ((b, 400), (a, 300)), (99,))
    assert s.sm.take_lease_updates() == [LeaseUpdate(b, 400, 3), LeaseUpdate(a, 300, 3)]
    lease = s.sm.leases.get(a)
    assert lease is not None and lease.refreshed_index == 3


def test_expire_races_with_keep_alive_by_refreshed_index() -> None:
    s = SM()
    a = grant(s)  # index 1
    s(PutRequest(b"k", b"v", lease=a))
    s(LeaseKeepAliveRequest((a,)))  # index 3: renewed after the leader's view (index 1)
    s.sm.take_lease_updates()
    assert s(LeaseExpireRequest(a, 1)) == LeaseRevokeResponse(2, 0, revoked=False)
    assert a in s.sm.leases and s.sm.kv.get(b"k") is not None
    assert s.sm.take_lease_updates() == []
    assert s(LeaseExpireRequest(a, 3)) == LeaseRevokeResponse(3, 1)
    assert a not in s.sm.leases and s.sm.kv.get(b"k") is None
    assert s.sm.take_lease_updates() == [LeaseUpdate(a, None, 3)]
    assert s(LeaseExpireRequest(a, 3)) == LeaseRevokeResponse(3, 0, revoked=False)  # gone: no-op
    # an explicit re-grant of the same id is a new lease: an old expiry does not touch it
    assert grant(s, 100, a) == a
    assert s(LeaseExpireRequest(a, 3)) == LeaseRevokeResponse(3, 0, revoked=False)
    assert a in s.sm.leases
    s.check()


def test_checkpoint_records_remaining_unless_renewed_and_clamps() -> None:
    s = SM()
    a, b = grant(s, 1000), grant(s, 1000)  # indexes 1, 2
    s.sm.take_lease_updates()
    r = s(LeaseCheckpointRequest(((a, 400, 1), (b, 5000, 2), (77, 1, 1))))
    assert r == NoopResponse(1)
    assert s.sm.take_lease_updates() == [LeaseUpdate(a, 400, 1), LeaseUpdate(b, 1000, 2)]
    s(LeaseKeepAliveRequest((a,)))  # index 4
    s.sm.take_lease_updates()
    s(LeaseCheckpointRequest(((a, 10, 1),)))  # computed before the renewal: stale, ignored
    assert s.sm.take_lease_updates() == []
    lease = s.sm.leases.get(a)
    assert lease is not None and (lease.remaining_ms, lease.refreshed_index) == (1000, 4)


# ---------------------------------------------------------------------------------------- fences


def test_fence_accepts_the_oldest_holder_and_rejects_others() -> None:
    s = SM()
    fence_prefix = b"lock/"
    s(PutRequest(b"lock/a", b""))  # rev 2: the holder
    s(PutRequest(b"lock/b", b""))  # rev 3: a waiter
    s(PutRequest(b"lock0", b""))  # outside the prefix
    assert s.sm.fence_holder(fence_prefix) == 2
    ok = s(PutRequest(b"data", b"1"), fence=Fence(fence_prefix, 2))
    assert ok == PutResponse(5)
    refused = s(PutRequest(b"data", b"2"), fence=Fence(fence_prefix, 3))
    assert refused == ErrorResponse(5, FenceRejected(3, 2))
    assert "token 3 rejected" in str(FenceRejected(3, 2)) and "holder's token is 2" in str(
        FenceRejected(3, 2)
    )
    s(DeleteRangeRequest(b"lock/a"))  # the holder releases: b (rev 3) holds now
    assert s(PutRequest(b"data", b"3"), fence=Fence(fence_prefix, 2)) == ErrorResponse(6, FenceRejected(2, 3))
    assert s(PutRequest(b"data", b"3"), fence=Fence(fence_prefix, 3)) == PutResponse(7)
    s(DeleteRangeRequest(b"lock/", b"lock0"))
    refused = s(RangeRequest(b"data"), fence=Fence(fence_prefix, 3))
    assert refused == ErrorResponse(8, FenceRejected(3, 0))
    assert "no holder" in str(FenceRejected(3, 0))
    assert s.sm.kv.get(b"data") == KeyValue(b"data", b"3", 5, 7, 2)


def test_fenced_txn_is_refused_atomically() -> None:
    s = SM()
    s(PutRequest(b"lock/x", b""))  # rev 2
    s(PutRequest(b"lock/y", b""))  # rev 3
    a = grant(s)
    before = s.sm.snapshot()
    txn = TxnRequest.of((), (PutRequest(b"d1", b"1", lease=a), DeleteRangeRequest(b"lock/x")))
    assert s(txn, fence=Fence(b"lock/", 3)) == ErrorResponse(3, FenceRejected(3, 2))
    after = s.sm.snapshot()
    assert msgpack.unpackb(after)[3:] == msgpack.unpackb(before)[3:]  # only the applied index moved
    r = s(txn, fence=Fence(b"lock/", 2))
    assert isinstance(r, TxnResponse) and r.revision == 4
    assert s.sm.leases.keys_of(a) == [b"d1"]
    s.check()


def test_session_caches_a_fence_refusal() -> None:
    s = SM()
    sid = s.index + 1
    s(RegisterSessionRequest())
    s(PutRequest(b"lock/a", b""))  # rev 2
    refused = s(PutRequest(b"d", b"1"), fence=Fence(b"lock/", 99), session_id=sid, seq=1)
    assert refused == ErrorResponse(2, FenceRejected(99, 2))
    # the lock moves so that token 99 ... cannot happen, but a retry must not re-evaluate anyway:
    s(DeleteRangeRequest(b"lock/a"))
    assert s(PutRequest(b"d", b"1"), fence=Fence(b"lock/", 99), session_id=sid, seq=1) == refused
    session = s.sm.sessions.get(sid)
    assert session is not None and session.response == refused
    restored = StateMachine.from_snapshot(s.sm.snapshot())
    cached = restored.sessions.get(sid)
    assert cached is not None and cached.response == refused


# -------------------------------------------------------------------------------------- snapshots


def test_snapshot_round_trip_with_leases_and_updates_on_restore() -> None:
    s = SM()
    a, b = grant(s, 1000), grant(s, 2000)
    s(PutRequest(b"k1", b"", lease=a))
    s(PutRequest(b"k2", b"", lease=b))
    s(PutRequest(b"k3", b"", lease=a))
    s(LeaseCheckpointRequest(((a, 250, 1),)))
    snap = s.sm.snapshot()
    other = SM()
    c = grant(other, 50)
    other.index = 1
    grant(other, 60)  # index 2: the same id as b
    other.sm.take_lease_updates()
    other.sm.restore(snap)
    assert other.sm.snapshot() == snap
    assert sorted(other.sm.take_lease_updates()) == sorted([LeaseUpdate(a, 250, 1), LeaseUpdate(b, 2000, 2)])
    assert c == a  # a is in both: no None update for it; b likewise
    assert other.sm.leases.keys_of(a) == [b"k1", b"k3"] and other.sm.leases.keys_of(b) == [b"k2"]
    # the restored store checks leases too
    other.index = other.sm.applied_index
    assert other(PutRequest(b"z", b"", lease=99)) == ErrorResponse(other.sm.revision, LeaseNotFound(99))
    other.check()
    # a restore drops leases the snapshot does not have
    third = SM()
    third.index = 10
    grant(third)
    third.sm.restore(snap)
    assert LeaseUpdate(11, None, 0) in third.sm.take_lease_updates()


def test_version_1_snapshots_restore_without_leases() -> None:
    s = SM()
    s(PutRequest(b"k", b"v"))
    obj = msgpack.unpackb(s.sm.snapshot())
    v1 = msgpack.packb([obj[0], 1, *obj[2:7]], use_bin_type=True)
    v1_old = msgpack.packb([obj[0], 1, *obj[2:6]], use_bin_type=True)  # before the member book
    for data in (v1, v1_old):
        sm = StateMachine.from_snapshot(data)
        assert sm.kv.get(b"k") is not None and len(sm.leases) == 0
        assert msgpack.unpackb(sm.snapshot())[1] == 2
    # a key from a v1 snapshot may name a lease that does not exist: it is attached to nothing
    s2 = StateMachine()
    s2.kv.lease_exists = None
    s2.kv.put(b"old", b"", lease=5)
    o2 = msgpack.unpackb(s2.snapshot())
    sm = StateMachine.from_snapshot(msgpack.packb([o2[0], 1, *o2[2:7]], use_bin_type=True))
    kv = sm.kv.get(b"old")
    assert kv is not None and kv.lease == 5 and 5 not in sm.leases


# ------------------------------------------------------------------------------------------ codec


LEASE_REQUESTS: list[Request] = [
    LeaseGrantRequest(1000),
    LeaseGrantRequest(1000, 7),
    LeaseRevokeRequest(7),
    LeaseKeepAliveRequest(()),
    LeaseKeepAliveRequest((1, 2, 3)),
    LeaseCheckpointRequest(()),
    LeaseCheckpointRequest(((1, 500, 3), (2, 0, 4))),
    LeaseExpireRequest(7, 3),
]


@pytest.mark.parametrize("request_", LEASE_REQUESTS)
def test_lease_command_round_trip(request_: Request) -> None:
    fence = Fence(b"lock/", 12)
    data = encode_command(request_, timestamp=5, session_id=2, seq=1, fence=fence)
    assert decode_command(data) == Command(request_, 5, 2, 1, fence)
    assert decode_command(encode_command(request_)) == Command(request_)


def test_fence_encoding_is_append_only_and_validated() -> None:
    raw = msgpack.unpackb(encode_command(PutRequest(b"k", b"v")))
    assert len(raw) == 6  # no fence: the old format exactly
    raw = msgpack.unpackb(encode_command(PutRequest(b"k", b"v"), fence=Fence(b"p", 3)))
    assert raw[6] == [b"p", 3]
    nil = msgpack.packb([1, int(OpType.PUT), 0, 0, 0, [b"k"], None], use_bin_type=True)
    assert decode_command(nil).fence is None
    bad = [
        ([1, 1, 0, 0, 0, [b"k"], [b"", 3]], "fence prefix is empty"),
        ([1, 1, 0, 0, 0, [b"k"], [b"p"]], "fence has 1 fields"),
        ([1, 1, 0, 0, 0, [b"k"], ["p", 3]], "fence.prefix must be bytes"),
        ([1, 1, 0, 0, 0, [b"k"], [b"p", -1]], "fence.token"),
        ([1, 1, 0, 0, 0, [b"k"], [b"p", 1], 0], "command has 8 fields"),
        ([1, int(OpType.LEASE_GRANT), 0, 0, 0, []], "lease_grant has 0 fields"),
        ([1, int(OpType.LEASE_GRANT), 0, 0, 0, [-5]], "ttl_ms"),
        ([1, int(OpType.LEASE_KEEP_ALIVE), 0, 0, 0, [[1, "x"]]], r"lease_ids\[1\]"),
        ([1, int(OpType.LEASE_CHECKPOINT), 0, 0, 0, [[[1, 2]]]], r"items\[0\] has 2 fields"),
        ([1, int(OpType.LEASE_EXPIRE), 0, 0, 0, [1]], "lease_expire has 1 fields"),
        ([1, int(OpType.LEASE_REVOKE), 0, 0, 0, [1, 2]], "lease_revoke has 2 fields"),
        ([1, 15, 0, 0, 0, []], "unknown command op type 15"),
    ]
    for obj, match in bad:
        with pytest.raises(InvalidArgument, match=match):
            decode_command(msgpack.packb(obj, use_bin_type=True))


_u63 = st.integers(0, (1 << 63) - 1)
_requests = st.one_of(
    st.builds(LeaseGrantRequest, _u63, _u63),
    st.builds(LeaseRevokeRequest, _u63),
    st.builds(LeaseKeepAliveRequest, st.lists(_u63, max_size=5).map(tuple)),
    st.builds(LeaseCheckpointRequest, st.lists(st.tuples(_u63, _u63, _u63), max_size=5).map(tuple)),
    st.builds(LeaseExpireRequest, _u63, _u63),
)
_fences = st.none() | st.builds(Fence, st.binary(min_size=1, max_size=10), _u63)


@settings(max_examples=200, deadline=None)
@given(_requests, _fences)
def test_lease_codec_round_trip_property(req: Request, fence: Fence | None) -> None:
    assert decode_command(encode_command(req, fence=fence)) == Command(req, fence=fence)


@settings(max_examples=300, deadline=None)
@given(_requests, _fences, st.data())
def test_mutated_lease_commands_never_crash_apply(
    req: Request, fence: Fence | None, data: st.DataObject
) -> None:
    enc = bytearray(encode_command(req, fence=fence))
    for _ in range(data.draw(st.integers(1, 3))):
        enc[data.draw(st.integers(0, len(enc) - 1))] = data.draw(st.integers(0, 255))
    s = SM()
    grant(s)
    s(PutRequest(b"lock/a", b"", lease=1))
    assert isinstance(s.sm.apply(3, bytes(enc)), Response)
    s.check()


def test_lease_responses_and_errors_round_trip() -> None:
    responses: list[Response] = [
        LeaseGrantResponse(3, 9, 1000),
        LeaseKeepAliveResponse(3, ((1, 10), (2, 20)), (5,)),
        LeaseKeepAliveResponse(3),
        LeaseRevokeResponse(4, 2),
        LeaseRevokeResponse(4, 0, revoked=False),
        ErrorResponse(3, LeaseNotFound(7)),
        ErrorResponse(3, FenceRejected(5, 0)),
    ]
    for resp in responses:
        assert decode_response(encode_response(resp)) == resp
    assert error_from_wire(error_to_wire(FenceRejected(5, 6))) == FenceRejected(5, 6)
    for bad in ([7], [7, "x"], [8, 1], [8, 1, "2"]):
        with pytest.raises(InvalidArgument):
            error_from_wire(bad)
    for bad_resp in ([8, 1, 2], [9, 1, [[1]], []], [10, 1, 0, 1]):
        with pytest.raises(InvalidArgument):
            decode_response(msgpack.packb(bad_resp))


def test_wire_error_codes_match_kv_proto() -> None:
    assert LeaseNotFound.code == kv_pb2.ERROR_CODE_LEASE_NOT_FOUND == 7
    assert FenceRejected.code == kv_pb2.ERROR_CODE_FENCE_REJECTED == 8
    d = kv_pb2.ErrorDetail(lease_id=7, fence_token=5, holder_token=3)
    assert (d.lease_id, d.fence_token, d.holder_token) == (7, 5, 3)


# ------------------------------------------------------------------------------------- lease timer


def test_timer_countdown_checkpoint_min_and_expiry_retry() -> None:
    t = LeaseTimer(checkpoint_interval=2.0, retry=0.5)
    t.apply_updates([LeaseUpdate(1, 1000, 5), LeaseUpdate(2, 3000, 6)], now=10.0)
    assert t.deadline(1) == 11.0 and t.remaining(2, 10.5) == 2500
    assert t.expired(10.99) == []
    assert t.expired(11.0) == [LeaseExpireRequest(1, 5)]
    assert t.expired(11.2) == []  # proposed already; retry not due
    assert t.expired(11.5) == [LeaseExpireRequest(1, 5)]
    t.became_leader(11.6)  # a new term: propose again at once, deadlines unchanged
    assert t.expired(11.6) == [LeaseExpireRequest(1, 5)] and t.deadline(2) == 13.0
    # a checkpoint (same refreshed index) only ever moves a deadline earlier
    t.apply_updates([LeaseUpdate(2, 2900, 6)], now=10.2)
    assert t.deadline(2) == 13.0
    t.apply_updates([LeaseUpdate(2, 1000, 6)], now=11.0)
    assert t.deadline(2) == 12.0
    # a renewal (new refreshed index) re-arms it
    t.apply_updates([LeaseUpdate(1, 1000, 9)], now=11.7)
    assert t.expired(11.8) == [] and t.deadline(1) == pytest.approx(12.7)
    t.apply_updates([LeaseUpdate(1, None, 9)], now=12.0)
    assert 1 not in t and t.remaining(1, 12.0) is None and len(t) == 1


def test_timer_checkpoints_every_interval_rounding_up() -> None:
    t = LeaseTimer(checkpoint_interval=2.0, retry=0.5)
    assert t.checkpoints(0.0) is None  # no leases
    t.apply_updates([LeaseUpdate(3, 1000, 1), LeaseUpdate(1, 500, 2)], now=0.0)
    assert t.checkpoints(0.2) == LeaseCheckpointRequest(((1, 300, 2), (3, 800, 1)))
    assert t.checkpoints(1.0) is None and t.checkpoints(2.19) is None
    assert t.checkpoints(2.2) == LeaseCheckpointRequest(((1, 0, 2), (3, 0, 1)))  # clamped
    t.apply_updates([LeaseUpdate(3, 1000, 4)], now=2.5)
    cp = t.checkpoints(4.2)
    assert cp is not None and cp.items[1] == (3, 0, 4)
    t.apply_updates([LeaseUpdate(3, 1000, 5)], now=4.3)
    assert t.remaining(3, 4.3000001) == 1000  # rounded up, never down
    with pytest.raises(ValueError):
        LeaseTimer(checkpoint_interval=0)


def test_lease_timer_due_heap_stays_bounded_and_still_retries() -> None:
    """A follower never pops the due-heap (only the leader asks for expiries): renewals must not grow
    it without bound, and a rebuild must keep a proposed expiry's retry."""
    from coterie.node.server.lease_timer import LeaseTimer
    from coterie.node.statemachine import LeaseUpdate

    t = LeaseTimer(checkpoint_interval=5.0, retry=1.0)
    for i in range(10_000):
        t.apply_updates([LeaseUpdate(7, 3_000, i + 1)], now=i * 0.001)
    assert len(t._due) <= 2 * 1 + 64 + 1
    now = 10.0 + 3.0
    [first] = t.expired(now)
    assert first.lease_id == 7
    assert t.expired(now + 0.5) == []            # within retry: not again
    for i in range(200):                         # renewals of another lease force rebuilds
        t.apply_updates([LeaseUpdate(8, 60_000, i + 1)], now=now + 0.5)
    [again] = t.expired(now + 1.0)               # the retry survived the rebuilds
    assert again.lease_id == 7
