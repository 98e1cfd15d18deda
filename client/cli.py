"""The ``coterie`` command line (click).

``status``, ``get``, ``put``,
``del``, ``watch`` and ``compact`` talk to a cluster through :class:`Client` (endpoints from
``--endpoints``, else ``COTERIE_ENDPOINTS``, else the dev cluster's ``127.0.0.1:7001-7003``), printing
a table or, with ``-o json``, JSON (``watch``: one object per line).
The tools' commands live with the tools and are loaded only when invoked (:data:`TOOL_COMMANDS`), so
a client-only install (``pip install coterie``) imports nothing of the node: ``coterie node`` and
``coterie cluster up|demo`` (:mod:`coterie.node.cli`, extra ``server``), ``coterie bench``
(:mod:`coterie.bench.load`, extra ``server``) and ``coterie verify`` (:mod:`coterie.verify.cli`, extra
``verify``). Without the extra such a command fails with one line naming what to install.
Without ``--debug`` a failure prints one ``error: ...`` line to stderr and exits 1 (usage errors: 2).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib
import json
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ._call import DEFAULT_TIMEOUT

DEFAULT_ENDPOINTS = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
F = TypeVar("F", bound=Callable[..., Any])

TOOL_COMMANDS: dict[str, tuple[str, str, str]] = {
    "node": ("coterie.node.cli", "node", "server"),
    "cluster": ("coterie.node.cli", "cluster", "server"),
    "bench": ("coterie.bench.load", "bench", "server"),
    "verify": ("coterie.verify.cli", "verify", "verify"),
}
"""Commands loaded on first use: name -> (module, attribute, the pip extra they need)."""


class _Main(click.Group):
    """The ``coterie`` group: the client commands defined here plus :data:`TOOL_COMMANDS`, imported
    only when named (``--help`` lists them without importing them)."""

    lazy: dict[str, tuple[str, str, str]] = TOOL_COMMANDS
    """This group's commands loaded on first use (as :data:`TOOL_COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module, attr, extra = self.lazy[cmd_name]
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            missing = exc.name or str(exc)

            @click.command(cmd_name, context_settings={"ignore_unknown_options": True},
                           help=f"(needs: pip install 'coterie[{extra}]')", add_help_option=False)
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise click.ClickException(f"'coterie {cmd_name}' needs the {extra} extra "
                                           f"(missing module {missing}): pip install 'coterie[{extra}]'")

            return unavailable
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{module}.{attr} is not a click command")
        self.add_command(cmd, cmd_name)
        return cmd


@click.group(cls=_Main,
             context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "COTERIE"})
@click.version_option(None, "--version", package_name="coterie", prog_name="coterie",
                      message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--endpoints", envvar="COTERIE_ENDPOINTS", default=DEFAULT_ENDPOINTS, show_default=True,
              help="Comma-separated HOST:PORT client addresses (env COTERIE_ENDPOINTS).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT,
              show_default=True, help="Seconds per request, retries included (the client's default).")
@click.option("--base64", "b64", is_flag=True,
              help="With -o json: every key and value as base64 (`key_base64`, `value_base64`), as "
                   "etcdctl's -w json. Default: UTF-8 text (`key`, `value`), and base64 only for those "
                   "that are not UTF-8 text.")
@click.pass_context
def main(ctx: click.Context, debug: bool, endpoints: str, output: str, timeout: float, b64: bool) -> None:
    """coterie: a coordination service on Raft."""
    ctx.obj = {"debug": debug, "endpoints": endpoints, "output": output, "timeout": timeout, "base64": b64}


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


