"""The server side of ``KV.Batch``: many Range, Put, DeleteRange and Txn requests per stream message.

Python gRPC spends a few hundred microseconds of CPU per unary call on each side, and a few tens per
request when many requests share one stream message (``python -m coterie.bench.grpc_floor``). A
client therefore packs the concurrent requests of one process into shared messages on one long-lived
stream (as TiKV's ``BatchCommands``), and :class:`BatchStream` serves them:

- every request of a message is checked and started at once, in order: its writes are queued on the
  driver together (:meth:`Driver.propose_nowait`), so they reach the Raft core in one turn and leave
  in one append with one fsync; its linearizable reads (a Range without ``serializable``, a Txn
  without writes or fence) share **one** read barrier (ReadIndex, thesis 6.4), asked for after the
  message's writes were queued, and are served from the applied state once it is released;
  serializable reads are served at once;
- each request means exactly what its unary call means: it carries its own ``RequestHeader`` (session,
  seq, fence), so exactly-once holds per request; it goes through the same checks (size, limits,
  validation) and the same code (:class:`~.services.KVService`'s helpers);
- each request is answered once, by id: its response, or a :class:`kv_pb2.BatchError` with the status
  code, message, serialized ``ErrorDetail`` and leader hint that :func:`.status.error_status` gives
  the unary call. A failed request never fails the stream;
- answers are collected and sent together: everything answered in one turn of the event loop (the
  proposals of one apply cycle resolve together) leaves in one ``BatchResponse``, and answers arriving
  while that message is written leave with the next;
- an answer is not sent when its request was cancelled (``BatchRequest.cancel``) or its
  ``timeout_ms`` has passed; a write already proposed may still be applied, as with a unary call that
  was cut off.

The stream ends when the client half-closes it and every request has been answered, or when the
client cancels it. Only a malformed message (which the :class:`~.malformed.MalformedRequests`
interceptor turns into :class:`InvalidArgument`) ends it with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol, cast

from coterie.v1 import kv_pb2
from coterie.v1.wire import ERROR_DETAIL_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY

from ..statemachine import Command, InvalidArgument, RangeRequest, Response, TxnRequest
from .driver import Driver, Stopped
from .info import NodeInfo
from .status import error_status

__all__ = ["BatchStream", "KVService", "batch_error"]


class KVService(Protocol):
    """What a batch needs of :class:`~.services.KVService`: the unary calls' own steps."""

    driver: Driver
    info: NodeInfo

    def _prepare_write(self, request: Any) -> tuple[Command, bytes]: ...

    def _write_response(self, cmd: Command, resp: Response) -> Any: ...

    def _range_request(self, request: kv_pb2.RangeRequest) -> tuple[RangeRequest, bool]: ...

    def _serve_range(self, req: RangeRequest) -> Any: ...

    def _read_only_txn(self, request: kv_pb2.TxnRequest) -> TxnRequest | None: ...

    def _serve_txn(self, req: TxnRequest) -> Any: ...

_WRITES = frozenset(("put", "delete_range"))


def batch_error(exc: BaseException, service: KVService) -> kv_pb2.BatchError:
    """The :class:`kv_pb2.BatchError` of a failed request: what the unary call would have ended
    with (:func:`.status.error_status`)."""
    code, details, md = error_status(exc, service.info, leader=service.driver.leader)
    err = kv_pb2.BatchError(code=code.value[0], message=details)
    for key, value in md:
        if key == ERROR_DETAIL_KEY and isinstance(value, bytes):
            err.detail = value
        elif key == LEADER_ID_KEY:
            with contextlib.suppress(ValueError):
                err.leader_id = int(value)
        elif key == LEADER_ADDR_KEY:
            err.leader_addr = value.decode() if isinstance(value, bytes) else value
    return err


