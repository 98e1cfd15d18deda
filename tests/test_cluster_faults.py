"""Faults and limits against three real ``coterie node`` processes (``tests/proc_cluster.py``).

- A write whose first attempt has an unknown outcome (the leader is ``kill -9``-ed after the entry
  reached a follower, before the client heard back) and that is retried with the same session seq is
  applied exactly once; the same retry without a session is applied twice (the check can fail).
- A client flood (bounded in clients, requests and seconds) does not cost the cluster its leader: no
  term or leader change on any member, and writes beyond the proposal queue are refused at once with
  RESOURCE_EXHAUSTED instead of hanging.
- Limits (empty key, key over 4 KiB, value over 1 MiB, request over 2 MiB, txn over 128 ops) are
  INVALID_ARGUMENT naming the limit, through the Python client and raw gRPC, and change nothing.
- A member without a leader answers UNAVAILABLE; a full proposal queue RESOURCE_EXHAUSTED.

Every test bounds its time and reaps its processes (``proc_cluster.cluster``); nothing asserts timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.client import (
    Client,
    Compare,
    CoterieError,
    DeadlineExceeded,
    InvalidArgument,
    NotLeader,
    Op,
    ResourceExhausted,
    Unavailable,
)
from coterie.v1 import cluster_pb2, kv_pb2
from tests.proc_cluster import NAMES, ProcCluster, cluster, flood, poll

KiB, MiB = 1 << 10, 1 << 20


def rpc_error(fn: Callable[[], Any]) -> grpc.RpcError:
    """The ``grpc.RpcError`` that ``fn`` raises (fails the test if it succeeds)."""
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    return ei.value


def put_op(key: bytes, value: bytes) -> kv_pb2.RequestOp:
    return kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=key, value=value))


# ==================================================================================== exactly once


def _unknown_outcome_round(c: ProcCluster, req: kv_pb2.TxnRequest) -> tuple[str, str]:
    """Send ``req`` to the leader, ``kill -9`` it as soon as a follower's log holds the new entry,
    and restart it. Returns (the killed leader, how the first attempt ended: ``"OK"`` or a status)."""
    lead, _ = c.settled()
    followers = [n for n in NAMES if n != lead]
    st = c.status(lead)
    assert st is not None
    base = st.last_index
    ch, kv = c.kv(lead)
    try:
        fut = kv.Txn.future(req, timeout=30)

        def entry_on_a_follower() -> bool | None:
            for f in followers:
                s = c.status(f, timeout=0.5)
                if s is not None and s.last_index > base:
                    return True
            return None

        poll("the entry on a follower", entry_on_a_follower, timeout=20, interval=0.0)
        c.kill(lead)
        try:
            fut.result(timeout=30)
            first = "OK"
        except grpc.RpcError as exc:
            first = exc.code().name
    finally:
        ch.close()
    c.start(lead)
    return lead, first


def test_retried_write_after_a_leader_kill_applies_once(tmp_path: Path) -> None:
    """The counter pattern: every round writes ``once/ctr`` once more, so after every round its
    version must have grown by exactly one. The first attempt of each round goes to the leader, which
    is killed once a follower holds the entry (so it commits under the next leader) while the client
    has, most likely, not heard back; the round then reads (linearizably) whether the entry was
    applied, and retries the very same request (same session and seq) through the client."""
    with cluster(tmp_path, tick_ms=50) as c, Client(c.endpoints(), timeout=20) as cl:
        cl.put("once/ctr", b"0")  # opens the session; version 1
        c.quiet()  # a late member-attribute entry on a follower would end a round's wait too early
        version = 1
        duplicates_absorbed = 0
        deadline = time.monotonic() + 120
        rounds = 0
        while rounds < 6 and duplicates_absorbed < 2 and time.monotonic() < deadline:
            rounds += 1
            value = f"{rounds}".encode()
            req = kv_pb2.TxnRequest(header=cl._session.next_header(),
                                    success=[put_op(b"once/ctr", value)])
            _, first = _unknown_outcome_round(c, req)
            seen = cl.get("once/ctr")
            assert seen is not None
            applied_before_retry = seen.value == value
            resp = cl._invoke("kv", "Txn", req, write=True)
            after = cl.get("once/ctr")
            assert after is not None
            version += 1
            assert (after.value, after.version) == (value, version), (
                f"round {rounds}: first attempt {first}, applied before the retry: "
                f"{applied_before_retry}; the retried write was applied {after.version - version + 1} times")
            assert resp.header.revision == after.mod_revision  # the retry answers the one application
            if first != "OK" and applied_before_retry:
                duplicates_absorbed += 1
        assert duplicates_absorbed >= 1, (
            f"in {rounds} rounds no first attempt ended with an unknown outcome after being applied")

        # The control: the same round without a session applies the retry a second time, which is
        # what the counter above would have shown had the session not absorbed the duplicates.
        deadline = time.monotonic() + 60
        doubled = False
        attempt = 0
        while not doubled and attempt < 4 and time.monotonic() < deadline:
            attempt += 1
            base = cl.get("once/ctr")
            assert base is not None
            value = f"control-{attempt}".encode()
            req = kv_pb2.TxnRequest(success=[put_op(b"once/ctr", value)])
            _, first = _unknown_outcome_round(c, req)
            seen = cl.get("once/ctr")
            assert seen is not None
            if first == "OK" or seen.value != value:
                continue  # not the interesting case (acknowledged, or lost): try again
            lead, _ = c.settled()
            ch, kv = c.kv(lead)
            with ch:
                kv.Txn(req, timeout=10)
            after = cl.get("once/ctr")
            assert after is not None and after.version == base.version + 2
            doubled = True
        assert doubled, "no control round had an unknown outcome after being applied"


# ==================================================================================== client flood


@pytest.mark.serial
def test_client_flood_keeps_the_leader(tmp_path: Path) -> None:
    """Two flood processes of 200 clients each, for at most 8 s and 200 requests per client, at the
    default tick (100 ms). Before, during (every 0.5 s) and after, every member's Cluster.Status
    names the same leader in the same term. Each node accepts at most 32 pending proposals, so puts
    beyond that are refused at once with RESOURCE_EXHAUSTED; no request runs into its 30 s deadline."""
    extra = {"*": ["--max-pending-proposals", "32"]}
    with cluster(tmp_path, tick_ms=100, extra=extra) as c:
        lead, term = c.settled()
        lead_id = c.ids[lead]
        fl = flood(c, lead, floods=2, clients=200, requests=200, seconds=8, timeout=90)
        observed = [{n: None if s is None else (s.role, s.term, s.leader_id) for n, s in o.items()}
                    for o in fl.observed]
        counts, details = fl.counts, fl.details

        after = c.statuses(timeout=5)
        for n, s in after.items():
            assert s is not None, f"{n} did not answer Status after the flood"
            assert (s.term, s.leader_id) == (term, lead_id), f"{n} after the flood: {s}"
        changed = [o for o in observed
                   if any(v is not None and (v[1], v[2]) != (term, lead_id) for v in o.values())]
        assert not changed, f"term or leader changed during the flood: {changed[:3]}"
        assert len(observed) >= 4  # the flood lasted a while and Status kept answering

        assert counts.get("put:OK", 0) > 0 and counts.get("get:OK", 0) > 0, counts
        assert counts.get("put:RESOURCE_EXHAUSTED", 0) > 0, counts
        assert all(("overloaded" in d) for d in details if d.startswith("RESOURCE_EXHAUSTED")), details
        codes = {k.split(":", 1)[1] for k in counts}
        assert codes <= {"OK", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}, (counts, details)
        # and the cluster serves normally right after
        with Client(c.endpoints(), timeout=10) as cl:
            assert cl.put("flood/after", b"1").revision > 0
            kv = cl.get("flood/after")
            assert kv is not None and kv.value == b"1"


# ==================================================================================== limits


@pytest.fixture(scope="module")
def limits_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    with cluster(tmp_path_factory.mktemp("limits"), tick_ms=50) as c:
        yield c


def _store(c: ProcCluster, lead: str, prefix: bytes) -> tuple[int, list[bytes]]:
    """The store's revision and the keys under ``prefix`` (a linearizable read on the leader)."""
    ch, kv = c.kv(lead)
    with ch:
        r = kv.Range(kv_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]),
                                         keys_only=True), timeout=10)
    return r.header.revision, [x.key for x in r.kvs]


