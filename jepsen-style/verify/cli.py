"""``coterie verify ...`` and ``python jepsen-style/run.py ...``: one verification run.

Prints progress, then a one-line verdict and the report's path; exits 0 if every checker passed,
1 on a violation, 2 if the verdict is unknown (the check timed out or the run could not finish).
Heavy imports (matplotlib, the runner) happen only when a run starts; the choices and their help
come from the registries (:data:`~coterie.verify.backends.BACKENDS`,
:data:`~coterie.verify.nemesis.NEMESES`, :data:`~coterie.verify.workloads.WORKLOADS`), which import
nothing until an entry is loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .backends import BACKENDS
from .nemesis import NEMESES
from .workloads import WORKLOADS


def _range(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    a = float(lo)
    b = float(hi) if hi else a
    if not 0 <= a <= b:
        raise click.BadParameter(f"expected LOW-HIGH seconds, got {text!r}")
    return a, b


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workload", "-w", default="register", show_default=True,
              type=click.Choice(WORKLOADS.names()),
              help=f"What the clients do and how it is checked. {WORKLOADS.describe()}.")
@click.option("--nemesis", "-n", default="partition", show_default=True,
              help=f"Comma-separated faults. {NEMESES.describe()}.")
@click.option("--backend", "-b", default="local", show_default=True, type=click.Choice(BACKENDS.names()),
              help=f"{BACKENDS.describe()}.")
@click.option("--nodes", default=3, show_default=True, help="Cluster size.")
@click.option("--time-limit", default=60.0, show_default=True, help="Seconds of workload under faults.")
@click.option("--recovery", default=10.0, show_default=True, help="Seconds of workload after healing.")
@click.option("--concurrency", "-c", default=6, show_default=True, help="Client worker threads.")
@click.option("--interval", default="3-6", show_default=True, help="Quiet seconds between faults (LOW-HIGH).")
@click.option("--duration", default="5-10", show_default=True, help="Seconds each fault is held (LOW-HIGH).")
@click.option("--seed", type=int, default=None,
              help="Random seed (default: random, recorded in results.json).")
@click.option("--store", default="store", show_default=True, type=click.Path(path_type=Path),
              help="Where reports go: STORE/<workload>-<nemesis>/<timestamp>/.")
@click.option("--client-timeout", default=5.0, show_default=True, help="Client deadline per call (s).")
@click.option("--tick-ms", default=50, show_default=True, help="Raft tick of the nodes (ms).")
@click.option("--keep-data", is_flag=True, help="Keep the nodes' data directories in the report.")
@click.option("--build-image", is_flag=True,
              help="compose backend: build the image from the Dockerfile first (BASE_IMAGE from the "
                   "environment); else the existing coterie:dev (or $COTERIE_IMAGE) is used.")
@click.option("--unsafe-local-reads", is_flag=True, hidden=True,
              help="Start nodes in the BROKEN read mode (the checker must catch it).")
@click.option("--opt", multiple=True, help="Workload option KEY=VALUE (e.g. keys=3, ops_per_key=200).")
def verify(workload: str, nemesis: str, backend: str, nodes: int, time_limit: float, recovery: float,
           concurrency: int, interval: str, duration: str, seed: int | None, store: Path,
           client_timeout: float, tick_ms: int, keep_data: bool, build_image: bool, unsafe_local_reads: bool,
           opt: tuple[str, ...]) -> None:
    """Run a Jepsen-style test: a workload against real nodes while a nemesis injects faults."""
    from .runner import RunConfig, run

    names = [n.strip() for n in nemesis.split(",") if n.strip()]
    for n in names:
        try:
            NEMESES.validate(n)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--nemesis") from None
    options: dict[str, object] = {}
    for kv in opt:
        k, sep, v = kv.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {kv!r}", param_hint="--opt")
        options[k] = v
    cfg = RunConfig(workload=workload, nemesis=names or ["none"], backend=backend, nodes=nodes,
                    time_limit=time_limit, recovery=recovery, concurrency=concurrency, seed=seed,
                    store=store, interval=_range(interval), duration=_range(duration),
                    client_timeout=client_timeout, tick_ms=tick_ms, unsafe_local_reads=unsafe_local_reads,
                    workload_options=options, keep_data=keep_data, build_image=build_image)
    res = run(cfg, log=lambda m: click.echo(f"verify: {m}", err=True))
    expl = res.results.get("workload", {}).get("explanation")
    if expl:
        click.echo(expl, err=True)
    for e in res.results.get("errors", []):
        click.echo(f"error: {e.splitlines()[0]}", err=True)
    click.echo(res.verdict_line())
    sys.exit({True: 0, False: 1, None: 2}[res.valid])


def main(argv: list[str] | None = None) -> None:
    verify.main(args=argv, prog_name="coterie verify")
