"""``coterie bench put|get``: a bounded load generator for a running cluster.

The generator (:func:`run_load`) is independent of coterie: it drives any ``async`` operation with N
concurrent asyncio tasks and is reused by ``scripts/bench-peers`` for etcd and PySyncObj, so every
system is measured by the same code.

Invariants of one run (:class:`LoadResult`):

- at most ``count`` operations are started, indexes ``0 .. count-1``, each exactly once;
- ``completed + errors + cancelled == started <= count``; ``started < count`` only if the time limit
  stopped the run (``timed_out``);
- no new operation starts after ``time_limit`` seconds; operations still running then get ``grace``
  more seconds and are then cancelled (counted in ``cancelled``), so a run never outlives
  ``time_limit + grace`` (plus the cancellation itself);
- the warm-up (``warmup`` operations at the same concurrency, before the clock starts) is excluded
  from every figure and only reported;
- ``latencies_ns`` holds one sample per *completed* operation (failed ones are counted, not timed) and
  the percentiles are computed exactly from them (nearest rank, :func:`percentile`);
- ``throughput = completed / elapsed``, with ``elapsed`` from the start of the measured phase until
  its last operation finished.

Coterie's client: by default each of the N tasks gets its own :class:`~coterie.client.AsyncClient`;
``--shared-client`` makes them share one (as etcd is driven with ``aetcd``: N tasks on one channel),
whose writes run concurrently too, each in a session of the client's pool, with the pool's bound
raised to N so that it never makes a task wait. Since the client batches the concurrent requests of its
tasks into shared ``KV.Batch`` stream messages, the shared client is the faster one (64 tasks: about
3x the puts and 3x the gets of one client per task, README "Benchmarks"); the default stays one client
per task, the harder case for coterie.
``params["sessions"]`` is the number of exactly-once sessions the client(s) opened during the run
(warm-up and a get run's setup included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import click

__all__ = ["LOCK_OPS", "LoadResult", "bench", "format_table", "key_of", "lock_name", "percentile", "run_load"]

LOCK_OPS = ("lock", "lock-shared")
"""Lock round trips (acquire, then release at once): ``lock``: each task on its own name (no contention,
the protocol's cost under concurrency); ``lock-shared``: every task on one name (FIFO hand-offs)."""

Op = Callable[[int, int], Awaitable[object]]
"""``op(worker, index)``: one operation; ``worker`` is the task's number (0..clients-1)."""


def percentile(sorted_samples: Sequence[int], p: float) -> int:
    """The exact ``p``-th percentile (0 < p <= 100) of ``sorted_samples`` by nearest rank: the
    smallest sample with at least ``p`` % of the samples at or below it. 0 for no samples."""
    if not sorted_samples:
        return 0
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(p / 100 * len(sorted_samples))
    return sorted_samples[max(rank, 1) - 1]


def lock_name(op: str, worker: int) -> str:
    """The lock name task ``worker`` takes in a ``lock`` or ``lock-shared`` run (the same for every system;
    no name is a path prefix of another)."""
    return "bench/shared" if op == "lock-shared" else f"bench/w{worker}"


def key_of(i: int, key_size: int, key_space: int) -> bytes:
    """The ``key_size``-byte key of operation ``i``: ``i mod key_space``, zero-padded decimal."""
    if key_space < 1 or len(str(key_space - 1)) > key_size:
        raise ValueError(f"key space {key_space} needs keys longer than {key_size} bytes")
    return str(i % key_space).zfill(key_size).encode()


@dataclass(slots=True)
class LoadResult:
    """One measured run; see the module docstring for the invariants."""

    system: str
    op: str
    clients: int
    count: int
    """Operations asked for (the measured phase)."""
    started: int = 0
    completed: int = 0
    errors: int = 0
    cancelled: int = 0
    timed_out: bool = False
    warmup: int = 0
    """Operations run before the measured phase (excluded from every figure)."""
    elapsed_s: float = 0.0
    throughput: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    first_error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list, repr=False)

    def summarize(self) -> None:
        """Fill throughput and percentiles from ``latencies_ns`` (sorting it)."""
        lat = self.latencies_ns
        lat.sort()
        self.throughput = self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0
        self.p50_ms = percentile(lat, 50) / 1e6
        self.p90_ms = percentile(lat, 90) / 1e6
        self.p99_ms = percentile(lat, 99) / 1e6
        self.max_ms = (lat[-1] if lat else 0) / 1e6
        self.mean_ms = (sum(lat) / len(lat) / 1e6) if lat else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["latencies_ns"]
        return d


