"""The ``coterie`` command line (click).

``coterie node`` runs one node; ``coterie cluster up`` runs and supervises a local cluster of them;
``status``, ``get``, ``put``, ``del`` and ``compact`` talk to a cluster through :class:`Client`.
Without ``--debug`` a failure prints one ``error: ...`` line to stderr and exits 1.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

DEFAULT_ENDPOINTS = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
F = TypeVar("F", bound=Callable[..., Any])

_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every structured field."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in _STD_ATTRS:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str) -> None:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "COTERIE"})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--endpoints", envvar="COTERIE_ENDPOINTS", default=DEFAULT_ENDPOINTS, show_default=True,
              help="Comma-separated HOST:PORT client addresses (env COTERIE_ENDPOINTS).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--timeout", type=float, default=5.0, show_default=True,
              help="Seconds per request (retries included).")
@click.pass_context
def main(ctx: click.Context, debug: bool, endpoints: str, output: str, timeout: float) -> None:
    """coterie: a coordination service on Raft."""
    ctx.obj = {"debug": debug, "endpoints": endpoints, "output": output, "timeout": timeout}


# ============================================================================== client commands


def _output_option(f: F) -> F:
    opt = click.option("-o", "--output", "output", type=click.Choice(["table", "json"]), default=None,
                       help="Output format (default: the global -o).")
    return opt(f)


def _fmt(ctx: click.Context, output: str | None) -> str:
    return output or str(ctx.obj["output"])


def _fail(ctx: click.Context, exc: BaseException) -> None:
    if ctx.obj.get("debug"):
        raise exc
    msg = " ".join(str(exc).split()) or type(exc).__name__
    click.echo(f"error: {msg}", err=True)
    ctx.exit(1)


def _handles_errors(f: F) -> F:
    """Turn client failures into one ``error:`` line and exit code 1 (the traceback with --debug)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import grpc  # type: ignore[import-untyped]

        from .errors import CoterieError

        ctx = click.get_current_context()
        try:
            return f(*args, **kwargs)
        except (CoterieError, grpc.RpcError, OSError, ValueError) as exc:
            _fail(ctx, exc)
    return wrapper  # type: ignore[return-value]


def _client(ctx: click.Context) -> Any:
    from . import Client

    return Client(ctx.obj["endpoints"], timeout=ctx.obj["timeout"])


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in cells)


def _kv_dict(kv: Any) -> dict[str, Any]:
    return {"key": _text(kv.key), "value": _text(kv.value), "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision, "version": kv.version, "lease": kv.lease}


def _member_rows(endpoints: list[str], timeout: float) -> list[dict[str, Any]]:
    import grpc
    from coterie.v1 import cluster_pb2, cluster_pb2_grpc

    from . import _core

    rows: list[dict[str, Any]] = []
    for ep in endpoints:
        try:
            with grpc.insecure_channel(ep) as ch:
                pb = cluster_pb2_grpc.ClusterStub(ch).Status(cluster_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            err = _core.map_rpc_error(exc, endpoint=ep, write=False, idempotent=True)
            rows.append({"name": "", "id": 0, "client_addr": ep, "role": "", "term": 0, "leader": 0,
                         "commit": 0, "applied": 0, "last_index": 0, "error": err.message})
            continue
        m = _core.member_status(ep, pb)
        rows.append({"name": m.name, "id": m.member_id, "client_addr": ep, "role": m.role,
                     "term": m.term, "leader": m.leader_id, "commit": m.commit_index,
                     "applied": m.applied_index, "last_index": int(pb.last_index), "error": None})
    return rows


@main.command()
@_output_option
@click.pass_context
@_handles_errors
def status(ctx: click.Context, output: str | None) -> None:
    """One row per member: role, term, leader, commit/applied/last index. Exits 1 without a leader."""
    from . import _core

    eps = _core.parse_endpoints(ctx.obj["endpoints"])
    rows = _member_rows(eps, min(float(ctx.obj["timeout"]), 2.0))
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        hdr = ["NAME", "ID", "CLIENT ADDR", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST INDEX"]
        keys = ["name", "id", "client_addr", "role", "term", "leader", "commit", "applied", "last_index"]
        body = [[f"{r[k]:x}" if k in ("id", "leader") and r[k] else r[k] if r[k] else
                 ("-" if k != "client_addr" else r[k]) for k in keys] for r in rows]
        for r, line in zip(rows, body, strict=True):
            if r["error"]:
                line[3] = f"unreachable: {r['error']}"[:60]
                line[4:] = [""] * 5
        click.echo(_table(hdr, body))
    if all(r["error"] for r in rows):
        _fail(ctx, click.ClickException(f"no member answered ({', '.join(eps)})"))
    if not any(r["role"] == "leader" or (r["leader"] and not r["error"]) for r in rows):
        _fail(ctx, click.ClickException("no leader elected"))


@main.command()
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--rev", type=int, default=0, help="Read at this revision (0: the latest).")
@click.option("--serializable", is_flag=True, help="Serve from the member asked (may be stale).")
@_output_option
@click.pass_context
@_handles_errors
def get(ctx: click.Context, key: str, prefix: bool, rev: int, serializable: bool,
        output: str | None) -> None:
    """Print KEY (or every key under it with --prefix); nothing if absent."""
    with _client(ctx) as c:
        if prefix:
            kvs = c.get_prefix(key, revision=rev, serializable=serializable)
        else:
            kv = c.get(key, revision=rev, serializable=serializable)
            kvs = [kv] if kv is not None else []
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps([_kv_dict(kv) for kv in kvs], indent=2))
    elif kvs:
        click.echo(_table(["KEY", "VALUE", "MOD REV", "VERSION"],
                          [[_text(kv.key), _text(kv.value), kv.mod_revision, kv.version] for kv in kvs]))


@main.command()
@click.argument("key")
@click.argument("value")
@_output_option
@click.pass_context
@_handles_errors
def put(ctx: click.Context, key: str, value: str, output: str | None) -> None:
    """Set KEY to VALUE; print the new revision."""
    with _client(ctx) as c:
        r = c.put(key, value)
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"revision": r.revision, "prev": _kv_dict(r.prev) if r.prev else None}))
    else:
        click.echo(f"OK revision {r.revision}")


