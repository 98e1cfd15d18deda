"""The client gRPC services over a real ``grpc.aio`` server on 127.0.0.1 and real drivers (WAL on
disk, fast ticks): a single-node cluster for the KV / Session / Cluster calls and their error
statuses, and a three-node cluster (in-memory Raft transport) for follower behaviour.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.node.raft import ConfState, Message, RaftConfig, RawNode, Role
from coterie.node.server.config import DriverConfig
from coterie.node.server.driver import Driver
from coterie.node.server.info import MemberInfo, NodeInfo
from coterie.node.server.services import MAX_RECEIVE_MESSAGE_LENGTH, add_services
from coterie.node.statemachine import StateMachine
from coterie.node.storage import DiskStorage
from coterie.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc
from coterie.v1.wire import ERROR_DETAIL_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY
from tests.test_driver import Cluster

T = 5.0  # per-call timeout, seconds
SC = grpc.StatusCode


class _NoPeers:
    def send(self, messages: Sequence[Message]) -> None:
        pass


async def _serve(driver: Driver, info: NodeInfo) -> tuple[Any, int]:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_LENGTH)])
    add_services(server, driver, info)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Stubs:
    def __init__(self, channel: Any) -> None:
        self.kv = kv_pb2_grpc.KVStub(channel)
        self.session = kv_pb2_grpc.SessionStub(channel)
        self.cluster = cluster_pb2_grpc.ClusterStub(channel)


@asynccontextmanager
async def single_node(tmp_path: Path) -> AsyncIterator[tuple[Driver, Stubs]]:
    store = DiskStorage.open(tmp_path / "n1")
    st = store.initial_state()
    raw = RawNode(RaftConfig(id=1), random.Random(1), hard_state=st.hard_state, snapshot=st.snapshot,
                  entries=st.entries, conf_state=ConfState((1,)))
    driver = Driver(raw, store, StateMachine(), _NoPeers(), DriverConfig(tick_interval=0.01))
    task = asyncio.create_task(driver.run())
    info = NodeInfo(1, "n1", "test-cluster", client_addr="", peer_addr="")
    server, port = await _serve(driver, info)
    info.client_addr = f"127.0.0.1:{port}"
    try:
        await _until(lambda: driver.role == Role.LEADER)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield driver, Stubs(channel)
    finally:
        await server.stop(None)
        driver.stop()
        await asyncio.wait_for(task, T)
        store.close()


async def expect_error(call: Awaitable[Any], code: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as ei:
        await call
    err = ei.value
    assert err.code() == code, (err.code(), err.details())
    return err


def detail_of(err: Any) -> kv_pb2.ErrorDetail:
    md = err.trailing_metadata()
    raw = md.get(ERROR_DETAIL_KEY) if md is not None else None
    assert raw is not None, f"no {ERROR_DETAIL_KEY} in {md!r}"
    detail: kv_pb2.ErrorDetail = kv_pb2.ErrorDetail.FromString(raw)
    return detail


def _put(key: bytes, value: bytes, **kw: Any) -> kv_pb2.PutRequest:
    return kv_pb2.PutRequest(key=key, value=value, **kw)


def test_kv_reads_writes_and_txn(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (driver, s):
            kv = s.kv
            r1 = await kv.Put(_put(b"a/1", b"one"), timeout=T)
            assert r1.header.cluster_id == "test-cluster" and r1.header.member_id == 1
            assert r1.header.raft_term >= 1 and r1.header.revision == 2
            for i in range(2, 6):
                await kv.Put(_put(f"a/{i}".encode(), f"v{i}".encode()), timeout=T)
            await kv.Put(_put(b"b", b"other"), timeout=T)
            r = await kv.Range(kv_pb2.RangeRequest(key=b"a/1"), timeout=T)
            assert [(x.key, x.value, x.version) for x in r.kvs] == [(b"a/1", b"one", 1)]
            assert r.header.revision == 7

            # Prefix with limit; count_only; keys_only; serializable (local, no barrier).
            r = await kv.Range(kv_pb2.RangeRequest(key=b"a/", range_end=b"a0", limit=2), timeout=T)
            assert [x.key for x in r.kvs] == [b"a/1", b"a/2"] and r.more and r.count == 5
            r = await kv.Range(kv_pb2.RangeRequest(key=b"a/", range_end=b"a0", count_only=True), timeout=T)
            assert r.count == 5 and not r.kvs
            r = await kv.Range(kv_pb2.RangeRequest(key=b"a/", range_end=b"a0", keys_only=True), timeout=T)
            assert len(r.kvs) == 5 and all(x.value == b"" for x in r.kvs)
            r = await kv.Range(kv_pb2.RangeRequest(key=b"b", serializable=True), timeout=T)
            assert r.kvs[0].value == b"other"

            # Overwrite, then read the old version at its revision.
            r2 = await kv.Put(_put(b"a/1", b"uno", prev_kv=True), timeout=T)
            assert r2.prev_kv.value == b"one"
            old = await kv.Range(kv_pb2.RangeRequest(key=b"a/1", revision=r1.header.revision), timeout=T)
            assert old.kvs[0].value == b"one"

            # Delete a range.
            d = await kv.DeleteRange(
                kv_pb2.DeleteRangeRequest(key=b"a/4", range_end=b"a/6", prev_kv=True), timeout=T)
            assert d.deleted == 2 and sorted(x.key for x in d.prev_kvs) == [b"a/4", b"a/5"]
            r = await kv.Range(kv_pb2.RangeRequest(key=b"a/", range_end=b"a0", count_only=True), timeout=T)
            assert r.count == 3

            # Compare-and-swap: succeeds on the right value, fails (and runs `failure`) on a stale one.
            def cas(expect: bytes, new: bytes) -> kv_pb2.TxnRequest:
                return kv_pb2.TxnRequest(
                    compare=[kv_pb2.Compare(key=b"b", target=kv_pb2.Compare.VALUE,
                                            result=kv_pb2.Compare.EQUAL, value=expect)],
                    success=[kv_pb2.RequestOp(request_put=_put(b"b", new))],
                    failure=[kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=b"b"))],
                )

            t = await kv.Txn(cas(b"other", b"swapped"), timeout=T)
            assert t.succeeded and t.responses[0].WhichOneof("response") == "response_put"
            t = await kv.Txn(cas(b"other", b"again"), timeout=T)
            assert not t.succeeded
            assert t.responses[0].response_range.kvs[0].value == b"swapped"
            # A read-only txn is served without a log entry.
            applied = driver.sm.applied_index
            t = await kv.Txn(kv_pb2.TxnRequest(
                success=[kv_pb2.RequestOp(request_range=kv_pb2.RangeRequest(key=b"b"))]), timeout=T)
            assert t.succeeded and t.responses[0].response_range.kvs[0].value == b"swapped"
            assert driver.sm.applied_index == applied

            # Compact, then a read below the compaction point is OUT_OF_RANGE; so is a future one.
            rev = (await kv.Range(kv_pb2.RangeRequest(key=b"b"), timeout=T)).header.revision
            await kv.Compact(kv_pb2.CompactionRequest(revision=rev), timeout=T)
            err = await expect_error(kv.Range(kv_pb2.RangeRequest(key=b"a/1", revision=2), timeout=T),
                                     SC.OUT_OF_RANGE)
            assert "2" in err.details() and str(rev) in err.details()
            det = detail_of(err)
            assert (det.requested_revision, det.compact_revision) == (2, rev)
            err = await expect_error(
                kv.Range(kv_pb2.RangeRequest(key=b"a/1", revision=rev + 100), timeout=T), SC.OUT_OF_RANGE)
            assert str(rev + 100) in err.details()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_invalid_arguments(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (driver, s):
            await s.kv.Put(_put(b"warm", b"up"), timeout=T)  # the leader's first entries are behind us
            last_index = driver.status().last_index
            err = await expect_error(s.kv.Put(_put(b"k" * 5000, b"v"), timeout=T), SC.INVALID_ARGUMENT)
            assert "4 KiB" in err.details() and "max_key_bytes" in err.details()
            det = detail_of(err)
            assert (det.limit, det.actual, det.maximum) == ("max_key_bytes", 5000, 4096)
            err = await expect_error(s.kv.Put(_put(b"k", b"v" * (1024 * 1024 + 1)), timeout=T),
                                     SC.INVALID_ARGUMENT)
            assert "1 MiB" in err.details() and "max_value_bytes" in err.details()
            err = await expect_error(s.kv.Put(_put(b"", b"v"), timeout=T), SC.INVALID_ARGUMENT)
            assert "empty" in err.details()
            await expect_error(s.kv.Range(kv_pb2.RangeRequest(key=b""), timeout=T), SC.INVALID_ARGUMENT)
            err = await expect_error(s.kv.Range(kv_pb2.RangeRequest(key=b"x", limit=-1), timeout=T),
                                     SC.INVALID_ARGUMENT)
            assert "limit" in err.details()
            # A txn op without its oneof set is rejected by the codec, before the log.
            await expect_error(s.kv.Txn(kv_pb2.TxnRequest(success=[kv_pb2.RequestOp()]), timeout=T),
                               SC.INVALID_ARGUMENT)
            # A txn whose 2nd op is bad, and one with a duplicate put.
            bad = kv_pb2.RequestOp(request_put=_put(b"", b"v"))
            good = kv_pb2.RequestOp(request_put=_put(b"t", b"v"))
            await expect_error(s.kv.Txn(kv_pb2.TxnRequest(success=[good, bad]), timeout=T),
                               SC.INVALID_ARGUMENT)
            err = await expect_error(s.kv.Txn(kv_pb2.TxnRequest(success=[good, good]), timeout=T),
                                     SC.INVALID_ARGUMENT)
            assert "duplicate key" in err.details()
            # Nothing was written by any of these, and none of them took a log entry (they are
            # refused before the proposal).
            r = await s.kv.Range(kv_pb2.RangeRequest(key=b"\0", range_end=b"\0", count_only=True), timeout=T)
            assert r.count == 1 and r.header.revision == 2
            assert driver.status().last_index == last_index

    asyncio.run(asyncio.wait_for(main(), 30))


def test_session_exactly_once_and_status(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (driver, s):
            opened = await s.session.Open(kv_pb2.SessionOpenRequest(), timeout=T)
            sid = opened.session_id
            assert sid > 0 and opened.ttl_ms == driver.sm.sessions.ttl
            hdr = kv_pb2.RequestHeader(session_id=sid, seq=1)
            a = await s.kv.Put(_put(b"once", b"x", header=hdr), timeout=T)
            b = await s.kv.Put(_put(b"once", b"x", header=hdr), timeout=T)  # a retry: same answer
            assert a.header.revision == b.header.revision
            r = await s.kv.Range(kv_pb2.RangeRequest(key=b"once"), timeout=T)
            assert r.kvs[0].version == 1 and r.header.revision == a.header.revision
            # seq 2 applies; going back to seq 1 is then stale.
            await s.kv.Put(_put(b"once", b"y", header=kv_pb2.RequestHeader(session_id=sid, seq=2)), timeout=T)
            err = await expect_error(s.kv.Put(_put(b"once", b"z", header=hdr), timeout=T),
                                     SC.FAILED_PRECONDITION)
            assert detail_of(err).latest_seq == 2
            ka = await s.session.KeepAlive(kv_pb2.SessionKeepAliveRequest(session_id=sid), timeout=T)
            assert ka.session_id == sid and ka.ttl_ms > 0
            await s.session.Close(kv_pb2.SessionCloseRequest(session_id=sid), timeout=T)
            err = await expect_error(
                s.kv.Put(_put(b"once", b"w", header=kv_pb2.RequestHeader(session_id=sid, seq=3)), timeout=T),
                SC.NOT_FOUND)
            assert detail_of(err).session_id == sid
            # A header with a seq but no session is malformed.
            await expect_error(s.kv.Put(_put(b"k", b"v", header=kv_pb2.RequestHeader(seq=1)), timeout=T),
                               SC.INVALID_ARGUMENT)

            st = await s.cluster.Status(cluster_pb2.StatusRequest(), timeout=T)
            assert (st.member_id, st.name, st.role, st.leader_id) == (1, "n1", cluster_pb2.ROLE_LEADER, 1)
            assert st.term >= 1 and st.applied_index == st.commit_index == driver.sm.applied_index
            assert st.last_index >= st.commit_index >= st.first_index - 1
            assert [p.id for p in st.progress] == [1]
            assert st.progress[0].match == st.last_index
            assert st.header.revision == driver.sm.revision
            ml = await s.cluster.MemberList(cluster_pb2.MemberListRequest(linearizable=True), timeout=T)
            assert [(m.id, m.name, m.is_learner) for m in ml.members] == [(1, "n1", False)]
            assert ml.members[0].client_addr.startswith("127.0.0.1:")
            # Membership changes are served (tests/test_membership.py); a request without an
            # address is malformed.
            err = await expect_error(s.cluster.MemberAdd(cluster_pb2.MemberAddRequest(), timeout=T),
                                     SC.INVALID_ARGUMENT)
            assert "peer_addr" in err.details()
            tl = await s.cluster.TransferLeader(cluster_pb2.TransferLeaderRequest(target=1), timeout=T)
            assert tl.leader_id == 1
            await expect_error(
                s.cluster.TransferLeader(cluster_pb2.TransferLeaderRequest(target=9), timeout=T),
                SC.INVALID_ARGUMENT)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_follower_redirects_writes_and_serves_reads(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path)
        ids = (1, 2, 3)
        drivers = {i: c.start(i) for i in ids}
        servers: dict[int, tuple[Any, int]] = {}
        infos = {i: NodeInfo(i, f"n{i}", "three") for i in ids}
        try:
            for i in ids:
                servers[i] = await _serve(drivers[i], infos[i])
            book = {i: MemberInfo(i, f"n{i}", client_addr=f"127.0.0.1:{servers[i][1]}") for i in ids}
            for info in infos.values():
                info.members.update(book)
            leader = await c.leader()
            lid = leader.raw.id
            fid = next(i for i in ids if i != lid)
            await _until(lambda: drivers[fid].leader == lid)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{servers[lid][1]}") as ch:
                await kv_pb2_grpc.KVStub(ch).Put(_put(b"k", b"v"), timeout=T)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{servers[fid][1]}") as ch:
                kv = kv_pb2_grpc.KVStub(ch)
                err = await expect_error(kv.Put(_put(b"k", b"w"), timeout=T), SC.UNAVAILABLE)
                md = err.trailing_metadata()
                assert md.get(LEADER_ID_KEY) == str(lid)
                assert md.get(LEADER_ADDR_KEY) == f"127.0.0.1:{servers[lid][1]}"
                assert str(lid) in err.details()
                # A linearizable read on the follower sees the leader's write (ReadIndex).
                r = await kv.Range(kv_pb2.RangeRequest(key=b"k"), timeout=T)
                assert r.kvs[0].value == b"v" and r.header.member_id == fid
                # Transfer is a leader-only admin call: FAILED_PRECONDITION naming the leader.
                cl = cluster_pb2_grpc.ClusterStub(ch)
                err = await expect_error(
                    cl.TransferLeader(cluster_pb2.TransferLeaderRequest(target=fid), timeout=T),
                    SC.FAILED_PRECONDITION)
                assert err.trailing_metadata().get(LEADER_ID_KEY) == str(lid)
                st = await cl.Status(cluster_pb2.StatusRequest(), timeout=T)
                assert st.role == cluster_pb2.ROLE_FOLLOWER and st.leader_id == lid and not st.progress
            async with grpc.aio.insecure_channel(f"127.0.0.1:{servers[lid][1]}") as ch:
                cl = cluster_pb2_grpc.ClusterStub(ch)
                st = await cl.Status(cluster_pb2.StatusRequest(), timeout=T)
                assert [p.id for p in st.progress] == [1, 2, 3]
                ml = await cl.MemberList(cluster_pb2.MemberListRequest(), timeout=T)
                assert [m.client_addr for m in ml.members] == [book[i].client_addr for i in ids]
                # Hand leadership to the follower; the call returns once it leads.
                tl = await cl.TransferLeader(cluster_pb2.TransferLeaderRequest(target=fid), timeout=T)
                assert tl.leader_id == fid
                await _until(lambda: drivers[fid].role == Role.LEADER)
        finally:
            for srv, _port in servers.values():
                await srv.stop(None)
            for i in ids:
                await asyncio.wait_for(c.stop(i), T)

    asyncio.run(asyncio.wait_for(main(), 40))
