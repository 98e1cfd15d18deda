"""The ``coterie`` command line (click).

``coterie node`` runs one node; ``coterie cluster up`` runs and supervises a local cluster of them
(``client/_devcluster.py``) and ``coterie cluster demo`` tours one; ``status``, ``get``, ``put``,
``del``, ``watch`` and ``compact`` talk to a cluster through :class:`Client` (endpoints from
``--endpoints``, else ``COTERIE_ENDPOINTS``, else the dev cluster's ``127.0.0.1:7001-7003``), printing
a table or, with ``-o json``, JSON (``watch``: one object per line).
Without ``--debug`` a failure prints one ``error: ...`` line to stderr and exits 1 (usage errors: 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sys
import threading
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
    """Left-aligned columns. A row shorter than the header lets its last cell run on over the
    remaining columns (and that cell does not widen its column)."""
    cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max([len(r[i]) for r in cells if i < len(r) - 1 or len(r) == len(headers)] or [0])
              for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
                     for r in cells)


def _kv_dict(kv: Any) -> dict[str, Any]:
    return {"key": _text(kv.key), "value": _text(kv.value), "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision, "version": kv.version, "lease": kv.lease}


def _ask_status(ep: str, timeout: float) -> tuple[Any, Any, str | None]:
    """``(StatusResponse, MemberListResponse | None, None)`` from ``ep``, or ``(None, None, error)``."""
    import grpc

    from coterie.v1 import cluster_pb2, cluster_pb2_grpc

    from ._errors import map_rpc_error

    try:
        with grpc.insecure_channel(ep) as ch:
            stub = cluster_pb2_grpc.ClusterStub(ch)
            st = stub.Status(cluster_pb2.StatusRequest(), timeout=timeout)
            try:
                ml = stub.MemberList(cluster_pb2.MemberListRequest(), timeout=timeout)
            except grpc.RpcError:
                ml = None
    except grpc.RpcError as exc:
        return None, None, map_rpc_error(exc, endpoint=ep, write=False, idempotent=True).message
    return st, ml, None


def _seconds(x: float) -> float | None:
    return None if x < 0 else round(x, 3)


def _member_rows(endpoints: list[str], timeout: float) -> list[dict[str, Any]]:
    """One row per member: every endpoint asked, plus every member that the answering members' member
    lists name (asked too if its client address is known, otherwise a row saying it was not asked).
    A row's ``error`` is None iff that member answered."""
    from concurrent.futures import ThreadPoolExecutor

    from ._codec import member_status

    asked: dict[str, tuple[Any, Any, str | None]] = {}

    def ask(eps: list[str]) -> None:
        eps = [e for e in eps if e not in asked]
        if eps:
            with ThreadPoolExecutor(max_workers=min(8, len(eps))) as pool:
                for ep, res in zip(eps, pool.map(lambda e: _ask_status(e, timeout), eps), strict=True):
                    asked[ep] = res

    ask(endpoints)
    members: dict[int, Any] = {}
    for _, ml, _ in asked.values():
        for m in ml.members if ml is not None else ():
            prev = members.get(m.id)
            if prev is None or (m.client_addr and not prev.client_addr):
                members[m.id] = m
    ask([m.client_addr for m in members.values() if m.client_addr])
    progress: dict[int, Any] = {}
    names = {mid: m.name for mid, m in members.items() if m.name}
    for st, _, _ in asked.values():
        if st is not None:
            names.setdefault(st.member_id, st.name)
            if member_status(st.name, st).role == "leader":  # its per-peer progress
                progress = {p.id: p for p in st.progress}

    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for ep, (st, _, err) in asked.items():
        m = members.get(st.member_id) if st is not None else next(
            (x for x in members.values() if x.client_addr == ep), None)
        row: dict[str, Any] = {
            "name": m.name if m is not None else "", "id": m.id if m is not None else 0,
            "client_addr": ep, "peer_addr": m.peer_addr if m is not None else "",
            "role": "", "term": 0, "leader": 0, "leader_name": "", "commit": 0, "applied": 0,
            "first_index": 0, "last_index": 0, "log_entries": 0, "revision": 0,
            "leader_contact_seconds": None, "progress": None, "error": err,
        }
        if st is not None:
            if st.member_id in seen:
                continue  # the same member under two endpoints
            ms = member_status(ep, st)
            first, last = int(st.first_index), int(st.last_index)
            row.update(name=ms.name, id=ms.member_id, role=ms.role, term=ms.term, leader=ms.leader_id,
                       leader_name=names.get(ms.leader_id, ""), commit=ms.commit_index,
                       applied=ms.applied_index, first_index=first, last_index=last,
                       log_entries=max(0, last - first + 1), revision=ms.revision,
                       leader_contact_seconds=(_seconds(st.leader_contact_seconds)
                                               if ms.role != "leader" else None))
        if row["id"]:
            seen.add(row["id"])
            p = progress.get(row["id"])
            if p is not None:
                row["progress"] = {"match": int(p.match), "next": int(p.next), "state": int(p.state),
                                   "recent_active": bool(p.recent_active),
                                   "last_contact_seconds": _seconds(p.last_contact_seconds)}
        rows.append(row)
    for mid, m in members.items():
        if mid not in seen:
            rows.append({"name": m.name, "id": mid, "client_addr": m.client_addr, "peer_addr": m.peer_addr,
                         "role": "", "term": 0, "leader": 0, "leader_name": "", "commit": 0, "applied": 0,
                         "first_index": 0, "last_index": 0, "log_entries": 0, "revision": 0,
                         "leader_contact_seconds": None, "progress": None,
                         "error": "not asked: its client address is unknown (add it to --endpoints)"})
    rows.sort(key=lambda r: (r["name"] == "", r["name"], r["client_addr"]))
    return rows