def _arg(s: str) -> bytes:
    """A command-line argument as the bytes given (Python decodes argv with ``surrogateescape``, so
    a key that is not UTF-8 comes back as the bytes typed)."""
    return s.encode("utf-8", "surrogateescape")


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _text(b: bytes) -> str:
    """``b`` for a terminal: UTF-8 text as is, but a backslash as ``\\\\``, control characters and
    bytes that are not UTF-8 as ``\\n``, ``\\xNN``, ``\\u200e``..., so nothing printed can move the
    cursor or recolour the terminal, and two different keys never print the same."""
    out = []
    for ch in b.decode("utf-8", errors="surrogateescape"):
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def _json_bytes(out: dict[str, Any], field: str, b: bytes) -> None:
    """Set ``field`` of a JSON object to ``b``: as UTF-8 text, or as ``<field>_base64`` when it is not
    UTF-8 text or the global ``--base64`` is given, so the two can never be confused."""
    ctx = click.get_current_context(silent=True)
    if not (ctx is not None and ctx.find_root().obj and ctx.find_root().obj.get("base64")):
        try:
            out[field] = b.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
    out[f"{field}_base64"] = base64.b64encode(b).decode("ascii")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns. A row shorter than the header lets its last cell run on over the
    remaining columns (and that cell does not widen its column)."""
    cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max([len(r[i]) for r in cells if i < len(r) - 1 or len(r) == len(headers)] or [0])
              for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
                     for r in cells)


def _kv_dict(kv: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _json_bytes(out, "key", kv.key)
    _json_bytes(out, "value", kv.value)
    out.update({"create_revision": kv.create_revision, "mod_revision": kv.mod_revision,
                "version": kv.version, "lease": kv.lease})
    return out


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
    # A member that answered at an endpoint given is not asked again at the address it advertises
    # (behind NAT or in containers, that address may mean nothing here).
    answered = {st.member_id for st, _, _ in asked.values() if st is not None}
    ask([m.client_addr for m in members.values() if m.client_addr and m.id not in answered])
    progress: dict[int, Any] = {}
    names = {mid: m.name for mid, m in members.items() if m.name}
    for st, _, _ in asked.values():
        if st is not None:
            names.setdefault(st.member_id, st.name)
            if member_status(st.name, st).role == "leader":  # its per-peer progress
                progress = {p.id: p for p in st.progress}

    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    # One row per member, by id: the answers first, then the failures of members no endpoint answered
    # for (a member is asked at most at the endpoints given and at its advertised address).
    order = sorted(asked.items(), key=lambda item: item[1][0] is None)
    for ep, (st, _, err) in order:
        m = members.get(st.member_id) if st is not None else next(
            (x for x in members.values() if x.client_addr == ep), None)
        row: dict[str, Any] = {
            "name": m.name if m is not None else "", "id": m.id if m is not None else 0,
            "client_addr": ep, "peer_addr": m.peer_addr if m is not None else "",
            "role": "", "term": 0, "leader": 0, "leader_name": "", "commit": 0, "applied": 0,
            "first_index": 0, "last_index": 0, "log_entries": 0, "revision": 0,
            "leader_contact_seconds": None, "progress": None, "error": err, "leases": None, "locks": None,
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
                                               if ms.role != "leader" else None),
                       # live leases and held locks in the member's applied state (None: a stub or a
                       # server from before the fields existed)
                       leases=_opt_int(st, "leases"), locks=_opt_int(st, "locks"))
        if row["id"]:
            if st is None and row["id"] in seen:
                continue  # that member answered at another endpoint
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
                         "leader_contact_seconds": None, "progress": None, "leases": None, "locks": None,
                         "error": "not asked: its client address is unknown (add it to --endpoints)"})
    rows.sort(key=lambda r: (r["name"] == "", r["name"], r["client_addr"]))
    return rows


def _opt_int(msg: Any, field: str) -> int | None:
    v = getattr(msg, field, None)
    return None if v is None else int(v)


def _dash(v: object) -> object:
    return "-" if v is None else v


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
    (entries held), live leases and held locks (its applied state), last contact with the leader.
    Exits 1 if no member answers or none knows a leader."""
    from ._router import parse_endpoints

    eps = parse_endpoints(ctx.obj["endpoints"])
    rows = _member_rows(eps, min(float(ctx.obj["timeout"]), 2.0))
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        hdr = ["NAME", "ID", "CLIENT ADDR", "PEER ADDR", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED",
               "LOG", "LEASES", "LOCKS", "LAST CONTACT"]
        body: list[list[Any]] = []
        for r in rows:
            line: list[Any] = [r["name"] or "-", f"{r['id']:x}" if r["id"] else "-", r["client_addr"] or "-",
                               r["peer_addr"] or "-"]
            if r["error"]:
                line += [f"unreachable: {r['error']}" if r["client_addr"] else r["error"]]
            else:
                leader = r["leader_name"] or (f"{r['leader']:x}" if r["leader"] else "none")
                line += [r["role"], r["term"], leader, r["commit"], r["applied"], r["log_entries"],
                         _dash(r["leases"]), _dash(r["locks"]), _last_contact(r)]
            body.append(line)
        click.echo(_table(hdr, body))
    if all(r["error"] for r in rows):
        _fail(ctx, click.ClickException(f"no member answered ({', '.join(eps)})"))
    if not any(r["role"] == "leader" or (r["leader"] and not r["error"]) for r in rows):
        _fail(ctx, click.ClickException("no leader elected"))


_SORT_KEYS: dict[str, Callable[[Any], Any]] = {
    "key": lambda kv: kv.key, "create": lambda kv: kv.create_revision,
    "modify": lambda kv: kv.mod_revision, "version": lambda kv: kv.version, "value": lambda kv: kv.value,
}


@main.command()
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@click.option("--rev", type=int, default=0, help="Read at this revision (0: the latest).")
@click.option("--serializable", is_flag=True, help="Serve from the member asked (may be stale).")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most this many keys (0: no limit).")
@click.option("--keys-only", is_flag=True, help="Keys without their values.")
@click.option("--sort", "sort_by", type=click.Choice(sorted(_SORT_KEYS)), default=None,
              help="Sort by this field (as etcdctl's --sort-by; default: by key). Sorting by another "
                   "field than the key reads the whole range, then applies --limit.")
@click.option("--order", type=click.Choice(["ascend", "descend"]), default="ascend", show_default=True,
              help="The order of --sort.")
