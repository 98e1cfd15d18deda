"""``coterie bench`` and ``scripts/bench-peers``: the load generator's bookkeeping, then small runs
against three real ``coterie node`` processes (and the peers, when installed).

No timing is asserted: only that every operation is accounted for, the output parses, the
percentiles are ordered and the data really landed in the cluster. Every cluster is stopped in a
``finally`` and every subprocess has a timeout.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coterie.bench.cluster import CoterieCluster
from coterie.bench.load import LoadResult, format_table, key_of, percentile, run_load
from coterie.bench.peers import markdown
from coterie.client import Client

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------ the generator alone


def test_percentile_is_exact_nearest_rank() -> None:
    xs = list(range(1, 101))  # 1..100
    assert [percentile(xs, p) for p in (1, 50, 90, 99, 100)] == [1, 50, 90, 99, 100]
    assert percentile([7], 50) == 7 and percentile([], 99) == 0
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([1, 2, 3, 4], 51) == 3
    with pytest.raises(ValueError):
        percentile(xs, 0)


def test_key_of_is_fixed_size() -> None:
    assert key_of(0, 8, 1000) == b"00000000"
    assert key_of(1234, 8, 1000) == b"00000234"
    with pytest.raises(ValueError):
        key_of(5, 2, 1000)


def test_run_load_runs_each_index_once_and_counts_add_up() -> None:
    seen: list[int] = []
    workers: set[int] = set()

    async def op(w: int, i: int) -> None:
        workers.add(w)
        seen.append(i)
        await asyncio.sleep(0)
        if i % 10 == 3:
            raise OSError("boom")

    progress: list[int] = []
    res = asyncio.run(run_load(op, system="fake", name="op", clients=7, count=100, warmup=20,
                               progress=progress.append))
    assert sorted(seen) == list(range(120))  # 100 measured + 20 warm-up, each index once
    assert workers == set(range(7))
    assert res.started == 100 and res.errors == 10 and res.completed == 90 and res.cancelled == 0
    assert res.warmup == 18 and not res.timed_out  # two warm-up ops (103, 113) failed
    assert len(res.latencies_ns) == 90 and res.first_error == "OSError: boom"
    assert res.p50_ms <= res.p90_ms <= res.p99_ms <= res.max_ms
    assert progress and progress[-1] == 100


def test_run_load_time_limit_stops_and_cancels() -> None:
    async def op(_w: int, i: int) -> None:
        await asyncio.sleep(0 if i < 5 else 3600)

    res = asyncio.run(run_load(op, system="fake", name="op", clients=3, count=1000, time_limit=0.5,
                               grace=0.2))
    assert res.timed_out and res.completed == 5 and res.errors == 0
    assert res.cancelled == 3 and res.started == 8  # three tasks were stuck when the time ran out
    assert res.completed + res.errors + res.cancelled == res.started


def test_markdown_ratios() -> None:
    def r(system: str, tput: float, p50: float) -> dict[str, object]:
        d = LoadResult(system=system, op="put", clients=4, count=10, completed=10).to_dict()
        d.update(throughput=tput, p50_ms=p50, p99_ms=2 * p50)
        return d

    table = markdown([r("coterie", 300.0, 2.0), r("coterie", 100.0, 4.0), r("coterie", 200.0, 3.0),
                      r("etcd", 100.0, 1.5)], ["coterie", "etcd"], ["put"], [4])
    row = table.splitlines()[2].split(" | ")
    assert row[:3] == ["| put", "4", "200"]  # the median of three runs
    assert row[-2:] == ["2.00", "2.00 |"]  # 200/100 ops/s, 3.0/1.5 ms


# ------------------------------------------------------------------------------ real processes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoterieCluster]:
    with CoterieCluster(tmp_path_factory.mktemp("bench"), tick_ms=20) as c:
        c.start(timeout=60)
        yield c


def _coterie(c: CoterieCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coterie.client.cli", "--endpoints", c.endpoints,
                           "--timeout", "20", *args], capture_output=True, text=True, timeout=180)


def test_bench_put_json_counts_add_up_and_the_data_landed(cluster: CoterieCluster) -> None:
    p = _coterie(cluster, "-o", "json", "bench", "put", "--clients", "4", "--count", "60", "--warmup", "5",
                 "--value-size", "32", "--key-space", "500", "--no-progress")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert (r["system"], r["op"], r["clients"], r["count"]) == ("coterie", "put", 4, 60)
    assert r["started"] == r["completed"] == 60 and r["errors"] == r["cancelled"] == 0
    assert r["warmup"] == 5 and not r["timed_out"] and r["params"]["sessions"] == 4
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"] and r["throughput"] > 0
    with Client(cluster.endpoints, timeout=20) as cl:
        kvs = cl.get_range(b"00000000", b"00000065")
    assert [kv.key for kv in kvs] == [key_of(i, 8, 500) for i in range(65)]
    assert all(kv.value == b"v" * 32 for kv in kvs)


@pytest.mark.parametrize("serializable", [False, True])
def test_bench_get_table(cluster: CoterieCluster, serializable: bool) -> None:
    args = ["bench", "get", "--clients", "3", "--count", "40", "--warmup", "0", "--key-space", "20",
            "--shared-client", "--no-progress", *(["--serializable"] if serializable else [])]
    p = _coterie(cluster, *args)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:6] == ["SYSTEM", "OP", "CLIENTS", "OK", "ERRORS", "CANCELLED"]
    row = lines[1].split()
    assert row[:6] == ["coterie", "get-serializable" if serializable else "get", "3", "40", "0", "0"]
    assert float(row[7].replace(",", "")) > 0
    assert "1 client(s); 3 session(s)" in lines[2]  # the setup's 3 writers, one session each


def test_bench_reports_failure_without_a_cluster() -> None:
    p = subprocess.run([sys.executable, "-m", "coterie.client.cli", "--endpoints", "127.0.0.1:1",
                        "--timeout", "1", "-o", "json", "bench", "put", "--count", "3", "--warmup", "0",
                        "--no-progress"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    r = json.loads(p.stdout)
    assert r["errors"] == r["started"] == 3 and r["completed"] == 0 and r["first_error"]


def test_bench_peers_smoke(tmp_path: Path) -> None:
    """The harness end to end on tiny workloads, for every system that is installed here."""
    systems = ["coterie"]
    if shutil.which("etcd") and importlib.util.find_spec("aetcd"):
        systems.append("etcd")
    if importlib.util.find_spec("pysyncobj"):
        systems.append("pysyncobj")
    out = tmp_path / "raw.json"
    p = subprocess.run([sys.executable, "-m", "coterie.bench.peers", "--systems", ",".join(systems),
                        "--ops", "put,get", "--clients", "1,3", "--count", "20", "--warmup", "2",
                        "--key-space", "10", "--time-limit", "20", "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    raw = json.loads(out.read_text())
    expect = {(s, op, n) for s in systems for op in ("put", "get") for n in (1, 3)
              if not (s == "pysyncobj" and op == "get")}
    assert {(r["system"], r["op"], r["clients"]) for r in raw} == expect
    assert all(r["completed"] == 20 and r["errors"] == 0 for r in raw)
    rates, _, cpu = p.stdout.partition("CPU time per operation")
    for text in (rates, cpu):  # one row per workload in each table
        rows = [ln for ln in text.splitlines() if ln.startswith(("| put |", "| get |"))]
        assert len(rows) == 4, text
    assert all(r["cpu_us_per_op"]["total"] > 0 for r in raw if r["system"] in ("coterie", "etcd"))
    if "etcd" in systems:
        assert "coterie/etcd ops/s" in rates


@pytest.mark.parametrize("shared", [False, True])
def test_bench_lock_round_trips_leave_no_key_or_lease(cluster: CoterieCluster, shared: bool) -> None:
    with Client(cluster.endpoints, timeout=20) as cl:
        leases_before = {x.id for x in cl.leases()}
    p = _coterie(cluster, "-o", "json", "bench", "lock", *(["--shared"] if shared else []), "--clients", "4",
                 "--count", "24", "--warmup", "4", "--time-limit", "60", "--no-progress")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert (r["system"], r["op"], r["clients"]) == ("coterie", "lock-shared" if shared else "lock", 4)
    assert r["started"] == r["completed"] == 24 and r["errors"] == r["cancelled"] == 0 and r["warmup"] == 4
    assert r["params"]["names"] == (1 if shared else 4) and r["params"]["lock_ttl"] == 10
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] and r["throughput"] > 0
    with Client(cluster.endpoints, timeout=20) as cl:
        assert cl.get_prefix(b"coterie/locks/bench/") == []  # every contender key deleted
        assert {x.id for x in cl.leases()} <= leases_before  # and every lease revoked


def _etcd_installed() -> bool:
    return bool(shutil.which("etcd")) and importlib.util.find_spec("aetcd") is not None


@pytest.mark.skipif(not _etcd_installed(), reason="etcd or aetcd not installed")
def test_etcd_mutex_excludes_and_serves_in_order(tmp_path: Path) -> None:
    """The benchmark's etcd Mutex is a real lock: one holder at a time, FIFO by arrival."""
    import aetcd

    from coterie.bench.cluster import EtcdCluster
    from coterie.bench.etcd_mutex import EtcdMutex

    async def contend(endpoint: str) -> tuple[int, list[int], int]:
        host, _, port = endpoint.rpartition(":")
        holders = 0
        most = 0
        order: list[int] = []
        async with aetcd.Client(host=host, port=int(port), timeout=10) as c:
            first = EtcdMutex(c, "t/shared")
            await first.lock(timeout=10)  # everyone else queues behind this one, in start order

            async def one(w: int) -> None:
                nonlocal holders, most
                m = EtcdMutex(c, "t/shared")
                await m.lock(timeout=30)
                holders += 1
                most = max(most, holders)
                order.append(w)
                await asyncio.sleep(0.01)
                holders -= 1
                await m.unlock()

            tasks = []
            for w in range(6):
                tasks.append(asyncio.create_task(one(w)))
                while len(await c.get_prefix(b"coterie/locks/t/shared/")) < w + 2:  # queued
                    await asyncio.sleep(0.01)
            await first.unlock()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            left = len(await c.get_prefix(b"coterie/locks/"))
        return most, order, left

    with EtcdCluster(tmp_path) as ec:
        leader = ec.start(timeout=60)
        most, order, left = asyncio.run(contend(leader))
    assert most == 1 and order == list(range(6)) and left == 0