def _last_contact(r: dict[str, Any]) -> str:
    """A follower's time since it heard from the leader (its own view, else the leader's view of it);
    ``-`` if neither is known (the server reports "never" and "not tracked" alike as negative)."""
    if r["role"] == "leader":
        return "-"
    s = r["leader_contact_seconds"]
    if s is None and r["progress"] is not None:
        s = r["progress"]["last_contact_seconds"]
    return "-" if s is None else f"{s:.1f}s ago"


@main.command()
@_output_option
@click.pass_context
@_handles_errors
def status(ctx: click.Context, output: str | None) -> None:
    """One row per member: name, addresses, role, term, leader, commit and applied index, log size
    (entries held), last contact with the leader. Exits 1 if no member answers or none knows a leader."""
    from ._router import parse_endpoints

    eps = parse_endpoints(ctx.obj["endpoints"])
    rows = _member_rows(eps, min(float(ctx.obj["timeout"]), 2.0))
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        hdr = ["NAME", "ID", "CLIENT ADDR", "PEER ADDR", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED",
               "LOG", "LAST CONTACT"]
        body: list[list[Any]] = []
        for r in rows:
            line: list[Any] = [r["name"] or "-", f"{r['id']:x}" if r["id"] else "-", r["client_addr"] or "-",
                               r["peer_addr"] or "-"]
            if r["error"]:
                line += [f"unreachable: {r['error']}" if r["client_addr"] else r["error"]]
            else:
                leader = r["leader_name"] or (f"{r['leader']:x}" if r["leader"] else "none")
                line += [r["role"], r["term"], leader, r["commit"], r["applied"], r["log_entries"],
                         _last_contact(r)]
            body.append(line)
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


def _event_dict(ev: Any) -> dict[str, Any]:
    return {"type": ev.type, "revision": ev.revision, "kv": _kv_dict(ev.kv),
            "prev_kv": _kv_dict(ev.prev_kv) if ev.prev_kv is not None else None}


@main.command()
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--rev", type=click.IntRange(min=0), default=0,
              help="Start at this revision, replaying history (0: changes from now on).")
@click.option("--prev-kv", is_flag=True, help="Also print the value each event replaced.")
@click.option("--max-events", type=click.IntRange(min=1), default=None,
              help="Stop (exit 0) after this many events.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop (exit 0) after this many seconds.")
