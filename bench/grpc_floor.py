"""The floor that Python gRPC (grpc.aio) sets, before any coterie code runs: an echo server.

``python -m coterie.bench.grpc_floor [--clients 64] [--count 20000] [--size 270]`` starts an echo server in a
subprocess (grpc.aio, raw bytes, no protobuf) and drives it from this process the way ``coterie
bench`` drives a node, in two styles:

- ``unary``: N asyncio tasks issuing unary calls on one channel (how coterie's client works today);
- ``stream``: N asyncio tasks multiplexing their requests over ONE bidirectional stream, one
  message per request (id + length + payload; a writer task sends, a reader task resolves each
  task's future);
- ``stream-batch``: the same, but the writer packs every queued request into one message (the
  server echoes it whole), as a client that batches would.

For each it prints calls/s and the CPU microseconds per call of the server and of the client, read
from ``/proc`` and ``getrusage``, so the figures hold up better than rates on a busy machine. A
coterie put costs at least one such call from client to leader, so the unary server figure is a
lower bound for the leader's CPU per put with today's API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc  # type: ignore[import-untyped]

from .cluster import cpu_seconds, free_ports

_UNARY = "/floor.Echo/Unary"
_STREAM = "/floor.Echo/Stream"


async def _serve(addr: str) -> None:
    async def unary(req: bytes, _ctx: Any) -> bytes:
        return req

    async def stream(it: AsyncIterator[bytes], _ctx: Any) -> AsyncIterator[bytes]:
        async for req in it:
            yield req

    handler = grpc.method_handlers_generic_handler("floor.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(stream),
    })
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(addr)
    await server.start()
    await server.wait_for_termination()


async def _drive(addr: str, style: str, clients: int, count: int, size: int) -> tuple[int, float]:
    payload = b"x" * size
    async with grpc.aio.insecure_channel(addr) as ch:
        await asyncio.wait_for(ch.channel_ready(), 10)
        nxt = 0
        if style == "unary":
            call = ch.unary_unary(_UNARY)

            async def op() -> None:
                await call(payload, timeout=10)
        else:
            bidi = ch.stream_stream(_STREAM)()
            waiting: dict[int, asyncio.Future[None]] = {}
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            seq = 0
            batch = style == "stream-batch"

            async def reader() -> None:
                async for resp in bidi:
                    pos = 0
                    while pos < len(resp):  # [8-byte id][4-byte length][payload]...
                        rid = int.from_bytes(resp[pos:pos + 8], "big")
                        pos += 12 + int.from_bytes(resp[pos + 8:pos + 12], "big")
                        fut = waiting.pop(rid, None)
                        if fut is not None and not fut.done():
                            fut.set_result(None)

            async def writer() -> None:  # a stream takes one write at a time
                while True:
                    msgs = [await queue.get()]
                    while batch and not queue.empty():
                        msgs.append(queue.get_nowait())
                    await bidi.write(b"".join(msgs))

            tasks = [asyncio.create_task(reader()), asyncio.create_task(writer())]

            async def op() -> None:
                nonlocal seq
                seq += 1
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                waiting[seq] = fut
                queue.put_nowait(seq.to_bytes(8, "big") + len(payload).to_bytes(4, "big") + payload)
                await asyncio.wait_for(fut, 10)

        async def worker() -> None:
            nonlocal nxt
            while nxt < count:
                nxt += 1
                await op()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
        if style != "unary":
            for t in tasks:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                await asyncio.gather(*tasks)
            bidi.cancel()
    return count, elapsed


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=270, help="request bytes (a 256-byte put is about 270)")
    a = ap.parse_args(argv)
    if a.serve:
        asyncio.run(_serve(a.serve))
        return 0
    addr = f"127.0.0.1:{free_ports(1)[0]}"
    server = subprocess.Popen([sys.executable, "-m", "coterie.bench.grpc_floor", "--serve", addr])
    try:
        print(f"echo server {addr}: {a.clients} concurrent callers, {a.count} calls, {a.size}-byte messages, "
              f"load average {os.getloadavg()[0]:.1f}")
        for style in ("unary", "stream", "stream-batch"):
            asyncio.run(_drive(addr, style, a.clients, min(a.count, 500), a.size))  # warm-up
            s0, c0 = cpu_seconds(server.pid), _self_cpu()
            n, elapsed = asyncio.run(_drive(addr, style, a.clients, a.count, a.size))
            s1, c1 = cpu_seconds(server.pid), _self_cpu()
            print(f"{style:12s}: {n / elapsed:8,.0f} calls/s; CPU per call: "
                  f"server {(s1 - s0) / n * 1e6:5.0f} us, client {(c1 - c0) / n * 1e6:5.0f} us")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