def test_limits_name_themselves_and_change_nothing(limits_cluster: ProcCluster) -> None:
    c = limits_cluster
    lead = c.leader()
    big3 = [put_op(b"lim/u%d" % i, b"v" * 700_000) for i in range(3)]
    huge3 = [put_op(b"lim/w%d" % i, b"v" * 1_000_000) for i in range(3)]  # over gRPC's 2 MiB + 64 KiB
    big_size = kv_pb2.TxnRequest(success=big3).ByteSize()
    assert 2 * MiB < big_size < 2 * MiB + 64 * KiB  # past gRPC's bound, so the node's own check answers
    with Client(c.endpoints(), timeout=10) as cl:
        cl.put("lim/seed", b"1")  # opens the session
        rev0, keys0 = _store(c, lead, b"lim/")
        assert keys0 == [b"lim/seed"]

        # ---- through the Python client
        client_cases: list[tuple[str, Callable[[], Any], list[str]]] = [
            ("empty key", lambda: cl.put(b"", b"v"), ["key is empty"]),
            ("key over 4 KiB", lambda: cl.put(b"k" * (4 * KiB + 1), b"v"), ["max_key_bytes", "4 KiB"]),
            ("value over 1 MiB", lambda: cl.put("lim/v", b"v" * (MiB + 1)), ["max_value_bytes", "1 MiB"]),
            ("request over 2 MiB",
             lambda: cl.txn(success=[Op.put(f"lim/u{i}", b"v" * 700_000) for i in range(3)]),
             ["request size", "2 MiB"]),
            ("txn over 128 ops", lambda: cl.txn(success=[Op.put(f"lim/t{i}", b"v") for i in range(129)]),
             ["max_txn_ops", "128"]),
            ("txn over 128 compares",
             lambda: cl.txn(compare=[Compare.version(f"lim/c{i}") == 0 for i in range(129)],
                            success=[Op.put("lim/x", b"v")]),
             ["compares", "max_txn_ops", "128"]),
            ("127 good puts and an empty key",
             lambda: cl.txn(success=[*(Op.put(f"lim/h{i}", b"v") for i in range(127)), Op.put(b"", b"v")]),
             ["key is empty"]),
            ("a good put and a value over 1 MiB",
             lambda: cl.txn(success=[Op.put("lim/h0", b"v"), Op.put("lim/h1", b"v" * (MiB + 1))]),
             ["max_value_bytes", "1 MiB"]),
        ]
        for what, fn, words in client_cases:
            with pytest.raises(InvalidArgument) as ei:
                fn()
            msg = str(ei.value)
            assert all(w in msg for w in words), f"{what}: {msg}"
            assert not ei.value.retriable and ei.value.code == "INVALID_ARGUMENT", what
        with pytest.raises(ResourceExhausted) as rx:
            cl.txn(success=[Op.put(f"lim/w{i}", b"v" * 1_000_000) for i in range(3)])
        assert not rx.value.retriable and "larger than max" in str(rx.value), str(rx.value)

        # ---- raw gRPC, no session
        ch, kv = c.kv(lead)
        with ch:
            raw_cases: list[tuple[str, Callable[[], Any], list[str]]] = [
                ("empty key", lambda: kv.Put(kv_pb2.PutRequest(key=b"", value=b"v"), timeout=10),
                 ["put key is empty"]),
                ("empty range key", lambda: kv.Range(kv_pb2.RangeRequest(key=b""), timeout=10),
                 ["range key is empty"]),
                ("key over 4 KiB",
                 lambda: kv.Put(kv_pb2.PutRequest(key=b"k" * (4 * KiB + 1), value=b"v"), timeout=10),
                 ["put key length is 4097", "max_key_bytes = 4096", "4 KiB"]),
                ("value over 1 MiB",
                 lambda: kv.Put(kv_pb2.PutRequest(key=b"lim/v", value=b"v" * (MiB + 1)), timeout=10),
                 ["value length is 1048577", "max_value_bytes = 1048576", "1 MiB"]),
                ("request over 2 MiB", lambda: kv.Txn(kv_pb2.TxnRequest(success=big3), timeout=10),
                 [f"request size is {big_size} bytes", "2 MiB"]),
                ("txn over 128 ops",
                 lambda: kv.Txn(kv_pb2.TxnRequest(
                     success=[put_op(b"lim/t%d" % i, b"v") for i in range(129)]), timeout=10),
                 ["number of txn success ops is 129", "max_txn_ops = 128"]),
                ("failure branch over 128 ops",
                 lambda: kv.Txn(kv_pb2.TxnRequest(
                     failure=[put_op(b"lim/t%d" % i, b"v") for i in range(129)]), timeout=10),
                 ["number of txn failure ops is 129", "max_txn_ops = 128"]),
                ("128 good puts and an oversized key",
                 lambda: kv.Txn(kv_pb2.TxnRequest(success=[
                     *(put_op(b"lim/h%d" % i, b"v") for i in range(127)),
                     put_op(b"k" * (4 * KiB + 1), b"v")]), timeout=10),
                 ["max_key_bytes", "4 KiB"]),
            ]
            for what, fn, words in raw_cases:
                err = rpc_error(fn)
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {err.code()}"
                assert all(w in (err.details() or "") for w in words), f"{what}: {err.details()}"
            err = rpc_error(lambda: kv.Txn(kv_pb2.TxnRequest(success=huge3), timeout=10))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "larger than max" in (err.details() or "") and "2162688" in (err.details() or "")

        # ---- nothing was half-applied: same revision, no new key
        assert _store(c, lead, b"lim/") == (rev0, keys0)
        # and the limits are inclusive: exactly 4 KiB, 1 MiB and 128 ops are accepted
        assert cl.put(b"lim/" + b"k" * (4 * KiB - 4), b"v").revision == rev0 + 1
        assert cl.put("lim/v", b"v" * MiB).revision == rev0 + 2
        assert cl.txn(success=[Op.put(f"lim/t{i}", b"v") for i in range(128)]).succeeded