@_output_option
@click.pass_context
@_handles_errors
def watch(ctx: click.Context, key: str, prefix: bool, rev: int, prev_kv: bool, max_events: int | None,
          duration: float | None, output: str | None) -> None:
    """Print each change to KEY (or under it) as it happens, one line per event (-o json: one JSON
    object per line), until Ctrl-C, --max-events or --duration. Events come once each, in revision
    order, even if the member streaming them fails (the watch resumes on another)."""
    as_json = _fmt(ctx, output) == "json"
    seen = 0
    with _client(ctx) as c, contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the normal way to stop
        w = c.watch_prefix(key, start_revision=rev, prev_kv=prev_kv) if prefix else \
            c.watch(key, start_revision=rev, prev_kv=prev_kv)
        timer = threading.Timer(duration, w.close) if duration is not None else None
        try:
            if timer is not None:
                timer.daemon = True
                timer.start()
            for ev in w:
                if as_json:
                    click.echo(json.dumps(_event_dict(ev)))
                else:
                    line = f"{ev.revision} {ev.type} {_text(ev.kv.key)}"
                    if ev.type == "PUT":
                        line += f" {_text(ev.kv.value)}"
                    if prev_kv:
                        line += f" (prev: {_text(ev.prev_kv.value) if ev.prev_kv is not None else '-'})"
                    click.echo(line)
                seen += 1
                if max_events is not None and seen >= max_events:
                    break
        finally:
            if timer is not None:
                timer.cancel()
            w.close()


@main.group()
def cluster() -> None:
    """A local development cluster."""


@cluster.command("up")
@click.option("--nodes", type=click.IntRange(1, 99), default=3, show_default=True, help="How many nodes.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"),
              show_default=True, help="Node N keeps its data in DIR/nN and logs to DIR/nN.log.")
@click.option("--base-port", type=click.IntRange(1, 65535), default=7001, show_default=True,
              help="Client port of n1; nN listens on BASE+N-1.")
@click.option("--peer-base-port", type=click.IntRange(1, 65535), default=None,
              help="Raft port of n1 [default: base port + 100].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address every node listens on.")
@click.option("--tick-ms", type=click.IntRange(min=1), default=100, show_default=True,
              help="Milliseconds per Raft tick.")
@click.option("--log-level", default="info", show_default=True, help="The nodes' log level.")
@click.option("--restart/--no-restart", default=True, show_default=True,
              help="Restart a node that dies (with back-off), or only report it.")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL when stopping.")
@click.option("--ready-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Warn if no leader is elected within this many seconds.")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the endpoints to this file once a leader is elected.")
@click.option("--clean", is_flag=True, help="Delete the nodes' data directories and logs first.")
@click.pass_context
def cluster_up(ctx: click.Context, nodes: int, data_dir: Path, base_port: int, peer_base_port: int | None,
               host: str, tick_ms: int, log_level: str, restart: bool, grace: float, ready_timeout: float,
               ready_file: Path | None, clean: bool) -> None:
    """Run a local NODES-node cluster as child processes in the foreground: print the endpoints,
    restart (or report) a node that dies, and on Ctrl-C or SIGTERM stop every node (SIGTERM, then
    SIGKILL after --grace seconds). The defaults match the CLI's default endpoints."""
    import shutil

    from . import _devcluster as dc

    try:
        specs = dc.plan(nodes, data_dir, base_port=base_port, peer_base_port=peer_base_port, host=host)
    except dc.DevClusterError as exc:
        raise click.BadParameter(str(exc)) from exc
    if clean:
        for sp in specs:
            shutil.rmtree(sp.data_dir, ignore_errors=True)
            sp.log_path.unlink(missing_ok=True)
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)
    eps = dc.endpoints(specs)
    click.echo(f"starting {nodes} node{'s' if nodes > 1 else ''}; endpoints {eps}")
    if eps != DEFAULT_ENDPOINTS:
        click.echo(f"  export COTERIE_ENDPOINTS={eps}")
    sup = dc.Supervisor(specs, tick_ms=tick_ms, log_level=log_level, restart=restart, grace=grace,
                        out=click.echo, err=lambda m: click.echo(m, err=True))
    stop = threading.Event()
    try:
        with dc.stop_on_signals(stop):
            rc = sup.run(stop, ready_timeout=ready_timeout, ready_file=ready_file,
                         on_ready=lambda *_: click.echo("press Ctrl-C to stop the cluster"))
    except dc.DevClusterError as exc:
        _fail(ctx, exc)
        return
    ctx.exit(rc)


