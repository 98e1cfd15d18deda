"""The batched path of a client's Range, Put, DeleteRange and Txn calls: :class:`BatchChannel`.

Python gRPC costs a few hundred microseconds of CPU per unary call on each side, and a few tens per
request when many requests share one stream message. So the concurrent calls of one
:class:`~coterie.client.AsyncClient` to one member are packed into shared ``BatchRequest`` messages on
one long-lived ``KV.Batch`` stream (as TiKV's ``BatchCommands``), and demultiplexed by id from the
``BatchResponse`` messages (see ``kv.proto`` and ``coterie.node.server.batch``).

- **No added latency for a lone caller.** A call queues its request and wakes the stream's writer
  task, which runs on the next turn of the event loop and sends everything queued by then as one
  message; requests queued while that message is written leave with the next one. A message holds at
  most :data:`MAX_ITEMS` requests and about :data:`MAX_BATCH_BYTES` (the caller sends a larger
  request with its unary call instead: :data:`MAX_BATCHED_REQUEST_BYTES`).
- **Each call fails as its unary call would.** :meth:`BatchChannel.call` raises
  ``grpc.aio.AioRpcError``: for a refused request, with the status code, details and trailing metadata
  (``ErrorDetail``, leader hint) the unary call would carry, so :func:`~._errors.map_rpc_error` and the
  client's retry and routing logic treat both paths alike. A call's ``timeout`` ends it with
  DEADLINE_EXCEEDED (a write's outcome is then unknown); cancelling it drops its answer (and tells
  the server, with the next message, not to send it).
- **A broken stream fails every call on it**, with the stream's own error, like a unary call cut off;
  a write already sent when it broke fails with "outcome unknown" (UNAVAILABLE), whatever the error
  says (a "connection reset" must not read as "could not connect": the write may have been applied).
  The next call opens a new stream.

Nothing here retries: exactly-once comes from each request's own session header, which the caller
(``AsyncClient._write``) sets as for a unary call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc  # type: ignore[import-untyped]

from coterie.v1 import kv_pb2
from coterie.v1.wire import ERROR_DETAIL_KEY, LEADER_ADDR_KEY, LEADER_ID_KEY

__all__ = ["BATCHED_METHODS", "MAX_BATCHED_REQUEST_BYTES", "BatchChannel", "rpc_error"]

BATCHED_METHODS = {"Range": "range", "Put": "put", "DeleteRange": "delete_range", "Txn": "txn"}
"""The ``KV`` methods that go through ``Batch``, and their field in ``BatchRequest.Item``."""

MAX_BATCH_BYTES = 1024 * 1024
"""About the largest ``BatchRequest`` sent (a request is never split: a message holds one request of
up to :data:`MAX_BATCHED_REQUEST_BYTES`, or several adding up to at most this)."""

MAX_BATCHED_REQUEST_BYTES = 2 * 1024 * 1024
"""Larger requests are sent with their unary call (the server's bound on a message is 2 MiB +
64 KiB; gRPC refuses a larger one, which on the stream would fail every request on it)."""

MAX_ITEMS = 1024
"""Most requests in one message."""

_ITEM_OVERHEAD = 24
"""Bytes an item adds to a message besides its request (id, timeout, tags and lengths), at most."""

_CODES = {c.value[0]: c for c in grpc.StatusCode}


def rpc_error(code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, Any], ...] = ()) -> Any:
    """A ``grpc.aio.AioRpcError`` as a unary call that ended so would raise."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


def _from_batch_error(err: kv_pb2.BatchError) -> Any:
    md: list[tuple[str, Any]] = []
    if err.detail:
        md.append((ERROR_DETAIL_KEY, err.detail))
    if err.leader_id:
        md.append((LEADER_ID_KEY, str(err.leader_id)))
    if err.leader_addr:
        md.append((LEADER_ADDR_KEY, err.leader_addr))
    return rpc_error(_CODES.get(err.code, grpc.StatusCode.UNKNOWN), err.message, tuple(md))


def _copy_error(exc: Any) -> Any:
    """A fresh error with ``exc``'s code, details and trailing metadata (each waiting call raises its
    own)."""
    try:
        md = tuple(exc.trailing_metadata() or ())
    except Exception:
        md = ()
    return rpc_error(exc.code(), exc.details() or "", md)