@main.command("del")
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@_output_option
@click.pass_context
@_handles_errors
def delete(ctx: click.Context, key: str, prefix: bool, output: str | None) -> None:
    """Delete KEY (or every key under it); print how many were deleted."""
    with _client(ctx) as c:
        n = c.delete_prefix(key) if prefix else c.delete(key)
    click.echo(json.dumps({"deleted": n}) if _fmt(ctx, output) == "json" else str(n))


@main.command()
@click.argument("rev", type=int)
@_output_option
@click.pass_context
@_handles_errors
def compact(ctx: click.Context, rev: int, output: str | None) -> None:
    """Drop the history below revision REV."""
    with _client(ctx) as c:
        store_rev = c.compact(rev)
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"compacted": rev, "revision": store_rev}))
    else:
        click.echo(f"compacted at revision {rev} (store revision {store_rev})")


@main.command()
@click.option("--name", required=True, help="This node's name in --initial-cluster.")
@click.option("--data-dir", required=True, type=click.Path(path_type=Path), help="WAL and snapshots.")
@click.option("--client-addr", required=True, help="HOST:PORT for clients (KV, Session, Cluster).")
@click.option("--peer-addr", required=True, help="HOST:PORT for Raft traffic between nodes.")
@click.option("--initial-cluster", required=True, help="NAME=PEERHOST:PORT,... for every member.")
@click.option("--tick-ms", default=100, show_default=True, help="Milliseconds per Raft tick.")
@click.option("--election-ticks", default=10, show_default=True, help="Ticks before an election.")
@click.option("--log-level", default="info", show_default=True)
@click.option("--max-pending-proposals", default=4096, show_default=True,
              help="Proposals awaiting their outcome before new writes get RESOURCE_EXHAUSTED.")
@click.option("--enable-fault-injection", is_flag=True, hidden=True,
              help="Peer-link fault hooks for the Jepsen-style local backend (tests only).")
@click.pass_context
def node(ctx: click.Context, name: str, data_dir: Path, client_addr: str, peer_addr: str,
         initial_cluster: str, tick_ms: int, election_ticks: int, log_level: str,
         max_pending_proposals: int, enable_fault_injection: bool) -> None:
    """Run one node until SIGTERM (graceful) or SIGKILL (nothing acknowledged is lost)."""
    from coterie.node.server.app import Node, NodeConfig, NodeConfigError, parse_initial_cluster

    setup_logging(log_level)
    try:
        cfg = NodeConfig(name=name, data_dir=data_dir, client_addr=client_addr, peer_addr=peer_addr,
                         initial_cluster=parse_initial_cluster(initial_cluster),
                         tick_interval=tick_ms / 1000, election_tick=election_ticks,
                         fault_injection=enable_fault_injection,
                         max_pending_proposals=max_pending_proposals)
        asyncio.run(Node(cfg).serve_forever())
    except NodeConfigError as exc:
        if ctx.obj["debug"]:
            raise
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