def test_without_a_leader_requests_are_unavailable(tmp_path: Path) -> None:
    """Stop two of three members: the last one, once it knows there is no leader, refuses writes and
    linearizable reads with UNAVAILABLE (the client gives up at its deadline, saying the write was not
    applied), while a serializable read is still served from its own state."""
    with cluster(tmp_path, tick_ms=50) as c:
        lead, _ = c.settled()
        with Client(c.endpoints(), timeout=10) as cl:
            cl.put("nl/a", b"1")
        survivor = next(n for n in NAMES if n != lead)
        # the survivor applied nl/a (a serializable read sees its own state)
        ch, kv = c.kv(survivor)
        with ch:
            poll("nl/a applied on the survivor",
                 lambda: True if kv.Range(kv_pb2.RangeRequest(key=b"nl/a", serializable=True),
                                          timeout=5).kvs else None, timeout=20)
            for n in NAMES:
                if n != survivor:
                    c.kill(n)

            def no_leader() -> bool | None:
                s = c.status(survivor)
                leaderless = s is not None and s.leader_id == 0 and s.role != cluster_pb2.ROLE_LEADER
                return True if leaderless else None

            poll("the survivor to notice it has no leader", no_leader, timeout=30)
            err = rpc_error(lambda: kv.Put(kv_pb2.PutRequest(key=b"nl/b", value=b"2"), timeout=10))
            assert err.code() == grpc.StatusCode.UNAVAILABLE and "no leader" in (err.details() or ""), \
                err.details()
            err = rpc_error(lambda: kv.Range(kv_pb2.RangeRequest(key=b"nl/a"), timeout=10))
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
            r = kv.Range(kv_pb2.RangeRequest(key=b"nl/a", serializable=True), timeout=10)
            assert [x.value for x in r.kvs] == [b"1"]

        with Client(c.client[survivor], timeout=2.0) as one:
            with pytest.raises(DeadlineExceeded) as ei:
                one.get("nl/a")
            assert isinstance(ei.value.last_error, NotLeader | Unavailable), ei.value
            with pytest.raises(CoterieError) as wi:  # the session cannot even be opened
                one.put("nl/b", b"2")
            werr = wi.value
            assert isinstance(werr, DeadlineExceeded) and werr.retriable, werr
            assert "not applied" in str(werr) and isinstance(werr.last_error, NotLeader | Unavailable)