@_output_option
@click.pass_context
@_handles_errors
def get(ctx: click.Context, key: str, prefix: bool, rev: int, serializable: bool, limit: int,
        keys_only: bool, sort_by: str | None, order: str, output: str | None) -> None:
    """Print KEY (or every key under it with --prefix); nothing if absent. Keys and values are
    escaped in the table (a backslash as \\\\, control characters and bytes that are not UTF-8 as
    \\xNN); -o json gives them as text, or base64 when they are not UTF-8 (--base64: always)."""
    k = _arg(key)
    server_limit = limit if sort_by in (None, "key") and order == "ascend" else 0
    with _client(ctx) as c:
        if prefix:
            kvs = c.get_prefix(k, revision=rev, serializable=serializable, limit=server_limit,
                               keys_only=keys_only)
        else:
            kvs = c.get_range(k, revision=rev, serializable=serializable, keys_only=keys_only)
    kvs = sorted(kvs, key=_SORT_KEYS[sort_by or "key"], reverse=order == "descend")
    if limit:
        kvs = kvs[:limit]
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps([_kv_dict(kv) for kv in kvs], indent=2))
    elif kvs and keys_only:
        click.echo(_table(["KEY", "MOD REV", "VERSION"],
                          [[_text(kv.key), kv.mod_revision, kv.version] for kv in kvs]))
    elif kvs:
        click.echo(_table(["KEY", "VALUE", "MOD REV", "VERSION"],
                          [[_text(kv.key), _text(kv.value), kv.mod_revision, kv.version] for kv in kvs]))


def _read_stdin() -> bytes:
    return sys.stdin.buffer.read()


@main.command()
@click.argument("key")
@click.argument("value", required=False)
@click.option("--prev-kv", is_flag=True, help="Also print the value replaced.")
@click.option("--lease", type=click.IntRange(min=0), default=0,
              help="Attach the key to this lease id (0: none).")
@_output_option
@click.pass_context
@_handles_errors
def put(ctx: click.Context, key: str, value: str | None, prev_kv: bool, lease: int,
        output: str | None) -> None:
    """Set KEY to VALUE; print the new revision. Without VALUE, or with VALUE ``-``, the value is read
    from stdin as bytes (any size up to the server's limit, any bytes: `coterie put k - < file`)."""
    v = _read_stdin() if value is None or value == "-" else _arg(value)
    with _client(ctx) as c:
        r = c.put(_arg(key), v, lease=lease, prev_kv=True)
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"revision": r.revision, "prev": _kv_dict(r.prev) if r.prev else None}))
    else:
        click.echo(f"OK revision {r.revision}")
        if prev_kv and r.prev is not None:
            p = r.prev
            click.echo(_table(["KEY", "PREV VALUE", "MOD REV", "VERSION"],
                              [[_text(p.key), _text(p.value), p.mod_revision, p.version]]))


_CMP_TARGETS = {"val": "value", "value": "value", "ver": "version", "version": "version",
                "create": "create", "c": "create", "mod": "mod", "m": "mod", "lease": "lease"}
_CMP_RE = r'^\s*(\w+)\(\s*"((?:[^"\\]|\\.)*)"\s*\)\s*(=|==|!=|<|>)\s*(.*?)\s*$'


