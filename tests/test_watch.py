"""``KV.Watch`` over a real ``grpc.aio`` server and a single-node driver (see tests/test_services.py):
live events in order with prev_kv, history replay, several watches per stream, cancel, compaction,
and delivery under concurrent writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc  # type: ignore[import-untyped]

from coterie.node.server.watch import WatchStream
from coterie.v1 import kv_pb2
from tests.test_services import T, single_node

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


def _create(key: bytes, range_end: bytes = b"", **kw: Any) -> kv_pb2.WatchRequest:
    return kv_pb2.WatchRequest(
        create_request=kv_pb2.WatchCreateRequest(key=key, range_end=range_end, **kw)
    )


def _cancel(watch_id: int) -> kv_pb2.WatchRequest:
    return kv_pb2.WatchRequest(cancel_request=kv_pb2.WatchCancelRequest(watch_id=watch_id))


async def _recv(call: Any) -> kv_pb2.WatchResponse:
    resp = await asyncio.wait_for(call.read(), T)
    assert isinstance(resp, kv_pb2.WatchResponse), resp
    return resp


async def _created(call: Any, req: kv_pb2.WatchRequest) -> int:
    await asyncio.wait_for(call.write(req), T)
    resp = await _recv(call)
    assert resp.created and not resp.canceled and not resp.events, resp
    return int(resp.watch_id)


async def _events(call: Any, n: int, watch_id: int | None = None) -> list[kv_pb2.Event]:
    """Read responses until ``n`` events arrived (all for ``watch_id`` if given)."""
    out: list[kv_pb2.Event] = []
    while len(out) < n:
        resp = await _recv(call)
        assert not resp.created and not resp.canceled, resp
        if watch_id is not None:
            assert resp.watch_id == watch_id, resp
        revs = [e.kv.mod_revision for e in resp.events]
        assert revs == sorted(revs) and revs, resp
        out.extend(resp.events)
    assert len(out) == n, out
    return out


def _summary(events: list[kv_pb2.Event]) -> list[tuple[int, bytes, bytes, bytes | None]]:
    return [
        (e.type, e.kv.key, e.kv.value, e.prev_kv.value if e.HasField("prev_kv") else None)
        for e in events
    ]


def test_watch_prefix_live_with_prev_kv(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (_driver, s):
            await s.kv.Put(kv_pb2.PutRequest(key=b"a/0", value=b"before"), timeout=T)
            call = s.kv.Watch()
            wid = await _created(call, _create(b"a/", b"a0", prev_kv=True))
            r1 = await s.kv.Put(kv_pb2.PutRequest(key=b"a/1", value=b"v1"), timeout=T)
            await s.kv.Put(kv_pb2.PutRequest(key=b"b", value=b"outside"), timeout=T)
            await s.kv.Put(kv_pb2.PutRequest(key=b"a/1", value=b"v2"), timeout=T)
            await s.kv.DeleteRange(kv_pb2.DeleteRangeRequest(key=b"a/1"), timeout=T)
            t = await s.kv.Txn(kv_pb2.TxnRequest(success=[
                kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"a/2", value=b"x")),
                kv_pb2.RequestOp(request_put=kv_pb2.PutRequest(key=b"a/0", value=b"after")),
            ]), timeout=T)
            events = await _events(call, 5, wid)
            assert _summary(events) == [
                (PUT, b"a/1", b"v1", None),
                (PUT, b"a/1", b"v2", b"v1"),
                (DELETE, b"a/1", b"", b"v2"),
                (PUT, b"a/2", b"x", None),
                (PUT, b"a/0", b"after", b"before"),
            ]
            revs = [e.kv.mod_revision for e in events]
            assert revs[0] == r1.header.revision
            assert revs[:3] == [revs[0], revs[0] + 2, revs[0] + 3]  # the put of b is skipped
            assert revs[3] == revs[4] == t.header.revision
            call.cancel()

    asyncio.run(main())


def _watch_subscribers(driver: Any) -> list[Any]:
    """The driver's apply callbacks other than the node's own (the membership book's refresh)."""
    return [cb for cb in driver.on_applied
            if getattr(cb, "__self__", None).__class__.__name__ != "Membership"]


def test_watch_replays_history_two_watches_and_cancel(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (driver, s):
            for i in range(3):
                await s.kv.Put(kv_pb2.PutRequest(key=b"k", value=f"{i}".encode()), timeout=T)
            call = s.kv.Watch()
            # Replay from revision 2 (the first put), without prev_kv.
            w1 = await _created(call, _create(b"k", start_revision=2))
            old = await _events(call, 3, w1)
            assert [(e.kv.value, e.kv.mod_revision, e.HasField("prev_kv")) for e in old] == [
                (b"0", 2, False), (b"1", 3, False), (b"2", 4, False)]
            # A second watch on the same stream, with an id chosen by the client.
            w2 = await _created(call, _create(b"k", b"l", watch_id=77))
            assert w2 == 77 and w1 != w2
            await s.kv.Put(kv_pb2.PutRequest(key=b"k", value=b"3"), timeout=T)
            got: dict[int, list[int]] = {w1: [], w2: []}
            while len(got[w1]) + len(got[w2]) < 2:
                resp = await _recv(call)
                got[resp.watch_id].extend(e.kv.mod_revision for e in resp.events)
            assert got == {w1: [5], w2: [5]}
            # Cancel w1: acknowledged, then only w2 sees later changes.
            await asyncio.wait_for(call.write(_cancel(w1)), T)
            resp = await _recv(call)
            assert resp.canceled and resp.watch_id == w1, resp
            await s.kv.Put(kv_pb2.PutRequest(key=b"kk", value=b"4"), timeout=T)
            assert [e.kv.key for e in await _events(call, 1, w2)] == [b"kk"]
            # A duplicate id is refused without disturbing the existing watch.
            await asyncio.wait_for(call.write(_create(b"x", watch_id=77)), T)
            resp = await _recv(call)
            assert resp.created and resp.canceled and resp.watch_id == 77 and "in use" in resp.cancel_reason
            await s.kv.Put(kv_pb2.PutRequest(key=b"k", value=b"5"), timeout=T)
            assert [e.kv.value for e in await _events(call, 1, w2)] == [b"5"]
            await asyncio.wait_for(call.done_writing(), T)
            # Closing the client side ends the call (as etcd), cleanly.
            assert await asyncio.wait_for(call.read(), T) is grpc.aio.EOF
            assert await asyncio.wait_for(call.code(), T) == grpc.StatusCode.OK
            assert _watch_subscribers(driver) == []  # the stream unsubscribed

    asyncio.run(main())


def test_watch_below_compaction_is_canceled(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (_driver, s):
            for i in range(4):
                r = await s.kv.Put(kv_pb2.PutRequest(key=b"c", value=f"{i}".encode()), timeout=T)
            rev = r.header.revision - 1
            await s.kv.Compact(kv_pb2.CompactionRequest(revision=rev), timeout=T)
            call = s.kv.Watch()
            await asyncio.wait_for(call.write(_create(b"c", start_revision=2)), T)
            created = await _recv(call)
            assert created.created
            resp = await _recv(call)
            assert resp.canceled and resp.watch_id == created.watch_id, resp
            assert resp.compact_revision == rev
            assert f"oldest available revision is {rev}" in resp.cancel_reason
            # From the compaction revision itself, the history is complete.
            wid = await _created(call, _create(b"c", start_revision=rev))
            assert [e.kv.value for e in await _events(call, 2, wid)] == [b"2", b"3"]
            call.cancel()

    asyncio.run(main())


def test_lagging_watch_is_canceled_when_its_history_is_compacted(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (driver, s):
            stop = asyncio.Event()

            async def requests() -> AsyncIterator[kv_pb2.WatchRequest]:
                yield _create(b"s")
                await stop.wait()

            # run() is an async generator (annotated as an AsyncIterator): closed below with aclose().
            responses = cast(AsyncGenerator[kv_pb2.WatchResponse, None], WatchStream(driver).run(requests()))
            created = await asyncio.wait_for(anext(responses), T)
            assert created.created
            # The consumer does not read: the stream is parked and its watch falls behind.
            for i in range(3):
                r = await s.kv.Put(kv_pb2.PutRequest(key=b"s", value=f"{i}".encode()), timeout=T)
            await s.kv.Compact(kv_pb2.CompactionRequest(revision=r.header.revision), timeout=T)
            resp = await asyncio.wait_for(anext(responses), T)
            assert resp.canceled and resp.compact_revision == r.header.revision, resp
            stop.set()
            await asyncio.wait_for(responses.aclose(), T)
            assert _watch_subscribers(driver) == []

    asyncio.run(main())


def test_watch_under_concurrent_puts(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (_driver, s):
            call = s.kv.Watch()
            wid = await _created(call, _create(b"p/", b"p0"))
            puts = [s.kv.Put(kv_pb2.PutRequest(key=f"p/{i % 7}".encode(), value=str(i).encode()),
                             timeout=T) for i in range(200)]
            collector = asyncio.create_task(_events(call, 200, wid))
            resps = await asyncio.wait_for(asyncio.gather(*puts), 3 * T)
            events = await asyncio.wait_for(collector, 3 * T)
            revs = [e.kv.mod_revision for e in events]
            assert revs == sorted({r.header.revision for r in resps})  # no gaps, no duplicates
            assert revs == list(range(revs[0], revs[0] + 200))
            by_rev = {r.header.revision: i for i, r in enumerate(resps)}
            assert all(e.kv.value == str(by_rev[e.kv.mod_revision]).encode() for e in events)
            call.cancel()

    asyncio.run(main())