async def _phase(op: Op, clients: int, first: int, n: int, time_limit: float, grace: float,
                 res: LoadResult | None, done: list[int]) -> None:
    """Run operations ``first .. first+n-1`` with ``clients`` tasks; record into ``res`` if given.
    ``done[0]`` counts finished operations (for the progress display)."""
    nxt = first
    end = first + n
    stop = False
    lat = res.latencies_ns if res is not None else None

    async def worker(w: int) -> None:
        nonlocal nxt
        while nxt < end and not stop:
            i = nxt
            nxt += 1
            if res is not None:
                res.started += 1
            t0 = time.perf_counter_ns()
            try:
                await op(w, i)
            except Exception as exc:
                if res is not None:
                    res.errors += 1
                    if res.first_error is None:
                        res.first_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            else:
                if lat is not None:
                    lat.append(time.perf_counter_ns() - t0)
            done[0] += 1

    tasks = [asyncio.create_task(worker(w)) for w in range(min(clients, n))]
    if not tasks:
        return
    t_start = time.perf_counter()
    _, pending = await asyncio.wait(tasks, timeout=time_limit)
    if pending:
        stop = True
        if res is not None:
            res.timed_out = True
        _, pending = await asyncio.wait(pending, timeout=grace)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if res is not None:
        res.elapsed_s = time.perf_counter() - t_start
        res.completed = len(res.latencies_ns)
        res.cancelled = res.started - res.completed - res.errors


async def run_load(op: Op, *, system: str, name: str, clients: int, count: int, time_limit: float = 60.0,
                   warmup: int = 0, grace: float = 5.0,
                   progress: Callable[[int], None] | None = None) -> LoadResult:
    """Run ``warmup`` then ``count`` calls of ``op`` with ``clients`` concurrent tasks.

    The warm-up uses indexes ``count .. count+warmup-1`` and gets its own ``time_limit``. ``progress``
    is called about ten times a second with the number of measured operations finished so far.
    """
    if clients < 1 or count < 0 or warmup < 0 or time_limit <= 0:
        raise ValueError("clients >= 1, count >= 0, warmup >= 0 and time_limit > 0 are required")
    res = LoadResult(system=system, op=name, clients=clients, count=count)
    if warmup:
        wres = LoadResult(system=system, op=name, clients=clients, count=warmup)
        await _phase(op, clients, count, warmup, time_limit, grace, wres, [0])
        res.warmup = wres.completed
        if wres.completed == 0 and wres.errors:
            raise RuntimeError(f"every warm-up operation failed; the first: {wres.first_error}")
    done = [0]
    ticker: asyncio.Task[None] | None = None
    if progress is not None:
        report = progress

        async def tick() -> None:
            while True:
                report(done[0])
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(tick())
    try:
        await _phase(op, clients, 0, count, time_limit, grace, res, done)
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if progress is not None:
                progress(done[0])
    res.summarize()
    return res


# ============================================================================== rendering


def _fmt_ms(ms: float) -> str:
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def format_table(results: Sequence[LoadResult]) -> str:
    """One aligned row per result."""
    hdr = ["SYSTEM", "OP", "CLIENTS", "OK", "ERRORS", "CANCELLED", "SECONDS", "OPS/S",
           "P50 MS", "P90 MS", "P99 MS", "MAX MS"]
    rows = [[r.system, r.op, str(r.clients), str(r.completed), str(r.errors), str(r.cancelled),
             f"{r.elapsed_s:.2f}", f"{r.throughput:,.0f}", _fmt_ms(r.p50_ms), _fmt_ms(r.p90_ms),
             _fmt_ms(r.p99_ms), _fmt_ms(r.max_ms)] for r in results]
    cells = [hdr, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(hdr))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


# ============================================================================== coterie workloads