def _unquote(text: str) -> bytes:
    """A txn operand: ``"..."`` (with ``\\"``, ``\\\\`` and ``\\xNN`` escapes) or a bare word."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        import codecs

        raw = t[1:-1].encode("utf-8", "surrogateescape")
        decoded: bytes = codecs.escape_decode(raw)[0]
        return decoded
    return _arg(t)


def _parse_compare(line: str) -> Any:
    """etcdctl's compare syntax: ``mod("k") > "0"``, ``val("k") = "v"``, ``ver("k") != 1``,
    ``create("k") < 5``, ``lease("k") = "0"``."""
    import re

    from .types import Compare

    m = re.match(_CMP_RE, line)
    if m is None:
        raise ValueError(f"bad compare {line!r}: expected e.g. val(\"key\") = \"value\" or "
                         'mod("key") > "0"')
    target, key, op, operand = m.groups()
    if target not in _CMP_TARGETS:
        raise ValueError(f"bad compare {line!r}: unknown target {target!r} (val, ver, create, mod, lease)")
    k = _unquote(f'"{key}"')
    result = "==" if op in ("=", "==") else op
    t = _CMP_TARGETS[target]
    value: int | bytes = _unquote(operand)
    if t != "value":
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"bad compare {line!r}: {t} needs a number, got {operand}") from None
    return Compare(k, t, result, value)  # type: ignore[arg-type]


def _parse_op(line: str) -> Any:
    """etcdctl's request syntax: ``put KEY VALUE``, ``get KEY [--prefix] [--limit N]``,
    ``del KEY [--prefix]`` (shell quoting)."""
    import shlex

    from .types import Op

    words = shlex.split(line)
    if not words or words[0] not in ("put", "get", "del", "delete"):
        raise ValueError(f"bad request {line!r}: expected put KEY VALUE, get KEY or del KEY")
    cmd, rest = words[0], words[1:]
    prefix = "--prefix" in rest
    limit = 0
    if "--limit" in rest:
        i = rest.index("--limit")
        if i + 1 >= len(rest) or not rest[i + 1].isdigit():
            raise ValueError(f"bad request {line!r}: --limit needs a number")
        limit = int(rest[i + 1])
        del rest[i:i + 2]
    args = [w for w in rest if w != "--prefix"]
    unknown = [w for w in args if w.startswith("--")]
    if unknown:
        raise ValueError(f"bad request {line!r}: unknown option {unknown[0]}")
    if cmd == "put":
        if len(args) != 2 or prefix:
            raise ValueError(f"bad request {line!r}: expected put KEY VALUE")
        return Op.put(_arg(args[0]), _arg(args[1]))
    if len(args) != 1:
        raise ValueError(f"bad request {line!r}: expected {cmd} KEY [--prefix]")
    if cmd == "get":
        return Op.get(_arg(args[0]), prefix=prefix, limit=limit)
    return Op.delete(_arg(args[0]), prefix=prefix)


def _read_section(stream: Any, prompt: str | None) -> list[str]:
    """Lines up to a blank line or the end of input."""
    if prompt is not None:
        click.echo(prompt, err=True)
    lines: list[str] = []
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
        if not line.strip():
            break
        lines.append(line)
    return lines


def _result_dict(r: Any) -> dict[str, Any]:
    from .types import DeleteResult, PutResult

    if isinstance(r, PutResult):
        return {"put": {"revision": r.revision}}
    if isinstance(r, DeleteResult):
        return {"delete": {"deleted": r.deleted}}
    return {"get": {"kvs": [_kv_dict(kv) for kv in r.kvs], "count": r.count}}


@main.command()
@click.option("-i", "--interactive", is_flag=True, help="Prompt for each of the three parts.")
@_output_option
@click.pass_context
@_handles_errors
def txn(ctx: click.Context, interactive: bool, output: str | None) -> None:
    """Run a transaction read from stdin in etcdctl's syntax: compares, a blank line, the requests if
    they all hold, a blank line, the requests otherwise. Prints SUCCESS or FAILURE and each result.

    \b
    mod("config/a") > "0"
    val("config/a") = "1"

    put config/a 2
    get config/ --prefix

    get config/a
    """
    stream = sys.stdin.buffer
    compares = [_parse_compare(x) for x in _read_section(stream, "compares:" if interactive else None)]
    success = [_parse_op(x) for x in _read_section(
        stream, "success requests (get, put, del):" if interactive else None)]
    failure = [_parse_op(x) for x in _read_section(
        stream, "failure requests (get, put, del):" if interactive else None)]
    with _client(ctx) as c:
        res = c.txn(compares, success, failure)
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"succeeded": res.succeeded, "revision": res.revision,
                               "results": [_result_dict(r) for r in res.results]}, indent=2))
        return
    from .types import DeleteResult, PutResult

    click.echo("SUCCESS" if res.succeeded else "FAILURE")
    for r in res.results:
        click.echo("")
        if isinstance(r, PutResult):
            click.echo(f"OK revision {r.revision}")
        elif isinstance(r, DeleteResult):
            click.echo(str(r.deleted))
        elif r.kvs:
            click.echo(_table(["KEY", "VALUE", "MOD REV", "VERSION"],
                              [[_text(kv.key), _text(kv.value), kv.mod_revision, kv.version]
                               for kv in r.kvs]))


@main.command("del")
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every key starting with KEY.")
@_output_option
@click.pass_context
@_handles_errors
def delete(ctx: click.Context, key: str, prefix: bool, output: str | None) -> None:
    """Delete KEY (or every key under it); print how many were deleted."""
    with _client(ctx) as c:
        n = c.delete_prefix(_arg(key)) if prefix else c.delete(_arg(key))
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
        w = c.watch_prefix(_arg(key), start_revision=rev, prev_kv=prev_kv) if prefix else \
            c.watch(_arg(key), start_revision=rev, prev_kv=prev_kv)
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


# ============================================================================== leases, locks, elections

EXIT_LOCK_LOST = 70
"""``coterie lock`` / ``coterie elect``: the lock (leadership) was lost while held (the command was
terminated)."""
EXIT_LOCK_TIMEOUT = 75
"""``coterie lock``: the lock was not acquired within ``--timeout`` (the command was not run)."""


def _lease_id(ref: str) -> int:
    """A lease id from decimal or ``0x`` hex (as ``lease list`` prints both)."""
    try:
        return int(ref, 0)
    except ValueError:
        raise click.BadParameter(f"{ref!r} is not a lease id (decimal or 0x-hex)") from None


@main.group()
def lease() -> None:
    """Grant, keep alive, revoke and inspect leases (TTLs in seconds)."""


@lease.command("grant")
@click.argument("ttl", type=click.FloatRange(min=0, min_open=True))
@_output_option
@click.pass_context
@_handles_errors
def lease_grant(ctx: click.Context, ttl: float, output: str | None) -> None:
    """Grant a lease of TTL seconds (not kept alive: see `lease keepalive`); print its id."""
    with _client(ctx) as c:
        le = c.grant_lease(ttl)
        lid, granted, notice = le.id, le.ttl, le._al.notice
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"id": lid, "id_hex": f"{lid:016x}", "ttl": granted, "notice": notice}))
    else:
        extra = f" ({notice})" if notice else ""
        click.echo(f"lease {lid} (0x{lid:016x}) granted with TTL {granted:g}s{extra}")


@lease.command("keepalive")
@click.argument("lease_ref", metavar="ID")
@_output_option
@click.pass_context
@_handles_errors
def lease_keepalive(ctx: click.Context, lease_ref: str, output: str | None) -> None:
    """Keep lease ID alive until Ctrl-C, printing each renewal; exits 1 when it is lost."""
    lid = _lease_id(lease_ref)
    as_json = _fmt(ctx, output) == "json"
    with _client(ctx) as c:
        le = c.keep_alive(lid)
        seen = -1
        try:
            while not le.lost.is_set():
                if le.keepalives != seen:
                    seen = le.keepalives
                    if as_json:
                        click.echo(json.dumps({"id": lid, "ttl": le.ttl, "keepalives": seen}))
                    else:
                        click.echo(f"lease {lid} kept alive with TTL {le.ttl:g}s")
                le.lost.wait(max(0.05, le.ttl / 6))
        except KeyboardInterrupt:
            le.stop_keepalive()
            return
        raise click.ClickException(f"lease {lid} lost: {le._al.lost_reason}")


@lease.command("revoke")
@click.argument("lease_ref", metavar="ID")
@_output_option
@click.pass_context
@_handles_errors
def lease_revoke(ctx: click.Context, lease_ref: str, output: str | None) -> None:
    """Revoke lease ID, deleting its keys; print how many."""
    lid = _lease_id(lease_ref)
    with _client(ctx) as c:
        n = c.revoke_lease(lid)
    click.echo(json.dumps({"id": lid, "deleted": n}) if _fmt(ctx, output) == "json"
               else f"lease {lid} revoked ({n} keys deleted)")


@lease.command("ttl")
@click.argument("lease_ref", metavar="ID")
@click.option("--keys", is_flag=True, help="Also list the attached keys.")
@_output_option
@click.pass_context
@_handles_errors
def lease_ttl(ctx: click.Context, lease_ref: str, keys: bool, output: str | None) -> None:
    """The remaining and granted TTL of lease ID (exits 1 if it does not exist)."""
    lid = _lease_id(lease_ref)
    with _client(ctx) as c:
        r = c.lease_ttl(lid, keys=keys)
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"id": lid, "exists": r.exists, "remaining": r.remaining, "ttl": r.ttl,
                               "keys": [_text(k) for k in r.keys]}))
    elif r.exists:
        click.echo(f"lease {lid}: remaining {r.remaining:g}s of {r.ttl:g}s")
        for k in r.keys:
            click.echo(f"  {_text(k)}")
    if not r.exists:
        _fail(ctx, click.ClickException(f"lease {lid} not found (expired or revoked)"))


@lease.command("list")
@_output_option
@click.pass_context
@_handles_errors
def lease_list(ctx: click.Context, output: str | None) -> None:
    """Every live lease: id, granted TTL, remaining, attached keys."""
    with _client(ctx) as c:
        ls = c.leases()
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps([{"id": x.id, "ttl": x.ttl, "remaining": x.remaining, "keys": x.keys}
                               for x in ls], indent=2))
    else:
        click.echo(_table(["ID", "HEX", "TTL", "REMAINING", "KEYS"],
                          [[x.id, f"{x.id:016x}", f"{x.ttl:g}s", f"{x.remaining:g}s", x.keys] for x in ls]))


def _terminate(proc: Any, grace: float) -> None:
    """SIGTERM ``proc``, then SIGKILL after ``grace`` seconds."""
    import subprocess

    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


@main.command("lock", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--ttl", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds of the lock's lease (kept alive while held).")
@click.option("--timeout", "lock_timeout", type=click.FloatRange(min=0), default=None,
              help="Give up after this many seconds of waiting (default: wait for ever).")
@click.option("--grace", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL when the lock is lost.")
@click.pass_context
@_handles_errors
def lock_cmd(ctx: click.Context, name: str, command: tuple[str, ...], ttl: float,
             lock_timeout: float | None, grace: float) -> None:
    """Run COMMAND while holding lock NAME (`coterie lock NAME -- COMMAND...`), with env
    COTERIE_LOCK_TOKEN (the fencing token) and COTERIE_LOCK_KEY. Exits with COMMAND's status; if the
    lock is lost the command is terminated (SIGTERM, SIGKILL after --grace) and the exit code is 70;
    75 if the lock was not acquired within --timeout."""
    import os
    import subprocess

    from .errors import LeaseLost, LockTimeout

    with _client(ctx) as c:
        try:
            lk = c.lock(name, ttl=ttl, timeout=lock_timeout).acquire()
        except LockTimeout as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_LOCK_TIMEOUT)
        env = {**os.environ, "COTERIE_LOCK_TOKEN": str(lk.token), "COTERIE_LOCK_KEY": _text(lk.key)}
        code = 0
        lost = False
        try:
            proc = subprocess.Popen(list(command), env=env)
            try:
                while proc.poll() is None:
                    if lk.lost.wait(0.05) or not lk.alive:
                        lost = True
                        _terminate(proc, grace)
                        break
            except KeyboardInterrupt:
                _terminate(proc, grace)
            code = proc.returncode if proc.returncode is not None else 1
        finally:
            with contextlib.suppress(LeaseLost):
                lk.release()
    if lost:
        click.echo(f"error: lock {name!r} lost while held (token {lk.token}); the command was terminated",
                   err=True)
        ctx.exit(EXIT_LOCK_LOST)
    ctx.exit(code if code >= 0 else 128 - code)


@main.command("elect")
@click.argument("name")
@click.argument("value", required=False)
@click.option("--observe", is_flag=True, help="Print each new leader (until Ctrl-C) instead of campaigning.")
@click.option("--ttl", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds of the leadership's lease (kept alive while leading).")
@_output_option
@click.pass_context
@_handles_errors
def elect(ctx: click.Context, name: str, value: str | None, observe: bool, ttl: float,
          output: str | None) -> None:
    """Campaign in election NAME with VALUE: print when leader, hold until Ctrl-C, then resign (exit
    70 if the leadership is lost). With --observe: print each new leader."""
    as_json = _fmt(ctx, output) == "json"

    def show(what: str, v: bytes, token: int) -> None:
        click.echo(json.dumps({"event": what, "name": name, "value": _text(v), "token": token})
                   if as_json else f"{what}: {_text(v)} (token {token})")

    with _client(ctx) as c:
        e = c.election(name)
        if observe:
            with contextlib.suppress(KeyboardInterrupt), e.observe() as obs:
                for ld in obs:
                    show("leader", ld.value, ld.token)
            return
        if value is None:
            raise click.UsageError("VALUE is required unless --observe")
        try:
            ld = e.campaign(value, ttl=ttl)
        except KeyboardInterrupt:
            return
        show("elected", ld.value, ld.token)
        try:
            while not ld.lost.wait(0.2):
                pass
        except KeyboardInterrupt:
            ld.resign()
            click.echo(json.dumps({"event": "resigned", "name": name}) if as_json else "resigned")
            return
    click.echo(f"error: leadership of {name!r} lost (token {ld.token})", err=True)
    ctx.exit(EXIT_LOCK_LOST)


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


# ============================================================================== endpoints, leadership


def _endpoint_list(ctx: click.Context, cluster: bool, timeout: float) -> list[str]:
    """The endpoints given, or with ``cluster`` every member's client address as the members that
    answer at those endpoints know them (the endpoints given if none answers)."""
    from ._router import parse_endpoints

    eps = parse_endpoints(ctx.obj["endpoints"])
    if not cluster:
        return eps
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(eps))) as pool:
        answers = list(pool.map(lambda e: _ask_status(e, timeout), eps))
    addrs: dict[int, str] = {}
    for st, ml, _ in answers:
        for m in (ml.members if ml is not None else st.members if st is not None else ()):
            if m.client_addr:
                addrs.setdefault(m.id, m.client_addr)
    return [addrs[i] for i in sorted(addrs)] or eps


def _in_parallel(eps: list[str], fn: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(eps)))) as pool:
        return list(pool.map(fn, eps))


def _endpoint_status_row(ep: str, timeout: float) -> dict[str, Any]:
    import time

    from ._codec import member_status

    t0 = time.perf_counter()
    st, _ml, err = _ask_status(ep, timeout)
    took = round(time.perf_counter() - t0, 6)
    row: dict[str, Any] = {"endpoint": ep, "id": 0, "name": "", "role": "", "is_leader": False,
                           "is_learner": False, "leader": 0, "raft_term": 0, "raft_index": 0,
                           "raft_applied_index": 0, "last_index": 0, "revision": 0, "took": took,
                           "error": err}
    if st is not None:
        ms = member_status(ep, st)
        me = next((m for m in st.members if m.id == st.member_id), None)
        row.update(id=ms.member_id, name=ms.name, role=ms.role, is_leader=ms.role == "leader",
                   is_learner=bool(me is not None and me.is_learner), leader=ms.leader_id,
                   raft_term=ms.term, raft_index=ms.commit_index, raft_applied_index=ms.applied_index,
                   last_index=int(st.last_index), revision=ms.revision)
    return row


def _endpoint_health_row(ep: str, timeout: float) -> dict[str, Any]:
    import time

    import grpc

    from . import _health
    from ._errors import map_rpc_error

    t0 = time.perf_counter()
    try:
        status = _health.check(ep, timeout=timeout)
        err = None if status == 1 else _health.STATUS_NAMES.get(status, f"status {status}")
    except grpc.RpcError as exc:
        status = -1
        err = map_rpc_error(exc, endpoint=ep, write=False, idempotent=True).message
    took = round(time.perf_counter() - t0, 6)
    if status == 2:  # say why, if the member tells (best effort)
        st, _ml, _e = _ask_status(ep, timeout)
        if st is not None:
            why = ("no leader known" if not st.leader_id
                   else f"applied index {st.applied_index} behind commit index {st.commit_index}"
                   if st.applied_index < st.commit_index else "not caught up with the leader yet")
            err = f"{err}: {why}"
    return {"endpoint": ep, "health": status == 1, "took": took, "error": err}


@main.group()
def endpoint() -> None:
    """Per-endpoint checks, like etcdctl's: `endpoint status`, `endpoint health`."""


