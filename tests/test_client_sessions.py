"""The client's pool of exactly-once sessions (``client/_sessions.py`` :class:`SessionPool`), in memory and
against three real ``coterie node`` processes (``tests/proc_cluster.py``).

- The pool's bookkeeping: the bound, last-in first-out reuse, stale idle sessions dropped, seq never
  reused after an unknown outcome, close.
- Many threads sharing one :class:`Client` and many tasks sharing one :class:`AsyncClient` all write
  successfully and their writes are in flight at the same time in different sessions: with every
  member stopped (SIGSTOP) the writes pile up, one session each, up to ``max_sessions``, the rest wait.
- A write whose first attempt cannot be acknowledged (the leader hears no follower, so it cannot
  commit, while both followers hold the entry, which the next leader therefore commits) is retried by
  the client with the same seq and applied once, while other writers share the client.
- ``close()`` closes every session: the cluster then refuses them as unknown.

Every cluster is bounded in time and reaped (``proc_cluster.cluster``); nothing asserts timings or
throughput.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.client import AsyncClient, Client, CoterieError
from coterie.client._router import Router
from coterie.client._sessions import SessionPool
from coterie.client.errors import NotLeader, OutcomeUnknown
from coterie.v1 import cluster_pb2, faults_pb2, faults_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.proc_cluster import NAMES, ProcCluster, cluster, poll

# ==================================================================================== in memory


class _Opened:
    def __init__(self, sid: int, ttl_ms: int = 60_000) -> None:
        self.session_id, self.ttl_ms = sid, ttl_ms


def test_pool_bound_lifo_and_close() -> None:
    pool = SessionPool(2)
    a = pool.take(0.0)
    b = pool.take(0.0)
    assert a is not None and b is not None and a.session_id == 0 == b.session_id  # to be opened
    assert pool.take(0.0) is None  # the bound: the third write waits
    pool.opened_session(a, _Opened(10), 0.0)
    pool.opened_session(b, _Opened(11), 0.0)
    assert (pool.in_use, pool.live, pool.peak_in_use, pool.opened) == (2, 2, 2, 2)
    pool.give_back(a, acknowledged_at=1.0)
    pool.give_back(b, acknowledged_at=2.0)
    assert pool.take(3.0) is b  # the most recently used first
    pool.retire(b)  # e.g. expired on the cluster: frees a slot
    assert pool.live == 1 and b.session_id == 0
    c = pool.take(3.0)
    assert c is a
    d = pool.take(3.0)
    assert d is not None and d.session_id == 0  # a new slot in place of the retired one
    pool.retire(d)  # could not be opened
    assert sorted(pool.close()) == [10]  # taken sessions are closed too
    pool.give_back(a)
    assert pool.idle == [] and pool.in_use == 0
    with pytest.raises(CoterieError, match="closed"):
        pool.take(4.0)
    with pytest.raises(ValueError):
        SessionPool(0)


def test_pool_drops_stale_idle_sessions_and_never_reuses_a_seq() -> None:
    pool = SessionPool(4)
    s = pool.take(0.0)
    assert s is not None
    pool.opened_session(s, _Opened(7, ttl_ms=10_000), 0.0)
    first = s.next_header()
    pool.give_back(s)  # the outcome is unknown: no acknowledgement, the seq stays used
    again = pool.take(1.0)
    assert again is s and s.next_header().seq == first.seq + 1
    pool.give_back(s, acknowledged_at=1.0)
    # idle for more than half the TTL: it may have expired on the cluster, so it is not used again
    fresh = pool.take(1.0 + 5.1)
    assert fresh is not None and fresh is not s and fresh.session_id == 0 and pool.live == 1


def test_a_leader_hint_closes_the_leaders_breaker() -> None:
    """Many writes share one client, hence one router: a few attempts timing out on a busy leader
    open its breaker, but a follower's redirect to it must close it again, or every write would bounce
    between followers until the cool-down."""
    eps = ["h1:1", "h2:1", "h3:1"]
    r = Router(eps, threshold=3, cooldown=60.0)
    r.ids = {1: "h1:1", 2: "h2:1", 3: "h3:1"}
    r.leader = "h1:1"
    for _ in range(3):
        r.failure("h1:1", OutcomeUnknown("attempt timed out", retriable=True))
    assert r.pick() != "h1:1"  # the breaker is open
    assert r.failure("h2:1", NotLeader("not the leader", leader_id=1))  # a redirect
    assert r.pick() == "h1:1"


# ==================================================================================== real nodes


@pytest.fixture(scope="module")
def procs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    with cluster(tmp_path_factory.mktemp("sessions"), tick_ms=50,
                 extra={"*": ["--enable-fault-injection"]}) as c:
        yield c


def _pause_all(c: ProcCluster) -> None:
    for n in NAMES:
        c.pause(n)


def _resume_all(c: ProcCluster) -> None:
    for n in NAMES:
        if n in c.paused:
            c.resume(n)


def test_threads_share_one_client(procs: ProcCluster) -> None:
    procs.settled()
    threads_n, per_thread = 12, 15
    errors: list[BaseException] = []
    with Client(procs.endpoints(), timeout=30, max_sessions=8) as cl:
        start = threading.Barrier(threads_n)

        def writer(t: int) -> None:
            try:
                start.wait(30)
                for i in range(per_thread):
                    cl.put(f"thr/{t:02d}/{i:02d}", f"{t}-{i}")
            except BaseException as exc:
                errors.append(exc)

        ts = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(threads_n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert not any(t.is_alive() for t in ts) and not errors, errors
        kvs = cl.get_prefix("thr/")
        assert len(kvs) == threads_n * per_thread
        for kv in kvs:
            _, tn, i = kv.key.decode().split("/")
            assert (kv.value, kv.version) == (f"{int(tn)}-{int(i)}".encode(), 1), kv
        pool = cl._pool
        assert 1 < pool.peak_in_use <= 8 and pool.opened <= 8 and pool.in_use == 0


def test_sync_writes_overlap_up_to_the_bound(procs: ProcCluster) -> None:
    """With every member stopped nothing completes, so the writes are all in flight together: four
    in four sessions (max_sessions), two waiting for one. Resumed, all six succeed."""
    procs.settled()
    results: list[Any] = []
    with Client(procs.endpoints(), timeout=60, max_sessions=4) as cl:
        cl.put("ovl/warm", b"0")
        _pause_all(procs)
        try:
            ts = [threading.Thread(target=lambda i=i: results.append(cl.put(f"ovl/{i}", str(i))), daemon=True)
                  for i in range(6)]
            for t in ts:
                t.start()
            poll("4 writes in flight and 2 waiting",
                 lambda: True if (cl._pool.in_use, cl._pool.waiting) == (4, 2) else None, timeout=30)
            assert cl._pool.live == 4
        finally:
            _resume_all(procs)
        for t in ts:
            t.join(90)
        assert len(results) == 6
        assert [kv.version for kv in cl.get_prefix("ovl/")] == [1] * 7
        assert cl._pool.peak_in_use == 4 and cl._pool.opened == 4


def test_tasks_share_one_async_client(procs: ProcCluster) -> None:
    procs.settled()

    async def run() -> None:
        async with AsyncClient(procs.endpoints(), timeout=60, max_sessions=4) as ac:
            await ac.put("aio-ovl/warm", b"0")
            # many tasks, many writes each: all succeed, in more than one session
            await asyncio.gather(*(ac.put(f"aio-many/{t:02d}/{i}", b"x")
                                   for t in range(24) for i in range(5)))
            kvs = await ac.get_prefix("aio-many/")
            assert len(kvs) == 120 and all(kv.version == 1 for kv in kvs)
            assert 1 < ac._pool.peak_in_use <= 4
            # deterministic overlap: with every member stopped, 4 in flight and 2 waiting
            _pause_all(procs)
            try:
                tasks = [asyncio.create_task(ac.put(f"aio-ovl/{i}", str(i))) for i in range(6)]
                end = time.monotonic() + 30
                while (ac._pool.in_use, ac._pool.waiting) != (4, 2):
                    assert time.monotonic() < end, (ac._pool.in_use, ac._pool.waiting)
                    await asyncio.sleep(0.02)
                # Cancel a write in flight (its outcome is unknown: its session goes back to the
                # pool and the next write in it carries a higher seq) and a waiting one.
                tasks[0].cancel()
                tasks[5].cancel()
                while (ac._pool.in_use, ac._pool.waiting) != (4, 0):  # a waiter took the session
                    assert time.monotonic() < end, (ac._pool.in_use, ac._pool.waiting)
                    await asyncio.sleep(0.02)
            finally:
                _resume_all(procs)
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(done[0], asyncio.CancelledError) and isinstance(done[5], asyncio.CancelledError)
            assert all(not isinstance(r, BaseException) for r in done[1:5]), done
            by_key = {kv.key: kv for kv in await ac.get_prefix("aio-ovl/")}
            assert all(kv.version == 1 for kv in by_key.values())
            assert {b"aio-ovl/warm", *(f"aio-ovl/{i}".encode() for i in range(1, 5))} <= set(by_key)
            assert b"aio-ovl/5" not in by_key  # cancelled before it had a session
            assert ac._pool.peak_in_use == 4 and ac._pool.live == 4 and ac._pool.in_use == 0

    asyncio.run(asyncio.wait_for(run(), 180))


def _set_faults(c: ProcCluster, name: str, state: faults_pb2.FaultState) -> None:
    with grpc.insecure_channel(c.client[name]) as ch:
        faults_pb2_grpc.FaultInjectionStub(ch).SetFaults(state, timeout=10)


def test_retried_write_after_unknown_outcome_applies_once(procs: ProcCluster) -> None:
    """The leader stops hearing its followers (one-way cut), so it cannot commit the write it is
    sent, while both followers append it. The attempt cannot succeed there (the leader steps down,
    CheckQuorum), and the next leader, which holds the entry, commits it: the write is applied, and
    the client's retry of it with the same seq must not apply it a second time. Meanwhile four other
    threads write through the same client (in other sessions of the pool), each write once."""
    lead, _ = procs.settled()
    followers = [n for n in NAMES if n != lead]
    with Client(procs.endpoints(), timeout=30, max_sessions=8) as cl:
        cl.put("uo/ctr", b"0")
        before = cl.get("uo/ctr")
        assert before is not None
        st = procs.status(lead)
        assert st is not None
        base = st.last_index
        _set_faults(procs, lead, faults_pb2.FaultState(blocked_in=[procs.ids[f] for f in followers]))
        healed = False
        try:
            out: list[Any] = []
            errs: list[BaseException] = []

            def do(fn: Any) -> None:
                try:
                    out.append(fn())
                except BaseException as exc:
                    errs.append(exc)

            mine: list[Any] = []
            main = threading.Thread(target=do, args=(lambda: mine.append(cl.put("uo/ctr", b"1")),),
                                    daemon=True)
            main.start()

            def on_both_followers() -> bool | None:
                sts = [procs.status(f, timeout=0.5) for f in followers]
                return True if all(s is not None and s.last_index > base for s in sts) else None

            poll("the write on both followers", on_both_followers, timeout=20, interval=0.0)
            others = [threading.Thread(target=do, args=(lambda t=t: [cl.put(f"uo/other/{t}/{i}", b"x")
                                                                      for i in range(5)],), daemon=True)
                      for t in range(4)]
            for t in others:
                t.start()
            # the old leader steps down, a follower holding the entry takes over; heal the cut then
            poll("a new leader", lambda: next((n for n in followers if (s := procs.status(n)) is not None
                                               and s.role == cluster_pb2.ROLE_LEADER), None), timeout=30)
            _set_faults(procs, lead, faults_pb2.FaultState())
            healed = True
            main.join(60)
            for t in others:
                t.join(60)
            assert not errs, errs
        finally:
            if not healed:
                _set_faults(procs, lead, faults_pb2.FaultState())
        after = cl.get("uo/ctr")
        assert after is not None and after.value == b"1"
        assert after.version == before.version + 1, (
            f"the write was applied {after.version - before.version} times")
        # the retry answers with the one application
        assert len(mine) == 1 and mine[0].revision == after.mod_revision
        others_kv = cl.get_prefix("uo/other/")
        assert len(others_kv) == 20 and all(kv.version == 1 for kv in others_kv)
        assert cl._pool.opened > 1


def test_close_closes_every_session(procs: ProcCluster) -> None:
    procs.settled()
    cl = Client(procs.endpoints(), timeout=30, max_sessions=6)
    try:
        _pause_all(procs)
        try:
            ts = [threading.Thread(target=cl.put, args=(f"cls/{i}", b"x"), daemon=True) for i in range(6)]
            for t in ts:
                t.start()
            poll("6 writes in flight", lambda: True if cl._pool.in_use == 6 else None, timeout=30)
        finally:
            _resume_all(procs)
        for t in ts:
            t.join(60)
        assert cl._pool.opened == 6
        ids = [s.session_id for s in cl._pool.idle]
        assert len(set(ids)) == 6 and all(ids)
        seqs = {s.session_id: s.seq for s in cl._pool.idle}
    finally:
        cl.close()
    assert cl._pool.idle == []
    assert_sessions_closed(procs, seqs, b"cls/after")


def assert_sessions_closed(procs: ProcCluster, seqs: dict[int, int], key: bytes) -> None:
    """A raw Put on the leader in each session (its next seq) is refused NOT_FOUND (SessionExpired):
    the cluster no longer knows the session."""
    lead, _ = procs.settled()
    ch, kv = procs.kv(lead)
    with ch:
        for sid, seq in seqs.items():
            req = kv_pb2.PutRequest(key=key, value=b"y",
                                    header=kv_pb2.RequestHeader(session_id=sid, seq=seq + 1))
            with pytest.raises(grpc.RpcError) as ei:
                kv.Put(req, timeout=10)
            assert ei.value.code() == grpc.StatusCode.NOT_FOUND, ei.value.details()


def test_async_close_closes_every_session(procs: ProcCluster) -> None:
    procs.settled()

    async def run() -> dict[int, int]:
        ac = AsyncClient(procs.endpoints(), timeout=30, max_sessions=3)
        try:
            await asyncio.gather(*(ac.put(f"acls/{i}", b"x") for i in range(30)))
            ids = [s.session_id for s in ac._pool.idle]
            assert len(ids) > 1 and all(ids)
            return {s.session_id: s.seq for s in ac._pool.idle}
        finally:
            await ac.close()

    seqs = asyncio.run(asyncio.wait_for(run(), 120))
    assert_sessions_closed(procs, seqs, b"acls/after")



def test_a_session_the_cluster_forgot_is_replaced(procs: ProcCluster) -> None:
    """An idle session that expired or was closed behind the client's back (here: closed with a raw
    Session.Close) costs the next write nothing but a retry in a new session, applied once."""
    procs.settled()
    with Client(procs.endpoints(), timeout=30, max_sessions=2) as cl:
        cl.put("gone/a", b"1")
        sid = cl._session.session_id
        assert sid and cl._pool.opened == 1
        lead, _ = procs.settled()
        with grpc.insecure_channel(procs.client[lead]) as ch:
            kv_pb2_grpc.SessionStub(ch).Close(kv_pb2.SessionCloseRequest(session_id=sid), timeout=10)
        cl.put("gone/a", b"2")
        assert cl._pool.opened == 2 and cl._session.session_id not in (0, sid) and cl._pool.live == 1
        kv = cl.get("gone/a")
        assert kv is not None and (kv.value, kv.version) == (b"2", 2)
