"""A client flood against a running cluster, run as its own process: ``python -m tests.flood ...``.

``--clients`` concurrent clients (asyncio tasks over ``--channels`` separate connections per member)
each send at most ``--requests`` requests, alternating a put to ``--leader`` (a client that knows the
leader) with a linearizable get from one of ``--members``, until ``--seconds`` have passed. Every
request has a ``--deadline``; a failed one is followed by a short back-off, as a real client would.

Prints one JSON object: ``counts`` maps ``"put:OK"``, ``"get:UNAVAILABLE"``, ... to how many requests
ended so; ``details`` maps ``"CODE: details"`` of failures to counts (first 80 characters);
``max_latency`` is the slowest request's seconds; ``requests`` the total. Bounded: at most
``clients * requests`` requests, and no request outlives its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import time

import grpc  # type: ignore[import-untyped]

from coterie.v1 import kv_pb2, kv_pb2_grpc


async def flood(leader: str, members: list[str], clients: int, requests: int, seconds: float,
                deadline: float, channels: int) -> dict[str, object]:
    counts: collections.Counter[str] = collections.Counter()
    details: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    opts = [("grpc.use_local_subchannel_pool", 1)]  # a connection per channel, like separate clients
    lead_chans = [grpc.aio.insecure_channel(leader, options=opts) for _ in range(channels)]
    member_chans = [grpc.aio.insecure_channel(m, options=opts) for m in members for _ in range(channels)]
    end = time.monotonic() + seconds
    rng = random.Random(7)

    async def client(i: int) -> None:
        put_stub = kv_pb2_grpc.KVStub(lead_chans[i % len(lead_chans)])
        get_stub = kv_pb2_grpc.KVStub(member_chans[rng.randrange(len(member_chans))])
        for j in range(requests):
            if time.monotonic() >= end:
                return
            kind = "put" if j % 2 == 0 else "get"
            key = f"flood/{i}/{j % 16}".encode()
            t0 = time.monotonic()
            try:
                if kind == "put":
                    await put_stub.Put(kv_pb2.PutRequest(key=key, value=b"x" * 64), timeout=deadline)
                else:
                    await get_stub.Range(kv_pb2.RangeRequest(key=key), timeout=deadline)
                counts[f"{kind}:OK"] += 1
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                counts[f"{kind}:{code}"] += 1
                details[f"{code}: {(exc.details() or '')[:80]}"] += 1
                await asyncio.sleep(0.02 + 0.02 * rng.random())
            finally:
                latencies.append(time.monotonic() - t0)

    try:
        await asyncio.gather(*(client(i) for i in range(clients)))
    finally:
        for ch in [*lead_chans, *member_chans]:
            await ch.close()
    return {"counts": dict(counts), "details": dict(details), "requests": len(latencies),
            "max_latency": max(latencies, default=0.0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--leader", required=True)
    p.add_argument("--members", required=True, help="comma-separated client addresses")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--requests", type=int, default=200, help="per client")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--deadline", type=float, default=30.0)
    p.add_argument("--channels", type=int, default=4, help="connections per member")
    a = p.parse_args()
    out = asyncio.run(flood(a.leader, a.members.split(","), a.clients, a.requests, a.seconds, a.deadline,
                            a.channels))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