@pytest.mark.skipif(not _etcd_installed(), reason="etcd or aetcd not installed")
def test_bench_peers_lock_smoke(tmp_path: Path) -> None:
    """scripts/bench-peers --ops lock,lock-shared with coterie and etcd, tiny counts."""
    out = tmp_path / "raw.json"
    p = subprocess.run([sys.executable, "-m", "coterie.bench.peers", "--systems", "coterie,etcd",
                        "--ops", "lock,lock-shared", "--clients", "1,3", "--count", "20",
                        "--lock-shared-count", "12", "--warmup", "2", "--time-limit", "30",
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    raw = json.loads(out.read_text())
    assert {(r["system"], r["op"], r["clients"]) for r in raw} == \
        {(s, op, n) for s in ("coterie", "etcd") for op in ("lock", "lock-shared") for n in (1, 3)}
    assert all(r["completed"] == (12 if r["op"] == "lock-shared" else 20) and r["errors"] == 0 for r in raw)
    rates = p.stdout.partition("CPU time per operation")[0]
    assert len([ln for ln in rates.splitlines() if ln.startswith(("| lock |", "| lock-shared |"))]) == 4
    assert "coterie/etcd ops/s" in rates and "concurrency.Mutex" in rates


def test_format_table_has_one_row_per_result() -> None:
    rs = [LoadResult(system="s", op="put", clients=n, count=1, completed=1) for n in (1, 2)]
    lines = format_table(rs).splitlines()
    assert len(lines) == 3 and lines[2].split()[:4] == ["s", "put", "2", "1"]


def test_grpc_floor_runs_every_style() -> None:
    p = subprocess.run([sys.executable, "-m", "coterie.bench.grpc_floor", "--clients", "4", "--count", "200"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    styles = [ln.split(":")[0].strip() for ln in p.stdout.splitlines()[1:]]
    assert styles == ["unary", "stream", "stream-batch"]
    assert all("calls/s; CPU per call: server" in ln for ln in p.stdout.splitlines()[1:])
