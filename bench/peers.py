"""coterie, etcd and PySyncObj side by side: the same workloads on fresh 3-member loopback clusters.

Run through ``scripts/bench-peers`` (which installs what is missing). For each run and each system:
start a fresh cluster under a temporary directory, run every selected workload (op x clients) with
the shared load generator, stop the cluster. Then print a markdown table with throughput, p50 and
p99 per system and the coterie/peer ratios (throughput: above 1 is coterie faster; p50: below 1 is
coterie faster). With ``--runs R`` each figure is the median of R fresh-cluster runs, taken per
figure.

How each system is driven (see ../shared/PEERS.md for why):

- coterie: ``coterie bench put|get`` in a subprocess, ``AsyncClient``: N asyncio tasks, one
  exactly-once session per task (``--coterie-shared-client``: one client and session for all);
- etcd: :mod:`coterie.bench.etcd_load` in a subprocess, ``aetcd``: N asyncio tasks on one channel, to the
  leader;
- PySyncObj: :mod:`coterie.bench.pysyncobj_node`, callers inside the leader process, put only.

Locks (``--ops lock,lock-shared``, not in the default): each operation is one round trip, acquire then
release at once, of coterie's ``AsyncClient.lock`` and of etcd's ``concurrency.Mutex`` algorithm on
``aetcd`` (:mod:`coterie.bench.etcd_mutex`; aetcd's own lock is a different, simpler algorithm). Both
grant a lease per round trip, keep it alive while waiting and holding, enqueue a key under
``coterie/locks/<name>/``, wait for their predecessor's deletion, delete the key and revoke the lease.
``lock``: each task on its own name (no contention); ``lock-shared``: all tasks on one name
(``--lock-shared-count`` round trips, default ``--count``).

Every load subprocess has a hard timeout and every cluster is stopped in a ``finally``, so a run stops
by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cluster import ClusterError, CoterieCluster, EtcdCluster, ProcGroup, run_pysyncobj
from .load import LOCK_OPS

SYSTEMS = ("coterie", "etcd", "pysyncobj")
DEFAULT_OPS = ("put", "get", "get-serializable")
OPS = (*DEFAULT_OPS, *LOCK_OPS)
_CPU_PARTS = ("total", "leader", "followers", "loader")
Result = dict[str, Any]


def _log(msg: str) -> None:
    print(f"[bench-peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run_json(argv: list[str], timeout: float, group: ProcGroup | None = None, leader: str = "",
              profile: Path | None = None, profile_args: Sequence[str] = ()) -> Result:
    """Run a load subprocess and parse its JSON result (it exits 1 on errors but still prints).

    With ``group``, also record ``cpu_us_per_op``: CPU microseconds of the leader, of the followers
    together and of the load generator, divided by every operation the generator ran (setup and
    warm-up included, so for gets about a tenth of the operations are the setup's puts; the
    generator's interpreter start-up is included too, which matters only for small counts).
    With ``group`` and ``profile`` (a path prefix), py-spy records the leader, one follower and the
    load generator into ``<profile>-{leader,follower,client}.txt``."""
    cpu0, child0 = (group.cpu() if group else {}), _children_cpu()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    with contextlib.ExitStack() as stack:
        if group is not None and profile is not None:
            follower = next(n for n in group.procs if n != leader)
            for role, pid in (("leader", group.procs[leader].pid), ("follower", group.procs[follower].pid),
                              ("client", p.pid)):
                stack.enter_context(_Profiler(pid, profile.with_name(f"{profile.name}-{role}.txt"), timeout,
                                              profile_args))
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            p.kill()
            p.communicate()
            raise ClusterError(f"load generator exceeded {timeout:g} s: {' '.join(argv)}") from exc
    cpu1, loader_cpu = (group.cpu() if group else {}), _children_cpu() - child0
    out = stdout.strip()
    start = out.find("{")
    if start < 0:
        raise ClusterError(f"no result from {' '.join(argv)} (exit {p.returncode}): "
                           f"{stderr.strip()[-800:]}")
    res: Result = json.loads(out[start:])
    if group is not None:
        ops = res["started"] + res["warmup"] + int(res.get("params", {}).get("setup", 0))
        used = {n: cpu1.get(n, 0.0) - cpu0.get(n, 0.0) for n in cpu0}
        followers = sum(v for n, v in used.items() if n != leader)
        cpu = {"leader": used.get(leader, 0.0), "followers": followers, "loader": loader_cpu}
        cpu["total"] = sum(cpu.values())
        res["cpu_us_per_op"] = {k: round(v / max(ops, 1) * 1e6, 1) for k, v in cpu.items()}
    return res


def _count(a: argparse.Namespace, op: str) -> int:
    return int(a.lock_shared_count) if op == "lock-shared" and a.lock_shared_count is not None else a.count


def _load_args(a: argparse.Namespace, clients: int, op: str) -> list[str]:
    return ["--clients", str(clients), "--count", str(_count(a, op)), "--warmup", str(a.warmup),
            "--time-limit", str(a.time_limit), "--value-size", str(a.value_size),
            "--key-size", str(a.key_size), "--key-space", str(a.key_space)]


def _coterie_cmd(op: str, lock_ttl: int) -> list[str]:
    if op in LOCK_OPS:
        return ["lock", *(["--shared"] if op == "lock-shared" else []), "--ttl", str(lock_ttl)]
    if op == "put":
        return ["put"]
    return ["get", *(["--serializable"] if op == "get-serializable" else [])]


def _load_timeout(a: argparse.Namespace) -> float:
    # warm-up, setup and measured phase each bounded by time_limit (+ grace), plus start-up
    return 3 * (float(a.time_limit) + 5) + 60


def _py_spy() -> str:
    """py-spy next to this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy") or "py-spy"


class _Profiler:
    """``py-spy record`` of one process for the duration of a ``with`` block, as collapsed stacks
    (``-f raw``; summarize with ``python -m coterie.bench.profile``)."""

    def __init__(self, pid: int, out: Path, max_seconds: float, extra: Sequence[str] = ()) -> None:
        self.argv = [_py_spy(), "record", "--pid", str(pid), "-r", "100", *extra,
                     "-d", str(int(max_seconds)), "-f", "raw", "-o", str(out)]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Profiler:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def run_coterie(a: argparse.Namespace, root: Path) -> list[Result]:
    out: list[Result] = []
    with CoterieCluster(root, tick_ms=a.tick_ms) as c:
        leader = c.start()
        _log(f"coterie: leader {leader}, endpoints {c.endpoints}")
        for op in a.ops:
            for n in a.clients:
                argv = [sys.executable, "-m", "coterie.client.cli", "--endpoints", c.endpoints, "-o", "json",
                        "--timeout", "10", "bench", *_coterie_cmd(op, a.lock_ttl), *_load_args(a, n, op),
                        "--no-progress",
                        *(["--shared-client"] if a.coterie_shared_client else [])]
                profile = a.profile and op == "put" and n == max(a.clients)
                leader = c.leader() or leader
                prof = a.profile / f"coterie-{op}-{n}" if profile else None
                r = _run_json(argv, _load_timeout(a), c.group, leader, prof, a.profile_args.split())
                if prof is not None:
                    r["profiled"] = True
                    _log(f"coterie: py-spy profiles in {prof}-{{leader,follower,client}}.txt")
                _log(f"coterie {op} x{n}: {r['throughput']:.0f}/s p50 {r['p50_ms']:.2f} ms, "
                     f"{r['errors']} errors")
                out.append(r)
    return out


def run_etcd(a: argparse.Namespace, root: Path) -> list[Result]:
    out: list[Result] = []
    with EtcdCluster(root, etcd_bin=a.etcd_bin) as c:
        leader = c.start()
        _log(f"etcd: leader {leader}")
        for op in a.ops:
            for n in a.clients:
                argv = [sys.executable, "-m", "coterie.bench.etcd_load", "--endpoint", leader, "--op", op,
                        *_load_args(a, n, op), *(["--lock-ttl", str(a.lock_ttl)] if op in LOCK_OPS else [])]
                r = _run_json(argv, _load_timeout(a), c.group, c.name_of(leader))
                _log(f"etcd {op} x{n}: {r['throughput']:.0f}/s p50 {r['p50_ms']:.2f} ms, "
                     f"{r['errors']} errors")
                out.append(r)
    return out


def run_pysyncobj_all(a: argparse.Namespace, root: Path) -> list[Result]:
    workloads = [f"put:{n}" for n in a.clients] if "put" in a.ops else []
    if not workloads:
        return []
    args = [arg for w in workloads for arg in ("--workload", w)]
    args += ["--count", str(a.count), "--warmup", str(a.warmup), "--time-limit", str(a.time_limit),
             "--value-size", str(a.value_size), "--key-size", str(a.key_size),
             "--key-space", str(a.key_space)]
    results = run_pysyncobj(root, args, timeout=len(workloads) * 2 * (a.time_limit + 5) + 60,
                            batch=a.pysyncobj_batch)
    for r in results:
        _log(f"pysyncobj {r['op']} x{r['clients']}: {r['throughput']:.0f}/s p50 {r['p50_ms']:.2f} ms, "
             f"{r['errors']} errors")
    if len(results) != len(workloads):
        raise ClusterError(f"PySyncObj returned {len(results)} of {len(workloads)} results; logs in {root}")
    return results


def _median(rs: Sequence[Result], k: str) -> float:
    return float(statistics.median(float(r[k]) for r in rs))


def aggregate(results: Sequence[Result]) -> dict[tuple[str, str, int], Result]:
    """Per (system, op, clients): the median of each figure over the runs, errors summed."""
    groups: dict[tuple[str, str, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r["system"], r["op"], int(r["clients"])), []).append(r)
    out: dict[tuple[str, str, int], Result] = {}
    for key, rs in groups.items():
        out[key] = {"runs": len(rs), "errors": sum(int(r["errors"]) + int(r["cancelled"]) for r in rs),
                    "timed_out": any(r["timed_out"] for r in rs),
                    **{k: _median(rs, k) for k in ("throughput", "p50_ms", "p99_ms", "completed")}}
    return out


def _ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def markdown(results: Sequence[Result], systems: Sequence[str], ops: Sequence[str],
             clients: Sequence[int]) -> str:
    agg = aggregate(results)
    peers = [s for s in systems if s != "coterie"]
    hdr = ["op", "clients"]
    for s in systems:
        hdr += [f"{s} ops/s", f"{s} p50 ms", f"{s} p99 ms"]
    if "coterie" in systems:
        for p in peers:
            hdr += [f"coterie/{p} ops/s", f"coterie/{p} p50"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for op in ops:
        for n in clients:
            row = [op, str(n)]
            for s in systems:
                g = agg.get((s, op, n))
                if g is None:
                    row += ["n/a", "", ""]
                    continue
                flag = f" ({g['errors']} failed)" if g["errors"] else ""
                flag += " (time limit)" if g["timed_out"] else ""
                row += [f"{g['throughput']:,.0f}{flag}", _ms(g["p50_ms"]), _ms(g["p99_ms"])]
            if "coterie" in systems:
                me = agg.get(("coterie", op, n))
                for p in peers:
                    g = agg.get((p, op, n))
                    if me is None or g is None or not g["throughput"] or not g["p50_ms"]:
                        row += ["", ""]
                    else:
                        row += [f"{me['throughput'] / g['throughput']:.2f}",
                                f"{me['p50_ms'] / g['p50_ms']:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def cpu_markdown(results: Sequence[Result], systems: Sequence[str], ops: Sequence[str],
                 clients: Sequence[int]) -> str:
    """CPU microseconds per operation, per system: total (leader + followers + load generator), then
    each part; medians over the runs. Empty if no result has CPU figures."""
    groups: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for r in results:
        if "cpu_us_per_op" in r:
            groups.setdefault((r["system"], r["op"], int(r["clients"])), []).append(r["cpu_us_per_op"])
    shown = [s for s in systems if any(k[0] == s for k in groups)]
    if not shown:
        return ""
    hdr = ["op", "clients"] + [f"{s} CPU µs/op: total (leader + followers + client)" for s in shown]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for op in ops:
        for n in clients:
            row = [op, str(n)]
            for s in shown:
                cs = groups.get((s, op, n))
                if not cs:
                    row.append("n/a")
                    continue
                m = {k: statistics.median(c[k] for c in cs) for k in _CPU_PARTS}
                row.append(f"{m['total']:,.0f} ({m['leader']:,.0f} + {m['followers']:,.0f} + "
                           f"{m['loader']:,.0f})")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/bench-peers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of %(default)s")
    ap.add_argument("--ops", default=",".join(DEFAULT_OPS),
                    help=f"comma-separated subset of {','.join(OPS)} (default: %(default)s)")
    ap.add_argument("--clients", default="1,16,64", help="comma-separated client counts (%(default)s)")
    ap.add_argument("--count", type=int, default=10_000, help="measured ops per workload (%(default)s)")
    ap.add_argument("--warmup", type=int, default=200, help="warm-up ops per workload (%(default)s)")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per phase (%(default)s)")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--key-size", type=int, default=8)
    ap.add_argument("--key-space", type=int, default=1000)
    ap.add_argument("--lock-shared-count", type=int, default=None,
                    help="lock round trips per lock-shared workload (default: --count)")
    ap.add_argument("--lock-ttl", type=int, default=10, help="seconds of each lock's lease (%(default)s)")
    ap.add_argument("--runs", type=int, default=1, help="fresh-cluster runs; figures are medians")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 500 ops, 50 warm-up, 20 s limit, 100 keys (overrides those options)")
    ap.add_argument("--tick-ms", type=int, default=100, help="coterie Raft tick (%(default)s)")
    ap.add_argument("--coterie-shared-client", action="store_true",
                    help="coterie: one AsyncClient (one session) shared by all tasks")
    ap.add_argument("--pysyncobj-batch", action="store_true",
                    help="PySyncObj appendEntriesUseBatch=True (its default; slow at low concurrency)")
    ap.add_argument("--etcd-bin", default="etcd")
    ap.add_argument("--profile", type=Path, default=None,
                    help="py-spy the coterie leader, a follower and the client during put at the most "
                         "clients (collapsed stacks; summarize with python -m coterie.bench.profile)")
    ap.add_argument("--profile-args", default="--gil",
                    help="extra py-spy record options (%(default)s: only samples holding the GIL, so "
                         "waiting is left out; add --native for C/Cython frames)")
    ap.add_argument("--json", type=Path, default=None, help="also write every raw result here")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    a = ap.parse_args(argv)
    a.systems = [s for s in a.systems.split(",") if s]
    a.ops = [o for o in a.ops.split(",") if o]
    a.clients = [int(n) for n in a.clients.split(",") if n]
    bad = [s for s in a.systems if s not in SYSTEMS] + [o for o in a.ops if o not in OPS]
    if bad or not a.clients or min(a.clients) < 1:
        ap.error(f"unknown systems/ops {bad} or bad --clients")
    if a.quick:
        a.count, a.warmup, a.time_limit, a.key_space = 500, 50, 20.0, 100
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    runners = {"coterie": run_coterie, "etcd": run_etcd, "pysyncobj": run_pysyncobj_all}
    tmp = Path(tempfile.mkdtemp(prefix="coterie-bench-"))
    results: list[Result] = []
    failures: list[str] = []
    try:
        for run in range(a.runs):
            for s in a.systems:
                _log(f"run {run + 1}/{a.runs}: {s}")
                try:
                    results += runners[s](a, tmp / f"run{run}" / s)
                except ClusterError as exc:
                    failures.append(f"{s} run {run + 1}: {exc}")
                    _log(f"FAILED: {exc}")
    finally:
        if a.json:
            a.json.write_text(json.dumps(results, indent=1))
        if a.keep or failures:
            _log(f"logs and data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{a.count:,} ops per workload (after {a.warmup} warm-up), {a.key_size}-byte keys, "
          f"{a.value_size}-byte values, key space {a.key_space}, bounded at {a.time_limit:g} s; "
          f"{a.runs} run(s){', medians' if a.runs > 1 else ''}.")
    if any(op in LOCK_OPS for op in a.ops):
        print(f"Locks: one op = acquire + release, a {a.lock_ttl} s lease each; lock = a name per client, "
              f"lock-shared = one name for all ({_count(a, 'lock-shared'):,} round trips); etcd: "
              f"concurrency.Mutex's algorithm on aetcd (coterie.bench.etcd_mutex).")
    print()
    print(markdown(results, a.systems, a.ops, a.clients))
    cpu = cpu_markdown(results, a.systems, a.ops, a.clients)
    if cpu:
        print("\nCPU time per operation, from /proc (less sensitive to other load on the machine than the "
              "rates; gets include the setup's puts):\n")
        print(cpu)
    if "pysyncobj" in a.systems:
        print(f"\nPySyncObj: put only, callers in the leader process, log in memory (no fsync), "
              f"appendEntriesUseBatch={a.pysyncobj_batch}.")
    for f in failures:
        print(f"\nFAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