def test_full_proposal_queue_is_resource_exhausted(tmp_path: Path) -> None:
    """Nodes that accept one pending proposal. With both followers stopped (SIGSTOP) the leader's one
    proposal cannot commit, so the next write is refused at once with RESOURCE_EXHAUSTED, raw and
    through the client (which backs off and retries it until its deadline, then reports it as not
    applied). Election timeouts of 3-6 s keep the leader in place meanwhile (CheckQuorum)."""
    extra = {"*": ["--max-pending-proposals", "1", "--election-ticks", "60"]}
    with cluster(tmp_path, tick_ms=50, extra=extra) as c, Client(c.endpoints(), timeout=10) as cl:
        lead, term = c.settled(timeout=60)
        cl.put("q/warm", b"0")  # opens the session while the queue is free
        # No member-attribute publication may take the one slot behind the test's back (a CI flake).
        base = c.quiet(lead).last_index
        followers = [n for n in NAMES if n != lead]
        ch, kv = c.kv(lead)
        with ch:
            for f in followers:
                c.pause(f)
            try:
                pending = kv.Put.future(kv_pb2.PutRequest(key=b"q/first", value=b"1"), timeout=60)
                poll("the first proposal in the leader's log",
                     lambda: True if (s := c.status(lead)) is not None and s.last_index > base else None,
                     timeout=10)
                err = rpc_error(lambda: kv.Put(kv_pb2.PutRequest(key=b"q/second", value=b"2"), timeout=10))
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
                assert "more than 1 proposals pending" in (err.details() or ""), err.details()
                with pytest.raises(DeadlineExceeded) as ei:
                    cl.put("q/third", b"3", timeout=1.0)
                last = ei.value.last_error
                assert isinstance(last, ResourceExhausted) and last.retriable, ei.value
                assert "overloaded" in str(last) and "not applied" in str(ei.value)
                st = c.status(lead)
                assert st is not None and st.role == cluster_pb2.ROLE_LEADER and st.term == term
            finally:
                for f in followers:
                    c.resume(f)
            assert pending.result(timeout=60).header.revision > 0
        assert cl.get("q/first") is not None
        assert cl.get("q/second") is None and cl.get("q/third") is None
        assert cl.put("q/fourth", b"4").revision > 0
