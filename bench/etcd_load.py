"""Drive etcd with the same load as ``coterie bench``, through ``aetcd`` (grpc.aio).

``python -m coterie.bench.etcd_load --endpoint H:P --op put|get|get-serializable --clients N [...]`` prints
one JSON :class:`~coterie.bench.load.LoadResult`. As in ../shared/PEERS.md, the N tasks share one
``aetcd.Client`` (one channel) talking to the member given, normally the leader. Before a get run the
``--key-space`` keys are written (untimed), and a get that finds no key counts as an error. Puts do
not ask for the previous value (aetcd's default, and coterie's bench does the same).

``--op lock|lock-shared``: lock round trips (lock, then unlock at once) with etcd's
``concurrency.Mutex`` algorithm on aetcd (:class:`~coterie.bench.etcd_mutex.EtcdMutex`: a session and
lease per round trip, as coterie's ``AsyncClient.lock`` grants one), each task on its own name or all on
one; a lock waits at most ``--time-limit``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from coterie.bench.etcd_mutex import EtcdMutex
from coterie.bench.load import LOCK_OPS, LoadResult, key_of, lock_name, run_load

OPS = ("put", "get", "get-serializable", *LOCK_OPS)


async def etcd_load(endpoint: str, *, op: str, clients: int, count: int, value_size: int = 256,
                    key_size: int = 8, key_space: int = 1000, warmup: int = 200,
                    time_limit: float = 60.0, timeout: float = 5.0, lock_ttl: int = 10) -> LoadResult:
    import aetcd

    if op not in OPS:
        raise ValueError(f"unknown operation {op!r}")
    key_of(0, key_size, key_space)  # ValueError now if the keys cannot be that short
    host, _, port = endpoint.rpartition(":")
    value = b"v" * value_size
    serializable = op == "get-serializable"
    params: dict[str, Any] = {"value_size": value_size, "key_size": key_size, "key_space": key_space,
                              "time_limit": time_limit, "client": f"aetcd {_version()}, one channel",
                              "endpoint": endpoint}
    async with aetcd.Client(host=host, port=int(port), timeout=timeout) as c:

        async def put(_w: int, i: int) -> None:
            await c.put(key_of(i, key_size, key_space), value)

        async def get(_w: int, i: int) -> None:
            r = await c.get(key_of(i, key_size, key_space), serializable=serializable)
            if r is None:
                raise LookupError(f"key {key_of(i, key_size, key_space)!r} is missing")

        async def lock(w: int, _i: int) -> None:
            m = EtcdMutex(c, lock_name(op, w), ttl=lock_ttl)
            await m.lock(timeout=time_limit)
            await m.unlock()

        if op in LOCK_OPS:
            params = {"time_limit": time_limit, "lock_ttl": lock_ttl, "endpoint": endpoint,
                      "names": 1 if op == "lock-shared" else clients,
                      "client": f"aetcd {_version()}, one channel, concurrency.Mutex algorithm"}
            res = await run_load(lock, system="etcd", name=op, clients=clients, count=count,
                                 time_limit=time_limit, warmup=warmup)
        elif op == "put":
            res = await run_load(put, system="etcd", name=op, clients=clients, count=count,
                                 time_limit=time_limit, warmup=warmup)
        else:
            setup = await run_load(put, system="etcd", name="setup", clients=clients, count=key_space,
                                   time_limit=time_limit)
            if setup.completed != key_space:
                raise RuntimeError(f"setup wrote {setup.completed} of {key_space} keys; the first "
                                   f"error: {setup.first_error}")
            params["setup"] = setup.completed
            res = await run_load(get, system="etcd", name=op, clients=clients, count=count,
                                 time_limit=time_limit, warmup=warmup)
    res.params = params
    return res


def _version() -> str:
    from importlib.metadata import version

    return version("aetcd")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--op", required=True, choices=OPS)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--key-size", type=int, default=8)
    ap.add_argument("--key-space", type=int, default=1000)
    ap.add_argument("--lock-ttl", type=int, default=10, help="seconds of each lock's lease (%(default)s)")
    a = ap.parse_args(argv)
    res = asyncio.run(etcd_load(a.endpoint, op=a.op, clients=a.clients, count=a.count,
                                value_size=a.value_size, key_size=a.key_size, key_space=a.key_space,
                                warmup=a.warmup, time_limit=a.time_limit,
                                lock_ttl=a.lock_ttl))
    print(json.dumps(res.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