async def coterie_load(endpoints: str, *, op: str, clients: int, count: int, value_size: int = 256,
                       key_size: int = 8, key_space: int = 1000, warmup: int = 200,
                       time_limit: float = 60.0, timeout: float = 5.0, shared_client: bool = False,
                       lock_ttl: float = 10.0,
                       progress: Callable[[int], None] | None = None) -> LoadResult:
    """Measure ``op`` (``put``, ``get``, ``get-serializable``, ``lock`` or ``lock-shared``) against the
    cluster at ``endpoints``.

    Before a get run the ``key_space`` keys are written (untimed, reported in ``params["setup"]``),
    and a get that finds no key counts as an error. Puts send ``prev_kv=False``, like etcd's client.
    One lock operation is a round trip ``await lock.acquire()`` then ``await lock.release()`` of
    :meth:`AsyncClient.lock` (``lock_ttl``; an acquire waits at most ``time_limit``): a lease granted
    and kept alive, the contender key put, the prefix read (and, behind a predecessor, a watch until
    its deletion and a re-read), then the key deleted and the lease revoked. Value, key size and key
    space do not apply to locks.
    """
    from coterie.client import AsyncClient
    from coterie.client._sessions import DEFAULT_MAX_SESSIONS

    if op not in ("put", "get", "get-serializable", *LOCK_OPS):
        raise ValueError(f"unknown operation {op!r}")
    key_of(0, key_size, key_space)  # ValueError now if the keys cannot be that short
    value = b"v" * value_size
    n_clients = 1 if shared_client else clients
    max_sessions = max(clients, DEFAULT_MAX_SESSIONS) if shared_client else DEFAULT_MAX_SESSIONS
    conns = [AsyncClient(endpoints, timeout=timeout, max_sessions=max_sessions) for _ in range(n_clients)]

    def client_of(w: int) -> AsyncClient:
        return conns[w % n_clients]

    async def put(w: int, i: int) -> None:
        await client_of(w).put(key_of(i, key_size, key_space), value, prev_kv=False)

    serializable = op == "get-serializable"

    async def get(w: int, i: int) -> None:
        kv = await client_of(w).get(key_of(i, key_size, key_space), serializable=serializable)
        if kv is None:
            raise LookupError(f"key {key_of(i, key_size, key_space)!r} is missing")

    async def lock(w: int, _i: int) -> None:
        lk = client_of(w).lock(lock_name(op, w), ttl=lock_ttl, timeout=time_limit)
        await lk.acquire()
        await lk.release()

    params: dict[str, Any] = {"value_size": value_size, "key_size": key_size, "key_space": key_space,
                              "time_limit": time_limit, "client_objects": n_clients,
                              "max_sessions": max_sessions, "client": "AsyncClient"}
    if op in LOCK_OPS:
        params = {"time_limit": time_limit, "client_objects": n_clients, "max_sessions": max_sessions,
                  "client": "AsyncClient.lock (acquire, release)", "lock_ttl": lock_ttl,
                  "names": 1 if op == "lock-shared" else clients}
    try:
        if op in LOCK_OPS:
            res = await run_load(lock, system="coterie", name=op, clients=clients, count=count,
                                 time_limit=time_limit, warmup=warmup, progress=progress)
        elif op == "put":
            res = await run_load(put, system="coterie", name=op, clients=clients, count=count,
                                 time_limit=time_limit, warmup=warmup, progress=progress)
        else:
            setup = await run_load(put, system="coterie", name="setup", clients=clients, count=key_space,
                                   time_limit=time_limit)
            if setup.completed != key_space:
                raise RuntimeError(f"setup wrote {setup.completed} of {key_space} keys; the first "
                                   f"error: {setup.first_error}")
            params["setup"] = setup.completed
            res = await run_load(get, system="coterie", name=op, clients=clients, count=count,
                                 time_limit=time_limit, warmup=warmup, progress=progress)
    finally:
        params["sessions"] = sum(c._pool.opened for c in conns)
        for c in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 10.0)
    res.params = params
    return res