@endpoint.command("status")
@click.option("--cluster", is_flag=True, help="Every member's client address (from the member list), "
                                              "not only the endpoints given.")
@_output_option
@click.pass_context
@_handles_errors
def endpoint_status(ctx: click.Context, cluster: bool, output: str | None) -> None:
    """One row per endpoint, as that member sees itself: id, name, leader or not, learner or not, Raft
    term, Raft index (the commit index), applied index, revision. Exits 1 if an endpoint fails."""
    timeout = min(float(ctx.obj["timeout"]), 5.0)
    eps = _endpoint_list(ctx, cluster, timeout)
    rows = _in_parallel(eps, lambda e: _endpoint_status_row(e, timeout))
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        hdr = ["ENDPOINT", "ID", "NAME", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX",
               "RAFT APPLIED INDEX", "REVISION", "ERRORS"]
        body = [[r["endpoint"], f"{r['id']:x}" if r["id"] else "-", r["name"] or "-",
                 str(r["is_leader"]).lower(), str(r["is_learner"]).lower(), r["raft_term"],
                 r["raft_index"], r["raft_applied_index"], r["revision"], r["error"] or ""]
                if r["error"] is None else [r["endpoint"], "-", "-", "-", "-", "-", "-", "-", "-", r["error"]]
                for r in rows]
        click.echo(_table(hdr, body))
    failed = [r["endpoint"] for r in rows if r["error"]]
    if failed:
        _fail(ctx, click.ClickException(f"failed to get the status of {', '.join(failed)}"))


