"""``KV.Batch`` against three real ``coterie node`` processes: each request of a batch keeps the unary
call's meaning. A refused request fails alone with the unary call's error; reads in a batch are
linearizable (also on a follower); writes stay exactly-once when their stream breaks with the leader
killed mid-batch (the client retries them with the same session seq elsewhere)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.client import AsyncClient, InvalidArgument
from coterie.v1 import kv_pb2, kv_pb2_grpc
from coterie.v1.wire import ERROR_DETAIL_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY
from tests.proc_cluster import NAMES, ProcCluster, cluster


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcCluster]:
    with cluster(tmp_path) as c:
        yield c


def test_one_refused_request_fails_alone_as_its_unary_call(procs: ProcCluster) -> None:
    async def run() -> None:
        eps = ",".join(procs.endpoints())
        async with AsyncClient(eps) as c, AsyncClient(eps, batching=False) as unary:
            await asyncio.gather(*(c.put(f"warm/{i}", b"w") for i in range(6)))  # 6 idle sessions
            ch = c._stubs[c._router.pick()].batch
            # a key over 4 KiB and a value over 1 MiB, each beside five good puts
            for name, bad_key, bad_value, messages in (("key", "k" * 4097, b"ok", 1),
                                                       ("value", "b/2", b"x" * (1024 * 1024 + 1), 3)):
                sent = ch.messages_sent
                res = await asyncio.gather(
                    *(c.put(bad_key if i == 2 else f"b/{i}", bad_value if i == 2 else name)
                      for i in range(6)), return_exceptions=True)
                # one message, or (a request near the message bound goes alone) three
                assert ch.messages_sent == sent + messages, name
                err = res[2]
                assert isinstance(err, InvalidArgument), res
                assert all(not isinstance(r, BaseException) for i, r in enumerate(res) if i != 2), res
                with pytest.raises(InvalidArgument) as ei:
                    await unary.put(bad_key, bad_value)
                assert err.code == ei.value.code == "INVALID_ARGUMENT"
                assert err.message == ei.value.message, name
                keys = [kv.key for kv in await c.get_prefix("b/")]
                assert keys == [f"b/{i}".encode() for i in (0, 1, 3, 4, 5)]
                if name == "value":
                    assert await c.get(bad_key) is None
            assert ch.streams_broken == 0
    asyncio.run(run())


def test_reads_in_a_batch_are_linearizable_on_a_follower(procs: ProcCluster) -> None:
    lead = procs.leader()
    follower = next(n for n in NAMES if n != lead)

    async def run() -> None:
        async with AsyncClient(procs.client[lead]) as w, AsyncClient(procs.client[follower]) as r:
            for i in range(20):
                await w.put("lin/k", str(i))  # acknowledged before the reads start
                got = await asyncio.gather(*(r.get("lin/k") for _ in range(16)))
                assert {kv.value if kv else None for kv in got} == {str(i).encode()}
            # the reads went to the follower, batched on its stream
            ch = r._stubs[procs.client[follower]].batch
            assert ch.messages_sent < 20 * 16 / 2
    asyncio.run(run())


def test_batched_writes_stay_exactly_once_across_a_leader_kill(procs: ProcCluster) -> None:
    lead = procs.leader()

    async def run() -> None:
        async with AsyncClient(",".join(procs.endpoints()), timeout=30) as c:
            await c.put("eo/warm", b"x")
            assert c._router.leader == procs.client[lead]
            done = 0
            killed = asyncio.Event()

            async def writer(t: int) -> None:
                nonlocal done
                for i in range(12):
                    await c.put(f"eo/{t:02d}/{i:02d}", b"v")
                    done += 1
                    if done == 100:
                        killed.set()

            tasks = [asyncio.ensure_future(writer(t)) for t in range(24)]
            await asyncio.wait_for(killed.wait(), 60)
            procs.kill(lead)  # mid-batch: writes in flight on the leader's stream
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            kvs = await c.get_prefix("eo/")
            assert len(kvs) == 24 * 12 + 1
            twice = [kv.key for kv in kvs if kv.version != 1]
            assert not twice, f"applied more than once: {twice}"
            assert c._stubs[procs.client[lead]].batch.streams_broken >= 1
            assert c._router.leader != procs.client[lead]
    asyncio.run(run())


def test_raw_batch_answers_each_request_as_its_unary_call(procs: ProcCluster) -> None:
    """On the wire: one message with good and bad requests, to the leader and to a follower. Every
    request gets one answer by id; a refused one carries the unary call's status code, details,
    ErrorDetail and leader hint; the stream goes on."""
    lead = procs.leader()
    procs.quiet(lead)  # every client address published: the leader hint cannot change in between
    follower = next(n for n in NAMES if n != lead)

    def items() -> list[kv_pb2.BatchRequest.Item]:
        return [
            kv_pb2.BatchRequest.Item(id=1, put=kv_pb2.PutRequest(key=b"raw/a", value=b"1")),
            kv_pb2.BatchRequest.Item(id=2, put=kv_pb2.PutRequest(key=b"", value=b"1")),
            kv_pb2.BatchRequest.Item(id=3, range=kv_pb2.RangeRequest(key=b"raw/a")),
            kv_pb2.BatchRequest.Item(id=4, range=kv_pb2.RangeRequest(key=b"raw/a", revision=10**9)),
            kv_pb2.BatchRequest.Item(id=5, txn=kv_pb2.TxnRequest(success=[kv_pb2.RequestOp(
                request_put=kv_pb2.PutRequest(key=b"raw/t", value=b"2"))])),
            kv_pb2.BatchRequest.Item(id=6),
        ]

    def unary(stub: kv_pb2_grpc.KVStub, item: kv_pb2.BatchRequest.Item) -> grpc.RpcError | None:
        which = item.WhichOneof("request")
        method = {"put": stub.Put, "range": stub.Range, "txn": stub.Txn}[str(which)]
        try:
            method(getattr(item, str(which)), timeout=5)
        except grpc.RpcError as exc:
            return exc
        return None

    for name in (lead, follower):
        ch, stub = procs.kv(name)
        with ch:
            answers: dict[int, kv_pb2.BatchResponse.Item] = {}
            for resp in stub.Batch(iter([kv_pb2.BatchRequest(items=items())]), timeout=10):
                for it in resp.items:
                    assert it.id not in answers
                    answers[it.id] = it
            assert sorted(answers) == [1, 2, 3, 4, 5, 6]
            assert answers[6].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            for item in items()[:5]:
                got = answers[item.id]
                exc = unary(stub, item)
                if exc is None:
                    assert got.WhichOneof("response") == item.WhichOneof("request"), (name, item.id)
                    continue
                assert got.WhichOneof("response") == "error", (name, item.id)
                err = got.error
                md = dict(exc.trailing_metadata() or ())
                # (the unary calls ran after the batch: a current revision in the answer may differ)
                assert err.code == exc.code().value[0], (name, item.id)
                assert re.sub(r"\d+", "N", err.message) == re.sub(r"\d+", "N", exc.details())
                assert bool(err.detail) == (ERROR_DETAIL_KEY in md), (name, item.id)
                mine, theirs = kv_pb2.ErrorDetail(), kv_pb2.ErrorDetail()
                mine.ParseFromString(err.detail)
                theirs.ParseFromString(md.get(ERROR_DETAIL_KEY, b""))
                mine.current_revision = theirs.current_revision = 0
                mine.message = re.sub(r"\d+", "N", mine.message)
                theirs.message = re.sub(r"\d+", "N", theirs.message)
                assert mine == theirs, (name, item.id)
                assert err.leader_id == int(md.get(LEADER_ID_KEY, 0))
                assert err.leader_addr == md.get(LEADER_ADDR_KEY, "")
            if name == follower:  # writes are refused with the leader hint, reads are served
                assert answers[1].error.leader_id == procs.ids[lead]
                assert answers[1].error.leader_addr == procs.client[lead]
                assert answers[3].range.kvs[0].value == b"1"