# ============================================================================== the CLI


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--clients", type=click.IntRange(1, 10_000), default=1, show_default=True,
                     help="Concurrent operations (asyncio tasks)."),
        click.option("--count", type=click.IntRange(0), default=10_000, show_default=True,
                     help="Measured operations in all."),
        click.option("--value-size", type=click.IntRange(0, 1 << 20), default=256, show_default=True,
                     help="Bytes per value."),
        click.option("--key-size", type=click.IntRange(1, 4096), default=8, show_default=True,
                     help="Bytes per key."),
        click.option("--key-space", type=click.IntRange(1), default=1000, show_default=True,
                     help="Distinct keys; operation i uses key i mod KEY_SPACE (get: written first)."),
        click.option("--warmup", type=click.IntRange(0), default=200, show_default=True,
                     help="Operations before the measured phase (excluded, reported)."),
        click.option("--time-limit", type=click.FloatRange(0, min_open=True), default=60.0,
                     show_default=True, help="Seconds after which no operation starts (per phase)."),
        click.option("--shared-client/--client-per-task", default=False, show_default=True,
                     help="All tasks share one AsyncClient (its writes run concurrently, one session of its "
                          "pool each), or each task has its own."),
        click.option("--progress/--no-progress", default=True, show_default=True,
                     help="Progress bar on stderr."),
        click.option("-o", "--output", "output", type=click.Choice(["table", "json"]), default=None,
                     help="Output format (default: the global -o)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _run(ctx: click.Context, op: str, clients: int, count: int, value_size: int, key_size: int,
         key_space: int, warmup: int, time_limit: float, shared_client: bool, progress: bool,
         output: str | None, lock_ttl: float = 10.0) -> None:
    import grpc  # type: ignore[import-untyped]

    from coterie.client.errors import CoterieError

    obj = ctx.obj or {}
    endpoints = str(obj.get("endpoints", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"))
    timeout = float(obj.get("timeout", 5.0))
    fmt = output or str(obj.get("output", "table"))
    bar_cm: Any = (click.progressbar(length=count, label=f"{op} x{clients}", file=sys.stderr)
                   if progress else contextlib.nullcontext())
    try:
        with bar_cm as bar:
            shown = [0]

            def report(n: int) -> None:
                if bar is not None and n > shown[0]:
                    bar.update(n - shown[0])
                    shown[0] = n

            res = asyncio.run(coterie_load(
                endpoints, op=op, clients=clients, count=count, value_size=value_size, key_size=key_size,
                key_space=key_space, warmup=warmup, time_limit=time_limit, timeout=timeout,
                shared_client=shared_client, lock_ttl=lock_ttl, progress=report))
    except (CoterieError, grpc.RpcError, OSError, ValueError, RuntimeError) as exc:
        if obj.get("debug"):
            raise
        click.echo(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", err=True)
        ctx.exit(1)
    if fmt == "json":
        click.echo(json.dumps(res.to_dict(), indent=2))
    else:
        click.echo(format_table([res]))
        notes = [f"warm-up {res.warmup} ops excluded", f"{res.params['client_objects']} client(s)",
                 f"{res.params['sessions']} session(s)"]
        if res.timed_out:
            notes.append(f"time limit {time_limit:g} s reached: {count - res.started} ops not started")
        if res.first_error:
            notes.append(f"first error: {res.first_error}")
        click.echo("; ".join(notes))
    if res.errors or res.cancelled or res.timed_out:
        ctx.exit(1)


@click.group()
def bench() -> None:
    """Load the cluster and print throughput and latency percentiles.

    Exits 1 if any operation failed or the time limit cut the run short.
    """


@bench.command("put")
@_common
@click.pass_context
def bench_put(ctx: click.Context, /, **kw: Any) -> None:
    """COUNT puts of VALUE_SIZE-byte values, CLIENTS at a time."""
    _run(ctx, "put", **kw)


@bench.command("get")
@click.option("--serializable", is_flag=True, help="Serve from the member asked (may be stale).")
@_common
@click.pass_context
def bench_get(ctx: click.Context, /, serializable: bool, **kw: Any) -> None:
    """COUNT gets of existing keys (KEY_SPACE keys are written first), CLIENTS at a time."""
    _run(ctx, "get-serializable" if serializable else "get", **kw)


@bench.command("lock")
@click.option("--shared", is_flag=True, help="Every task contends for one name (default: a name per task).")
@click.option("--ttl", "lock_ttl", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Seconds of each lock's lease.")
@_common
@click.pass_context
def bench_lock(ctx: click.Context, /, shared: bool, lock_ttl: float, **kw: Any) -> None:
    """COUNT lock round trips (acquire, then release at once), CLIENTS at a time, each task on its own
    name or (--shared) all on one; an acquire waits at most TIME_LIMIT. The value and key options do
    not apply."""
    _run(ctx, "lock-shared" if shared else "lock", lock_ttl=lock_ttl, **kw)
