"""One verification run: start a cluster, run a workload under a nemesis, heal, recover, final reads,
check, report.

Phases (each logged in the history by the nemesis and in ``results.json``):

1. the backend starts ``nodes`` nodes and waits for a leader;
2. ``workload.setup()``, then ``concurrency`` worker threads and the nemesis schedule run for
   ``time_limit`` seconds;
3. the schedule heals everything (every node running and resumed, full connectivity, clean links);
4. the workers keep going for ``recovery`` seconds, then stop;
5. ``workload.final()`` (final reads, retried until they succeed) and ``workload.check()``;
6. the report is written to ``store/<workload>-<nemesis>/<timestamp>/``.

Whatever happens, the backend's teardown kills the nodes and undoes the network changes. The
verdict is ``valid`` True (every checker passed), False (a violation) or None (unknown: the check
timed out or the run could not finish, e.g. no leader after healing).
"""

from __future__ import annotations

import json
import random
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .backends import BACKENDS
from .backends.base import Backend, NodeOptions
from .history import Event, History, pairs
from .nemesis.base import Schedule, Timing, make_faults
from .workloads import WORKLOADS
from .workloads.base import WorkloadConfig


@dataclass
class RunConfig:
    workload: str = "register"
    nemesis: list[str] = field(default_factory=lambda: ["partition"])
    backend: str = "local"
    nodes: int = 3
    time_limit: float = 60.0
    recovery: float = 10.0
    concurrency: int = 6
    seed: int | None = None
    store: Path = Path("store")
    interval: tuple[float, float] = (3.0, 6.0)
    duration: tuple[float, float] = (5.0, 10.0)
    client_timeout: float = 5.0
    tick_ms: int = 50
    unsafe_local_reads: bool = False
    workload_options: dict[str, Any] = field(default_factory=dict)
    keep_data: bool = False
    build_image: bool = False
    """compose backend: build the image first (else the existing ``coterie:dev`` is used)."""


@dataclass
class RunResult:
    valid: bool | None
    path: Path
    results: dict[str, Any]

    def verdict_line(self) -> str:
        r = self.results
        word = {True: "VALID", False: "INVALID", None: "UNKNOWN"}[self.valid]
        ops = r.get("ops", {}).get("invoked", 0)
        return (f"{word}: {r['config']['workload']} under {','.join(r['config']['nemesis'])} on "
                f"{r['config']['nodes']} nodes ({r['config']['backend']}), {ops} ops, "
                f"{r['nemesis']['faults']} faults -> {self.path}")


def make_backend(cfg: RunConfig, root: Path) -> Backend:
    """The backend ``cfg.backend`` (from :data:`BACKENDS`), not yet set up."""
    opts = NodeOptions(tick_ms=cfg.tick_ms, unsafe_local_reads=cfg.unsafe_local_reads)
    return BACKENDS.load(cfg.backend)(cfg.nodes, root, opts, build_image=cfg.build_image)


def run(cfg: RunConfig, *, log: Any = print) -> RunResult:
    seed = cfg.seed if cfg.seed is not None else random.randrange(1 << 31)
    rng = random.Random(seed)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{seed % 10000:04d}"
    out = cfg.store / f"{cfg.workload}-{'+'.join(cfg.nemesis)}" / stamp
    out.mkdir(parents=True, exist_ok=True)
    history = History()
    wl_cls = WORKLOADS.load(cfg.workload)
    results: dict[str, Any] = {"config": {**asdict(cfg), "store": str(cfg.store), "seed": seed},
                               "nemesis": {"faults": 0, "errors": []}, "workload": {}, "errors": []}
    valid: bool | None = None
    backend = make_backend(cfg, out / "nodes")
    t_start = time.time()
    with backend:
        backend.start_all()
        backend.wait_for_ready(90)
        log(f"cluster of {cfg.nodes} up ({cfg.backend}); leader {backend.leader()}; running "
            f"{cfg.workload} under {','.join(cfg.nemesis)} for {cfg.time_limit:g} s")
        history = History()
        wl = wl_cls(WorkloadConfig(backend.endpoints(), history, seed=rng.randrange(1 << 31),
                                   concurrency=cfg.concurrency, timeout=cfg.client_timeout,
                                   options=cfg.workload_options))
        schedule = Schedule(backend, make_faults(cfg.nemesis, backend, random.Random(rng.random())),
                            history, random.Random(rng.random()), Timing(cfg.interval, cfg.duration))
        stop_workers = threading.Event()
        stop_nemesis = threading.Event()
        try:
            wl.setup()
            workers = [threading.Thread(target=_guard, args=(wl.worker, i, stop_workers, results),
                                        name=f"worker-{i}", daemon=True) for i in range(cfg.concurrency)]
            for w in workers:
                w.start()
            nem = threading.Thread(target=schedule.run, args=(stop_nemesis,), name="nemesis", daemon=True)
            nem.start()
            time.sleep(cfg.time_limit)
            stop_nemesis.set()
            nem.join(200)  # a membership fault's stop can take three bounded steps of 60 s
            schedule.heal_all()
            log(f"healed after {schedule.count} faults; recovering for {cfg.recovery:g} s")
            if hasattr(backend, "sync_faults"):
                backend.sync_faults()
            time.sleep(cfg.recovery)
            stop_workers.set()
            for w in workers:
                w.join(cfg.client_timeout * 3 + 30)
            backend.wait_for_leader(60)
            if "member" in cfg.nemesis:
                results["membership"] = backend.membership_report()
                if not results["membership"]["all_voters"]:
                    raise RuntimeError(f"after healing, not every node is a voter: {results['membership']}")
            wl.final()
            events = history.events()
            log(f"checking {sum(1 for e in events if e['type'] == 'invoke')} operations")
            verdict = wl.check(events)
            results["workload"] = verdict
            wl.save(out)
            valid = verdict.get("valid")
        except Exception as exc:
            results["errors"].append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            valid = None
        finally:
            stop_nemesis.set()
            stop_workers.set()
            wl.close()
            results["nemesis"] = {"faults": schedule.count, "errors": schedule.errors}
    results["valid"] = valid
    results["ops"] = op_counts(history.events())
    results["duration_seconds"] = round(time.time() - t_start, 1)
    if results["errors"] or schedule.errors:
        valid = False if valid is False else None
        results["valid"] = valid
    history.write_jsonl(str(out / "history.jsonl"))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    from .report import write_report

    try:
        write_report(out, history.events(), results)
    except Exception as exc:  # the verdict stands even if a plot fails
        results["errors"].append(f"report: {type(exc).__name__}: {exc}")
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not cfg.keep_data:
        import shutil

        shutil.rmtree(out / "nodes" / "data", ignore_errors=True)
    return RunResult(valid, out, results)


def op_counts(events: list[Event]) -> dict[str, int]:
    """How many client operations were invoked, and how many ended ok / fail / info."""
    c = {"invoked": 0, "ok": 0, "fail": 0, "info": 0}
    for _inv, done in pairs(events):
        c["invoked"] += 1
        c[done["type"] if done is not None else "info"] += 1
    return c


def _guard(fn: Any, i: int, stop: threading.Event, results: dict[str, Any]) -> None:
    try:
        fn(i, stop)
    except Exception as exc:
        results["errors"].append(f"worker {i}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