@endpoint.command("health")
@click.option("--cluster", is_flag=True, help="Every member's client address (from the member list), "
                                              "not only the endpoints given.")
@_output_option
@click.pass_context
@_handles_errors
def endpoint_health(ctx: click.Context, cluster: bool, output: str | None) -> None:
    """Ask each endpoint's gRPC health service (grpc.health.v1): healthy means SERVING, i.e. the member
    knows a leader and has applied what it knew to be committed. Prints healthy true/false, how long
    the check took and the error; exits 1 unless every endpoint is healthy (for container health
    checks: `coterie --endpoints 127.0.0.1:7001 endpoint health`)."""
    timeout = min(float(ctx.obj["timeout"]), 5.0)
    eps = _endpoint_list(ctx, cluster, timeout)
    rows = _in_parallel(eps, lambda e: _endpoint_health_row(e, timeout))
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(_table(["ENDPOINT", "HEALTH", "TOOK", "ERROR"],
                          [[r["endpoint"], str(r["health"]).lower(), f"{r['took'] * 1000:.1f}ms",
                            r["error"] or ""] for r in rows]))
    bad = [r["endpoint"] for r in rows if not r["health"]]
    if bad:
        _fail(ctx, click.ClickException(f"unhealthy: {', '.join(bad)}"))