class BatchChannel:
    """The batched calls of one client to one member, over one ``KV.Batch`` stream at a time
    (opened by ``open_stream()``, e.g. ``KVStub.Batch``, when a call needs one). Use from one event
    loop. See the module docstring for the rules."""

    def __init__(self, open_stream: Callable[[], Any], *, max_items: int = MAX_ITEMS,
                 max_bytes: int = MAX_BATCH_BYTES) -> None:
        self._open_stream = open_stream
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._call: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[int, tuple[asyncio.Future[Any], bool]] = {}
        """Calls without an answer: id -> (future, is a write)."""
        self._msg = kv_pb2.BatchRequest()
        self._msg_bytes = 0
        self._full: deque[kv_pb2.BatchRequest] = deque()
        self._next_id = 0
        self._sent_upto = 0
        """Every id up to this one was handed to the stream (ids grow, messages leave in order)."""
        self._wake = asyncio.Event()
        self._closed = False
        self.streams_opened = 0
        self.streams_broken = 0
        self.messages_sent = 0

    @property
    def pending(self) -> int:
        """Calls waiting for an answer."""
        return len(self._pending)

    async def call(self, method: str, request: Any, timeout: float | None, *, write: bool,
                   size: int | None = None) -> Any:
        """Send ``request`` (of the ``KV`` method ``method``, see :data:`BATCHED_METHODS`) in the next
        message and return its answer (the response message); raises ``grpc.aio.AioRpcError`` as the
        unary call would. ``write``: whether it may change state (decides what a broken stream
        means for it). ``size``: ``request.ByteSize()`` if known."""
        if self._closed:
            raise rpc_error(grpc.StatusCode.CANCELLED, "the client was closed")
        loop = asyncio.get_running_loop()
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[rid] = (fut, write)
        self._enqueue(rid, BATCHED_METHODS[method], request,
                      request.ByteSize() if size is None else size, timeout)
        if self._call is None:
            self._start()
        self._wake.set()
        timer = loop.call_later(timeout, self._expire, rid) if timeout is not None else None
        try:
            return await fut
        except asyncio.CancelledError:
            if self._pending.pop(rid, None) is not None:
                self._withdraw(rid)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _enqueue(self, rid: int, which: str, request: Any, size: int, timeout: float | None) -> None:
        msg = self._msg
        if msg.items and (self._msg_bytes + size > self.max_bytes or len(msg.items) >= self.max_items):
            self._full.append(msg)
            msg = self._msg = kv_pb2.BatchRequest()
            self._msg_bytes = 0
        item = msg.items.add()
        item.id = rid
        if timeout is not None:
            item.timeout_ms = max(1, min(int(timeout * 1000), 0xFFFFFFFF))
        getattr(item, which).CopyFrom(request)
        self._msg_bytes += size + _ITEM_OVERHEAD

    def _expire(self, rid: int) -> None:
        entry = self._pending.pop(rid, None)
        if entry is None or entry[0].done():
            return
        self._withdraw(rid)
        entry[0].set_exception(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))

    def _withdraw(self, rid: int) -> None:
        """Take back request ``rid``: still unsent, it is removed from the message it waits in (so
        it is never sent); already sent, a cancel leaves with the next message (no flush of its own:
        the server drops its answer, but a write may still be applied)."""
        if rid > self._sent_upto:
            for m in (self._msg, *self._full):
                for i, item in enumerate(m.items):
                    if item.id == rid:
                        del m.items[i]
                        return
            return
        if self._call is not None:
            self._msg.cancel.append(rid)

    def _next_message(self) -> kv_pb2.BatchRequest | None:
        if self._full:
            msg = self._full.popleft()
        elif self._msg.items or self._msg.cancel:
            msg, self._msg, self._msg_bytes = self._msg, kv_pb2.BatchRequest(), 0
        else:
            return None
        if msg.items:
            self._sent_upto = msg.items[len(msg.items) - 1].id
        return msg

    # ------------------------------------------------------------------------------- the stream
    def _start(self) -> None:
        call = self._call = self._open_stream()
        self.streams_opened += 1
        self._tasks = [asyncio.ensure_future(self._send_loop(call)),
                       asyncio.ensure_future(self._receive_loop(call))]

    async def _send_loop(self, call: Any) -> None:
        try:
            while True:
                msg = self._next_message()
                if msg is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await call.write(msg)
                self.messages_sent += 1
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            self._broken(call, exc)
        except Exception as exc:  # the call ended (InvalidStateError) or could not be written
            self._broken(call, rpc_error(grpc.StatusCode.UNAVAILABLE,
                                         f"the batch stream could not be written: {exc!r}"))

    async def _receive_loop(self, call: Any) -> None:
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    self._broken(call, rpc_error(grpc.StatusCode.UNAVAILABLE,
                                                 "the member ended the batch stream"))
                    return
                pending = self._pending
                for item in resp.items:
                    entry = pending.pop(item.id, None)
                    if entry is None or entry[0].done():
                        continue  # cancelled or timed out: the answer is dropped
                    which = item.WhichOneof("response")
                    if which == "error":
                        entry[0].set_exception(_from_batch_error(item.error))
                    elif which is None:
                        entry[0].set_exception(rpc_error(grpc.StatusCode.INTERNAL,
                                                         "a batch answer without a response"))
                    else:
                        entry[0].set_result(getattr(item, which))
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            self._broken(call, exc)
        except Exception as exc:
            self._broken(call, rpc_error(grpc.StatusCode.UNAVAILABLE,
                                         f"the batch stream could not be read: {exc!r}"))

    def _broken(self, call: Any, exc: Any) -> None:
        """The stream ``call`` failed with ``exc`` (an AioRpcError): fail every call on it (see the
        module docstring) and forget it, so the next call opens a new one."""
        if self._call is not call:
            return
        self._call = None
        self.streams_broken += 1
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        self._tasks = []
        call.cancel()
        pending, self._pending = self._pending, {}
        self._msg, self._msg_bytes = kv_pb2.BatchRequest(), 0
        self._full.clear()
        sent_upto = self._sent_upto
        for rid, (fut, write) in pending.items():
            if fut.done():
                continue
            if write and rid <= sent_upto:
                fut.set_exception(rpc_error(
                    grpc.StatusCode.UNAVAILABLE,
                    f"outcome unknown: the batch stream broke after the write was sent "
                    f"({exc.code().name}: {exc.details()})"))
            else:
                fut.set_exception(_copy_error(exc))

    async def close(self) -> None:
        """End the stream; calls still waiting fail with CANCELLED (as unary calls on a closed
        channel)."""
        self._closed = True
        call, tasks = self._call, list(self._tasks)
        if call is not None:
            self._broken(call, rpc_error(grpc.StatusCode.CANCELLED, "the client was closed"))
        for t in tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
