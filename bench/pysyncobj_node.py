"""One PySyncObj member holding a replicated dict; the leader also runs the benchmark in-process.

``python -m coterie.bench.pysyncobj_node --self H:P --partners H:P,H:P --done-file F [workload options]``

This follows ../shared/PEERS.md: PySyncObj has no client protocol, so the callers live inside the
member processes. The member that is leader once the cluster is ready (leader known by this member
and unchanged for a second) runs every ``--workload OP:CLIENTS`` with
:func:`coterie.bench.load.run_load` -- the same generator as ``coterie bench`` -- printing one
JSON result per line on stdout, then creates ``--done-file``. Each asyncio task calls
``ReplDict.set(key, value, callback=...)`` and awaits the callback (the command is committed and
applied), so N tasks keep N commands in flight, like N blocking callers. Its log is in memory and
never fsynced (PySyncObj's default). Only ``put`` is supported: PySyncObj has no linearizable read
and a local dict lookup measures nothing comparable.

Every member exits by itself after ``--max-seconds`` if nobody stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from coterie.bench.load import key_of, run_load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--self", dest="self_addr", required=True)
    ap.add_argument("--partners", required=True)
    ap.add_argument("--done-file", type=Path, required=True)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    ap.add_argument("--batch", action=argparse.BooleanOptionalAction, default=False,
                    help="appendEntriesUseBatch (PySyncObj's default is on; see PEERS.md)")
    ap.add_argument("--workload", action="append", default=[], help="OP:CLIENTS, e.g. put:16")
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--key-size", type=int, default=8)
    ap.add_argument("--key-space", type=int, default=1000)
    a = ap.parse_args(argv)

    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
    from pysyncobj.batteries import ReplDict

    started = time.monotonic()
    d = ReplDict()
    conf = SyncObjConf(appendEntriesUseBatch=a.batch)
    node = SyncObj(a.self_addr, a.partners.split(","), conf=conf, consumers=[d])

    # Wait for a stable leader (bounded).
    leader: Any = None
    stable_since = time.monotonic()
    while time.monotonic() - started < a.max_seconds:
        cur = node._getLeader()
        if cur != leader:
            leader, stable_since = cur, time.monotonic()
        elif leader is not None and node.isReady() and time.monotonic() - stable_since >= 1.0:
            break
        time.sleep(0.05)
    if leader is not None and node._isLeader():
        asyncio.run(_workloads(a, d, FAIL_REASON.SUCCESS))
        a.done_file.touch()
    while time.monotonic() - started < a.max_seconds and not a.done_file.exists():
        time.sleep(0.2)
    # Linger until the harness stops us (so the leader's results are not raced by an exit).
    while time.monotonic() - started < a.max_seconds:
        time.sleep(0.2)
    node.destroy()
    return 0


async def _workloads(a: argparse.Namespace, d: Any, success: int) -> None:
    loop = asyncio.get_running_loop()
    value = b"v" * a.value_size

    def resolve(fut: asyncio.Future[None], err: int) -> None:
        if fut.done():
            return
        if err == success:
            fut.set_result(None)
        else:
            fut.set_exception(RuntimeError(f"PySyncObj FAIL_REASON {err}"))

    async def put(_w: int, i: int) -> None:
        fut: asyncio.Future[None] = loop.create_future()
        d.set(key_of(i, a.key_size, a.key_space), value,
              callback=lambda _res, err: loop.call_soon_threadsafe(resolve, fut, err))
        await fut

    for spec in a.workload:
        op, _, n = spec.partition(":")
        if op != "put":
            raise SystemExit(f"PySyncObj: unsupported workload {op!r} (only put)")
        res = await run_load(put, system="pysyncobj", name=op, clients=int(n), count=a.count,
                             time_limit=a.time_limit, warmup=a.warmup)
        res.params = {"value_size": a.value_size, "key_size": a.key_size, "key_space": a.key_space,
                      "time_limit": a.time_limit, "client": "in-process ReplDict.set(callback)",
                      "appendEntriesUseBatch": a.batch}
        print(json.dumps(res.to_dict()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