class _SnapshotGroup(_Main):
    """``coterie snapshot``: ``save`` talks to the cluster; ``status`` decodes the file with the
    node's state machine, so it lives in :mod:`coterie.node.cli` (extra ``server``)."""

    lazy = {"status": ("coterie.node.cli", "snapshot_status", "server")}


@main.group(cls=_SnapshotGroup)
def snapshot() -> None:
    """Snapshots of the cluster's state, like etcdctl's: `snapshot save`, `snapshot status`."""


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False))
@_output_option
@click.pass_context
@_handles_errors
def snapshot_save(ctx: click.Context, file: str, output: str | None) -> None:
    """Save a consistent snapshot of the cluster's state to FILE: a member does a read barrier (the
    snapshot holds every write acknowledged before the command) and streams its state machine; the
    bytes go to FILE.part, are checked against the member's SHA-256, fsynced and renamed to FILE
    (which then ends with that SHA-256). Prints the size, revision, applied index and checksum. A
    failed or corrupted download exits 1 and leaves no FILE. --timeout is at least 60 s here."""
    with _client(ctx) as c:
        info = c.snapshot(file, timeout=max(60.0, float(ctx.obj["timeout"])))
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"file": file, "size": info.size, "revision": info.revision,
                               "applied_index": info.applied_index, "sha256": info.sha256,
                               "version": info.version}, indent=2))
    else:
        click.echo(_table(["FILE", "SIZE", "REVISION", "APPLIED INDEX", "SHA256"],
                          [[file, info.size, info.revision, info.applied_index, info.sha256]]))


@main.group()
def leader() -> None:
    """Leadership: `leader transfer`."""


@leader.command("transfer")
@click.option("--to", "to", metavar="NAME|ID", default=None,
              help="The voter to hand leadership to [default: the most up-to-date other voter].")
@_output_option
@click.pass_context
@_handles_errors
def leader_transfer(ctx: click.Context, to: str | None, output: str | None) -> None:
    """Hand leadership to another voter (the leader stops taking writes until it is done) and wait
    until it leads. Fails if no leader is known, if the target is not a voter, or if the transfer was
    abandoned or did not complete within --timeout."""
    with _client(ctx) as c:
        members = {m.id: m for m in c.member_list()}
        st = c.status()
        old = st.leader_id
        if not old:
            raise ValueError("no leader known; nothing to transfer")
        if to is not None:
            target = _member_id(c, to)
        else:
            target = _pick_transferee(members, old, st.leader_endpoint, float(ctx.obj["timeout"]))
        if target not in members:
            raise ValueError(f"no member with id {target}")
        if members[target].is_learner:
            raise ValueError(f"{members[target].name or target} is a learner; promote it first")
        new = c.transfer_leader(target)

    def name(i: int) -> str:
        m = members.get(i)
        return m.name if m is not None and m.name else str(i)

    if _fmt(ctx, output) == "json":
        click.echo(json.dumps({"from": old, "from_name": name(old), "to": target, "to_name": name(target),
                               "leader": new}, indent=2))
    elif old == target:
        click.echo(f"{name(target)} ({target}) already leads")
    else:
        click.echo(f"leadership transferred from {name(old)} ({old}) to {name(new)} ({new})")