@cluster.command("demo")
@click.pass_context
@_handles_errors
def cluster_demo(ctx: click.Context) -> None:
    """A short tour against the cluster (writes under demo/): puts, a get, a txn and a watch."""
    from . import _devcluster as dc

    try:
        dc.run_demo(ctx.obj["endpoints"], timeout=max(float(ctx.obj["timeout"]), 5.0))
    except dc.DevClusterError as exc:
        _fail(ctx, exc)


# ============================================================================== membership


def _member_dicts(members: list[Any]) -> list[dict[str, Any]]:
    return [{"id": m.id, "name": m.name, "peer_addr": m.peer_addr, "client_addr": m.client_addr,
             "learner": m.is_learner} for m in members]


def _print_members(ctx: click.Context, output: str | None, members: list[Any]) -> None:
    rows = _member_dicts(members)
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(_table(["ID", "NAME", "PEER ADDR", "CLIENT ADDR", "VOTER"],
                      [[r["id"], r["name"], r["peer_addr"], r["client_addr"] or "-",
                        "learner" if r["learner"] else "voter"] for r in rows]))


@main.group()
def member() -> None:
    """List, add, promote and remove members (one change at a time, each returns once committed)."""


@member.command("list")
@click.option("--serializable", is_flag=True, help="Answer from the member asked (may be stale).")
@_output_option
@click.pass_context
@_handles_errors
def member_list(ctx: click.Context, serializable: bool, output: str | None) -> None:
    """Every member: id, name, addresses, voter or learner."""
    with _client(ctx) as c:
        members = c.member_list(linearizable=not serializable)
    _print_members(ctx, output, members)


@member.command("add")
@click.argument("name")
@click.option("--peer-addr", required=True, help="HOST:PORT the new member listens on for Raft traffic.")
@click.option("--client-addr", default="", help="HOST:PORT of the new member's client services.")
@click.option("--learner", is_flag=True, help="Join as a non-voting learner; promote it once caught up.")
@_output_option
@click.pass_context
@_handles_errors
def member_add(ctx: click.Context, name: str, peer_addr: str, client_addr: str, learner: bool,
               output: str | None) -> None:
    """Add member NAME; then start it with `coterie node ... --initial-cluster-state existing`."""
    with _client(ctx) as c:
        m = c.member_add(peer_addr, name=name, client_addr=client_addr, learner=learner)
        members = c.member_list()
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"added": _member_dicts([m])[0], "members": _member_dicts(members)}, indent=2))
        return
    click.echo(f"added {m.name} with id {m.id} ({'learner' if m.is_learner else 'voter'})")
    _print_members(ctx, output, members)


def _member_id(c: Any, ref: str) -> int:
    """A member id from a decimal id or a member name."""
    if ref.isdigit():
        return int(ref)
    for m in c.member_list():
        if m.name == ref:
            return int(m.id)
    raise ValueError(f"no member named {ref!r}")


@member.command("remove")
@click.argument("member_ref", metavar="ID|NAME")
@_output_option
@click.pass_context
@_handles_errors
def member_remove(ctx: click.Context, member_ref: str, output: str | None) -> None:
    """Remove a member (it stops by itself once it learns it was removed)."""
    with _client(ctx) as c:
        members = c.member_remove(_member_id(c, member_ref))
    _print_members(ctx, output, members)


@member.command("promote")
@click.argument("member_ref", metavar="ID|NAME")
@_output_option
@click.pass_context
@_handles_errors
def member_promote(ctx: click.Context, member_ref: str, output: str | None) -> None:
    """Make a learner a voter (refused while it is far behind the leader)."""
    with _client(ctx) as c:
        members = c.member_promote(_member_id(c, member_ref))
    _print_members(ctx, output, members)


# ============================================================================== node


def _load_node_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    """``--config FILE``: a TOML table whose keys are ``coterie node`` option names (``data-dir`` or
    ``data_dir``), optionally under ``[node]``. Command-line options and ``COTERIE_NODE_*``
    environment variables override it."""
    if value is None:
        return
    import tomllib

    try:
        with open(value, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"cannot read {value}: {exc}", ctx=ctx, param=_param) from exc
    table = doc.get("node", doc)
    if not isinstance(table, dict):
        raise click.BadParameter(f"{value}: [node] must be a table", ctx=ctx, param=_param)
    known = {p.name for p in ctx.command.params if p.name and p.name != "config"}
    values = {str(k).replace("-", "_"): v for k, v in table.items()}
    unknown = sorted(k for k in values if k not in known)
    if unknown:
        raise click.BadParameter(f"{value}: unknown settings {', '.join(unknown)} (known: "
                                 f"{', '.join(sorted(known))})", ctx=ctx, param=_param)
    ctx.default_map = {**(ctx.default_map or {}), **values}