class BatchStream:
    """One ``KV.Batch`` call (see the module docstring). :meth:`run` yields its answers."""

    def __init__(self, service: KVService) -> None:
        self.service = service
        self.driver = service.driver
        self._loop = asyncio.get_running_loop()
        self._open: dict[int, float] = {}
        """Requests not answered yet: id -> loop time of their deadline (0.0: none)."""
        self._out = kv_pb2.BatchResponse()
        """Answers not sent yet."""
        self._wake = asyncio.Event()
        self._reader_done = False

    async def run(self, requests: AsyncIterator[kv_pb2.BatchRequest]) -> AsyncIterator[kv_pb2.BatchResponse]:
        reader = asyncio.ensure_future(self._read(requests))
        reader.add_done_callback(lambda _: self._wake.set())
        try:
            while True:
                if self._out.items:
                    out, self._out = self._out, kv_pb2.BatchResponse()
                    yield out
                    continue
                if reader.done():
                    reader.result()  # a malformed message: raise it
                    if not self._open:
                        return
                self._wake.clear()
                await self._wake.wait()
        finally:
            reader.cancel()

    async def _read(self, requests: AsyncIterator[kv_pb2.BatchRequest]) -> None:
        async for msg in requests:
            self._dispatch(msg)

    # ------------------------------------------------------------------------------- requests
    def _dispatch(self, msg: kv_pb2.BatchRequest) -> None:
        for rid in msg.cancel:
            self._open.pop(rid, None)
        now = self._loop.time()
        svc = self.service
        reads: list[tuple[int, str, RangeRequest | TxnRequest]] = []
        for item in msg.items:
            rid = item.id
            self._open[rid] = now + item.timeout_ms / 1000 if item.timeout_ms else 0.0
            which = item.WhichOneof("request")
            try:
                if which in _WRITES:
                    self._write(rid, cast(str, which), getattr(item, cast(str, which)))
                elif which == "range":
                    req, barrier = svc._range_request(item.range)
                    if barrier:
                        reads.append((rid, "range", req))
                    else:
                        self._answer(rid, "range", svc._serve_range(req))
                elif which == "txn":
                    txn = svc._read_only_txn(item.txn)
                    if txn is None:
                        self._write(rid, "txn", item.txn)
                    else:
                        reads.append((rid, "txn", txn))
                else:
                    raise InvalidArgument("BatchRequest.Item: no request set (range, put, delete_range "
                                          "or txn)")
            except Exception as exc:
                self._fail(rid, exc)
        if reads:
            try:
                barrier_fut = self.driver.read_barrier_nowait()
            except Exception as exc:
                for rid, _, _ in reads:
                    self._fail(rid, exc)
            else:
                barrier_fut.add_done_callback(lambda f: self._serve_reads(f, reads))

    def _write(self, rid: int, which: str, request: Any) -> None:
        cmd, data = self.service._prepare_write(request)
        fut = self.driver.propose_nowait(data)
        fut.add_done_callback(lambda f: self._written(rid, which, cmd, f))

    def _written(self, rid: int, which: str, cmd: Command, fut: asyncio.Future[Response]) -> None:
        if rid not in self._open:
            return
        if fut.cancelled():
            self._fail(rid, Stopped("node is shutting down"))
            return
        exc = fut.exception()
        if exc is not None:
            self._fail(rid, exc)
            return
        try:
            pb = self.service._write_response(cmd, fut.result())
        except Exception as err:
            self._fail(rid, err)
            return
        self._answer(rid, which, pb)

    def _serve_reads(self, fut: asyncio.Future[int],
                     reads: list[tuple[int, str, RangeRequest | TxnRequest]]) -> None:
        exc: BaseException | None = Stopped("node is shutting down") if fut.cancelled() else fut.exception()
        svc = self.service
        for rid, which, req in reads:
            if rid not in self._open:
                continue
            if exc is not None:
                self._fail(rid, exc)
                continue
            try:
                pb = svc._serve_range(req) if isinstance(req, RangeRequest) else svc._serve_txn(req)
            except Exception as err:
                self._fail(rid, err)
                continue
            self._answer(rid, which, pb)

    # ------------------------------------------------------------------------------- answers
    def _take(self, rid: int) -> kv_pb2.BatchResponse.Item | None:
        """A new answer slot for ``rid``, or None if it needs none (answered, cancelled, expired)."""
        deadline = self._open.pop(rid, None)
        self._wake.set()  # something to send, or maybe the last request of a half-closed stream
        if deadline is None or (deadline and self._loop.time() > deadline):
            return None
        item = self._out.items.add()
        item.id = rid
        return cast(kv_pb2.BatchResponse.Item, item)

    def _answer(self, rid: int, which: str, pb: Any) -> None:
        item = self._take(rid)
        if item is not None:
            getattr(item, which).CopyFrom(pb)

    def _fail(self, rid: int, exc: BaseException) -> None:
        item = self._take(rid)
        if item is not None:
            item.error.CopyFrom(batch_error(exc, self.service))