def _pick_transferee(members: dict[int, Any], leader_id: int, leader_ep: str | None, timeout: float) -> int:
    """The voter other than the leader with the highest match index in the leader's view (its Status
    progress), or the lowest id if the leader does not say."""
    voters = [i for i, m in members.items() if i != leader_id and not m.is_learner]
    if not voters:
        raise ValueError("no other voter to hand leadership to")
    match: dict[int, int] = {}
    if leader_ep:
        st, _ml, _err = _ask_status(leader_ep, min(timeout, 2.0))
        if st is not None:
            match = {p.id: int(p.match) for p in st.progress}
    return max(voters, key=lambda i: (match.get(i, -1), -i))
# ============================================================================== gossip


def _gossip_dict(m: Any) -> dict[str, Any]:
    return {"name": m.name, "addr": m.addr, "state": m.state, "incarnation": m.incarnation,
            "meta": dict(m.meta), "since": round(m.since, 3), "by": m.by,
            "suspected_by": m.suspected_by, "confirmed_by": list(m.confirmed_by),
            "events": [{"kind": e.kind, "by": e.by, "at": round(e.at, 3), "incarnation": e.incarnation,
                        "confirmations": list(e.confirmations)} for e in m.events]}


def _ago(t: float) -> str:
    import time

    if t <= 0:
        return "-"
    d = max(0.0, time.time() - t)
    return f"{d:.1f}s ago" if d < 120 else f"{d / 60:.0f}m ago" if d < 7200 else f"{d / 3600:.0f}h ago"


def _t(s: str) -> str:
    """Text a peer chose (names, tags), made safe for a terminal."""
    return _text(s.encode("utf-8", "surrogateescape")) or "-"


@main.command("members")
@click.option("--why", "why", metavar="NAME", default=None,
              help="Why NAME is in its state: who suspected it and when, who confirmed, who declared it "
                   "dead, and its last changes.")
@_output_option
@click.pass_context
@_handles_errors
def gossip_members(ctx: click.Context, why: str | None, output: str | None) -> None:
    """The gossip view of the first endpoint that answers (`coterie node --gossip-addr/--join`):
    every member it knows, its state (alive, suspect, dead, left), incarnation, tags and since when.
    Gossip only observes: the Raft configuration is `member list`, leadership is `status`."""
    from ._router import parse_endpoints
    from .errors import CoterieError, DeadlineExceeded, Unavailable

    eps = parse_endpoints(ctx.obj["endpoints"])
    view = None
    last: CoterieError | None = None
    with _client(ctx) as c:
        for ep in eps:
            try:
                view = c.members(endpoint=ep, name=why or "")
                break
            except CoterieError as exc:
                last = exc
                if not isinstance(exc, Unavailable | DeadlineExceeded):
                    break  # an answer (gossip is off there, no such member), not an unreachable member
    if view is None:
        assert last is not None
        raise last
    as_json = _fmt(ctx, output) == "json"
    if why:
        m = view.member(why)
        assert m is not None
        if as_json:
            click.echo(json.dumps({"view_from": view.name, **_gossip_dict(m)}, indent=2))
            return
        click.echo(f"{_t(m.name)} is {m.state} (incarnation {m.incarnation}) since {_ago(m.since)}, "
                   f"as seen by {_t(view.name)}")
        if m.state == "suspect":
            conf = ", ".join(_t(x) for x in m.confirmed_by) or "nobody yet"
            click.echo(f"  suspected by {_t(m.suspected_by or m.by)}; confirmed by {conf}")
        elif m.state in ("dead", "left"):
            click.echo(f"  {'declared dead' if m.state == 'dead' else 'left'} by {_t(m.by)}")
        for e in m.events:
            extra = f"; confirmed by {', '.join(_t(x) for x in e.confirmations)}" if e.confirmations else ""
            click.echo(f"  {_ago(e.at):>10}  {e.kind:<8} by {_t(e.by)} (incarnation {e.incarnation}){extra}")
        return
    if as_json:
        click.echo(json.dumps({"view_from": view.name, "members": [_gossip_dict(m) for m in view.members],
                               "stats": view.stats}, indent=2))
        return
    click.echo(f"gossip view of {_t(view.name)}")
    click.echo(_table(
        ["NAME", "GOSSIP ADDR", "STATE", "INC", "ROLE", "CLIENT ADDR", "PEER ADDR", "SINCE", "BY"],
        [[_t(m.name), _t(m.addr), m.state, m.incarnation, _t(m.meta.get("role", "")),
          _t(m.meta.get("client_addr", "")), _t(m.meta.get("peer_addr", "")), _ago(m.since), _t(m.by)]
         for m in view.members]))


if __name__ == "__main__":
    main()