@main.command()
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              is_eager=True, expose_value=False, callback=_load_node_config,
              help="A TOML file of these options (e.g. data-dir = \"/var/lib/coterie\"); flags and "
                   "COTERIE_NODE_* variables override it.")
@click.option("--name", required=True, help="This node's name in --initial-cluster (env COTERIE_NODE_NAME).")
@click.option("--data-dir", required=True, type=click.Path(path_type=Path), help="WAL and snapshots.")
@click.option("--client-addr", required=True, help="HOST:PORT for clients (KV, Session, Cluster).")
@click.option("--peer-addr", required=True, help="HOST:PORT for Raft traffic between nodes.")
@click.option("--initial-cluster", required=True, help="NAME=PEERHOST:PORT,... for every member.")
@click.option("--initial-cluster-state", type=click.Choice(["new", "existing"]), default="new",
              show_default=True,
              help="new: bootstrap the --initial-cluster. existing: join a running cluster after "
                   "MemberAdd (--initial-cluster lists members to ask, and this node).")
@click.option("--snapshot-entries", default=10_000, show_default=True, hidden=True,
              help="Applied entries between state machine snapshots.")
@click.option("--snapshot-keep", default=1_000, show_default=True, hidden=True,
              help="Log entries kept behind a snapshot.")
@click.option("--tick-ms", default=100, show_default=True, help="Milliseconds per Raft tick.")
@click.option("--election-ticks", default=10, show_default=True, help="Ticks before an election.")
@click.option("--log-level", default="info", show_default=True)
@click.option("--max-pending-proposals", default=4096, show_default=True,
              help="Proposals awaiting their outcome before new writes get RESOURCE_EXHAUSTED.")
@click.option("--enable-fault-injection", is_flag=True, hidden=True,
              help="Peer-link fault hooks for the Jepsen-style local backend (tests only).")
@click.option("--unsafe-local-reads", is_flag=True, hidden=True,
              help="BROKEN ON PURPOSE: reads skip ReadIndex (tests of the Jepsen-style checker only).")
@click.pass_context
def node(ctx: click.Context, name: str, data_dir: Path, client_addr: str, peer_addr: str,
         initial_cluster: str, initial_cluster_state: str, snapshot_entries: int, snapshot_keep: int,
         tick_ms: int, election_ticks: int, log_level: str,
         max_pending_proposals: int, enable_fault_injection: bool, unsafe_local_reads: bool = False) -> None:
    """Run one node until SIGTERM (graceful) or SIGKILL (nothing acknowledged is lost)."""
    from coterie.node.server.app import Node, NodeConfig, NodeConfigError, parse_initial_cluster

    setup_logging(log_level)
    try:
        cfg = NodeConfig(name=name, data_dir=data_dir, client_addr=client_addr, peer_addr=peer_addr,
                         initial_cluster=parse_initial_cluster(initial_cluster),
                         initial_cluster_state=initial_cluster_state,
                         snapshot_entries=snapshot_entries, snapshot_keep=snapshot_keep,
                         tick_interval=tick_ms / 1000, election_tick=election_ticks,
                         fault_injection=enable_fault_injection,
                         max_pending_proposals=max_pending_proposals, unsafe_local_reads=unsafe_local_reads)
        asyncio.run(Node(cfg).serve_forever())
    except NodeConfigError as exc:
        if ctx.obj["debug"]:
            raise
        raise click.ClickException(str(exc)) from exc


from ._bench import bench as _bench_cmd  # noqa: E402 - registered last; see client/_bench.py

main.add_command(_bench_cmd)

from coterie.verify.cli import verify as _verify_cmd  # noqa: E402 - Jepsen-style suite, jepsen-style/verify

main.add_command(_verify_cmd)

if __name__ == "__main__":
    main()
