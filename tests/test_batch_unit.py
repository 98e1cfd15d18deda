"""The client's batcher (:class:`coterie.client._batch.BatchChannel`) against a fake ``KV.Batch``
stream: ids and demultiplexing, one message per turn of the loop, per-request errors mapped as the
unary call's, deadlines, cancellation, and a broken stream. No network."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.client._batch import BatchChannel, rpc_error
from coterie.client._errors import map_rpc_error
from coterie.client.errors import InvalidArgument, NotLeader, OutcomeUnknown, Unavailable
from coterie.v1 import kv_pb2
from coterie.v1.wire import ERROR_DETAIL_KEY


class FakeStream:
    """A ``KV.Batch`` call: records what is written; ``answer``/``fail``/``end`` drive what is read."""

    def __init__(self) -> None:
        self.sent: list[kv_pb2.BatchRequest] = []
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = False
        self.sent_event = asyncio.Event()
        self.gate: asyncio.Event | None = None
        """When set to an unset event, a write waits for it (a slow connection)."""

    async def write(self, msg: kv_pb2.BatchRequest) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.cancelled:
            raise rpc_error(grpc.StatusCode.CANCELLED, "cancelled")
        self.sent.append(msg)
        self.sent_event.set()

    async def read(self) -> Any:
        x = await self._inbox.get()
        if isinstance(x, BaseException):
            raise x
        return x

    def cancel(self) -> None:
        self.cancelled = True

    def answer(self, *items: kv_pb2.BatchResponse.Item) -> None:
        self._inbox.put_nowait(kv_pb2.BatchResponse(items=list(items)))

    def fail(self, code: grpc.StatusCode, details: str) -> None:
        self._inbox.put_nowait(rpc_error(code, details))

    def end(self) -> None:
        self._inbox.put_nowait(grpc.aio.EOF)

    def ids(self) -> list[list[int]]:
        return [[it.id for it in m.items] for m in self.sent]


class Harness:
    def __init__(self, **kw: Any) -> None:
        self.streams: list[FakeStream] = []
        self.ch = BatchChannel(self._open, **kw)

    def _open(self) -> FakeStream:
        s = FakeStream()
        self.streams.append(s)
        return s

    @property
    def stream(self) -> FakeStream:
        return self.streams[-1]


def run(fn: Callable[[Harness], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        h = Harness(**kw)
        try:
            await fn(h)
        finally:
            await h.ch.close()
    asyncio.run(asyncio.wait_for(main(), 10))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def put(key: bytes) -> kv_pb2.PutRequest:
    return kv_pb2.PutRequest(key=key, value=b"v",
                             header=kv_pb2.RequestHeader(session_id=7, seq=int(key[1:] or b"0") + 1))


def put_answer(rid: int, revision: int) -> kv_pb2.BatchResponse.Item:
    return kv_pb2.BatchResponse.Item(id=rid, put=kv_pb2.PutResponse(
        header=kv_pb2.ResponseHeader(revision=revision)))


def test_concurrent_calls_share_one_message_and_are_demultiplexed_by_id() -> None:
    async def t(h: Harness) -> None:
        calls = [asyncio.ensure_future(h.ch.call("Put", put(b"k%d" % i), 5.0, write=True)) for i in range(3)]
        get = asyncio.ensure_future(h.ch.call("Range", kv_pb2.RangeRequest(key=b"g"), 5.0, write=False))
        await settle()
        assert h.stream.ids() == [[1, 2, 3, 4]]  # one message, ids in call order
        msg = h.stream.sent[0]
        assert [it.WhichOneof("request") for it in msg.items] == ["put", "put", "put", "range"]
        # each request keeps its own header (session, seq): exactly-once is per request
        assert [it.put.header.seq for it in msg.items[:3]] == [1, 2, 3]
        assert all(0 < it.timeout_ms <= 5000 for it in msg.items)
        # answers in any order, spread over messages
        h.stream.answer(put_answer(3, 30), kv_pb2.BatchResponse.Item(
            id=4, range=kv_pb2.RangeResponse(count=9)))
        h.stream.answer(put_answer(1, 10), put_answer(2, 20))
        revs = [(await c).header.revision for c in calls]
        assert revs == [10, 20, 30]
        assert (await get).count == 9
        assert h.ch.pending == 0 and h.ch.streams_opened == 1
    run(t)


def test_a_lone_caller_is_sent_at_once_and_later_calls_reuse_the_stream() -> None:
    async def t(h: Harness) -> None:
        for i in range(3):
            c = asyncio.ensure_future(h.ch.call("Put", put(b"k%d" % i), 5.0, write=True))
            await settle()
            assert len(h.stream.sent) == i + 1
            h.stream.answer(put_answer(i + 1, i))
            assert (await c).header.revision == i
        assert h.ch.streams_opened == 1
    run(t)


def test_messages_are_split_by_count_and_size() -> None:
    async def t(h: Harness) -> None:
        calls = [asyncio.ensure_future(h.ch.call("Put", put(b"k%d" % i), 5.0, write=True)) for i in range(7)]
        await settle()
        assert h.stream.ids() == [[1, 2, 3], [4, 5, 6], [7]]
        big = kv_pb2.PutRequest(key=b"b", value=b"x" * 5000)
        more = [asyncio.ensure_future(h.ch.call("Put", big, 5.0, write=True)) for _ in range(2)]
        await settle()
        assert h.stream.ids()[3:] == [[8], [9]]  # each over half of max_bytes: one per message
        for c in [*calls, *more]:
            c.cancel()
    run(t, max_items=3, max_bytes=8000)


def test_per_request_errors_map_as_the_unary_calls() -> None:
    async def t(h: Harness) -> None:
        calls = [asyncio.ensure_future(h.ch.call("Put", put(b"k%d" % i), 5.0, write=True)) for i in range(3)]
        await settle()
        detail = kv_pb2.ErrorDetail(code=kv_pb2.ERROR_CODE_LIMIT_EXCEEDED, message="value too large")
        h.stream.answer(
            kv_pb2.BatchResponse.Item(id=1, error=kv_pb2.BatchError(
                code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="value is 2 MiB, over 1 MiB",
                detail=detail.SerializeToString())),
            put_answer(2, 5),
            kv_pb2.BatchResponse.Item(id=3, error=kv_pb2.BatchError(
                code=grpc.StatusCode.UNAVAILABLE.value[0], message="not the leader; retry on member 2",
                leader_id=2, leader_addr="127.0.0.1:9")))
        res = await asyncio.gather(*calls, return_exceptions=True)
        e1, ok, e3 = res
        assert isinstance(e1, grpc.aio.AioRpcError) and e1.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e1.details() == "value is 2 MiB, over 1 MiB"
        assert dict(e1.trailing_metadata())[ERROR_DETAIL_KEY] == detail.SerializeToString()
        assert isinstance(map_rpc_error(e1, endpoint="e", write=True, idempotent=True), InvalidArgument)
        assert not isinstance(ok, BaseException) and ok.header.revision == 5
        err3 = map_rpc_error(e3, endpoint="e", write=True, idempotent=True)
        assert isinstance(err3, NotLeader) and err3.leader_id == 2 and err3.leader_addr == "127.0.0.1:9"
        assert h.ch.streams_broken == 0  # failed requests do not fail the stream
    run(t)


def test_deadline_and_cancellation_drop_the_answer() -> None:
    async def t(h: Harness) -> None:
        slow = asyncio.ensure_future(h.ch.call("Put", put(b"k1"), 0.05, write=True))
        gone = asyncio.ensure_future(h.ch.call("Put", put(b"k2"), 5.0, write=True))
        await settle()
        gone.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await slow
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        err = map_rpc_error(ei.value, endpoint="e", write=True, idempotent=True)
        assert isinstance(err, OutcomeUnknown) and err.retriable
        assert gone.cancelled()
        # the late answers are dropped; the next message tells the server not to send them
        h.stream.answer(put_answer(1, 1), put_answer(2, 2))
        nxt = asyncio.ensure_future(h.ch.call("Put", put(b"k3"), 5.0, write=True))
        await settle()
        assert list(h.stream.sent[-1].cancel) == [2, 1] and h.stream.ids()[-1] == [3]
        h.stream.answer(put_answer(3, 3))
        assert (await nxt).header.revision == 3
        assert h.ch.pending == 0
    run(t)


def test_a_request_cancelled_before_it_was_sent_is_never_sent() -> None:
    async def t(h: Harness) -> None:
        first = asyncio.ensure_future(h.ch.call("Put", put(b"k1"), 5.0, write=True))
        await settle()
        assert h.stream.ids() == [[1]]
        # Two more queue while the connection is slow to take the next message; one of them is
        # cancelled before it leaves.
        gate = h.stream.gate = asyncio.Event()
        kept = asyncio.ensure_future(h.ch.call("Put", put(b"k2"), 5.0, write=True))
        await settle()
        dropped = asyncio.ensure_future(h.ch.call("Put", put(b"k3"), 5.0, write=True))
        await settle()
        assert h.ch.pending == 3 and h.stream.ids() == [[1]]
        dropped.cancel()
        await settle()
        gate.set()
        await settle()
        assert dropped.cancelled()
        sent_ids = [i for m in h.stream.ids() for i in m]
        assert 3 not in sent_ids and 2 in sent_ids  # withdrawn, not sent then cancelled
        assert all(3 not in m.cancel for m in h.stream.sent)
        h.stream.answer(put_answer(1, 1), put_answer(2, 2))
        assert (await first).header.revision == 1 and (await kept).header.revision == 2
        assert h.ch.pending == 0
    run(t)


def test_a_broken_stream_fails_every_call_and_the_next_call_opens_another() -> None:
    async def t(h: Harness) -> None:
        w = asyncio.ensure_future(h.ch.call("Put", put(b"k1"), 5.0, write=True))
        r = asyncio.ensure_future(h.ch.call("Range", kv_pb2.RangeRequest(key=b"g"), 5.0, write=False))
        await settle()
        first = h.stream
        first.fail(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
        res = await asyncio.gather(w, r, return_exceptions=True)
        ew = map_rpc_error(res[0], endpoint="e", write=True, idempotent=True)
        er = map_rpc_error(res[1], endpoint="e", write=False, idempotent=True)
        # a write already sent: its outcome is unknown, whatever the transport said
        assert isinstance(ew, OutcomeUnknown) and ew.retriable
        assert isinstance(er, Unavailable) and er.retriable and "Connection reset" in er.message
        assert first.cancelled and h.ch.streams_broken == 1 and h.ch.pending == 0
        again = asyncio.ensure_future(h.ch.call("Put", put(b"k2"), 5.0, write=True))
        await settle()
        assert len(h.streams) == 2 and h.stream.ids() == [[3]]
        h.stream.answer(put_answer(3, 7))
        assert (await again).header.revision == 7
        # a stream the member ends is broken too
        late = asyncio.ensure_future(h.ch.call("Range", kv_pb2.RangeRequest(key=b"g"), 5.0, write=False))
        await settle()
        h.stream.end()
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await late
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    run(t)


def test_close_fails_waiting_calls() -> None:
    async def t(h: Harness) -> None:
        c = asyncio.ensure_future(h.ch.call("Range", kv_pb2.RangeRequest(key=b"g"), 5.0, write=False))
        await settle()
        await h.ch.close()
        with pytest.raises(grpc.aio.AioRpcError) as ei:
            await c
        assert ei.value.code() == grpc.StatusCode.CANCELLED
        with pytest.raises(grpc.aio.AioRpcError):
            await h.ch.call("Range", kv_pb2.RangeRequest(key=b"g"), 5.0, write=False)
    run(t)
