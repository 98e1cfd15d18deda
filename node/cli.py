"""The server-side commands of the ``coterie`` command line: ``coterie node`` (run one node) and
``coterie cluster up|demo`` (a supervised local cluster, :mod:`coterie.node.devcluster`).

They live beside the node, not in :mod:`coterie.client`, so that the client package imports nothing of
the node: ``coterie.client.cli`` loads this module only when one of these commands is invoked (it needs
the ``server`` extra).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

import click
import msgpack  # noqa: F401 - the server extra: fail at load time, so the CLI names the extra to install
import sortedcontainers  # type: ignore[import-untyped]  # noqa: F401

from coterie.client.cli import DEFAULT_ENDPOINTS, _fail, _fmt, _handles_errors, _output_option, _table

from . import devcluster as dc
from .server.config import NodeConfig, NodeConfigError, parse_initial_cluster

__all__ = ["JsonFormatter", "cluster", "node", "setup_logging"]

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
    """Send every log record to stderr as one JSON object per line (UTC times), at ``level``."""
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime



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


@click.command()
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              is_eager=True, expose_value=False, callback=_load_node_config,
              help="A TOML file of these options (e.g. data-dir = \"/var/lib/coterie\"); flags and "
                   "COTERIE_NODE_* variables override it.")
@click.option("--name", required=True, help="This node's name in --initial-cluster (env COTERIE_NODE_NAME).")
@click.option("--data-dir", required=True, type=click.Path(path_type=Path), help="WAL and snapshots.")
@click.option("--client-addr", required=True, help="HOST:PORT for clients (KV, Session, Cluster).")
@click.option("--advertise-client-addr", default=NodeConfig.advertise_client_addr,
              help="HOST:PORT clients are told to use for this node (member list, status, leader "
                   "hints), if not --client-addr (e.g. a container's published port).")
@click.option("--peer-addr", required=True, help="HOST:PORT for Raft traffic between nodes.")
@click.option("--initial-cluster", required=True, help="NAME=PEERHOST:PORT,... for every member.")
@click.option("--initial-cluster-state", type=click.Choice(["new", "existing"]),
              default=NodeConfig.initial_cluster_state,
              show_default=True,
              help="new: bootstrap the --initial-cluster. existing: join a running cluster after "
                   "MemberAdd (--initial-cluster lists members to ask, and this node).")
@click.option("--snapshot-entries", default=NodeConfig.snapshot_entries, show_default=True, hidden=True,
              help="Applied entries between state machine snapshots.")
@click.option("--snapshot-keep", default=NodeConfig.snapshot_keep, show_default=True, hidden=True,
              help="Log entries kept behind a snapshot.")
@click.option("--tick-ms", default=round(NodeConfig.tick_interval * 1000), show_default=True,
              help="Milliseconds per Raft tick (shorter: faster failover, more spurious elections).")
@click.option("--election-ticks", default=NodeConfig.election_tick, show_default=True,
              help="Ticks without a leader before a follower campaigns (randomized up to twice this).")
@click.option("--log-level", default="info", show_default=True)
@click.option("--max-pending-proposals", default=NodeConfig.max_pending_proposals, show_default=True,
              help="Proposals awaiting their outcome before new writes get RESOURCE_EXHAUSTED.")
@click.option("--min-lease-ttl", type=click.FloatRange(min=0, max=86_400), default=NodeConfig.min_lease_ttl,
              show_default=True,
              help="Shortest lease TTL granted, seconds (shorter requests are raised to it). 0: "
                   "max(2 s, 2 x the longest election timeout = 4 x election ticks x tick).")
@click.option("--metrics-addr", default=NodeConfig.metrics_addr,
              help="HOST:PORT to serve Prometheus metrics on (GET /metrics); off by default.")
@click.option("--enable-fault-injection", is_flag=True, hidden=True,
              help="Peer-link fault hooks for the Jepsen-style local backend (tests only).")
@click.option("--unsafe-local-reads", is_flag=True, hidden=True,
              help="BROKEN ON PURPOSE: reads skip ReadIndex (tests of the Jepsen-style checker only).")
@click.option("--gossip-addr", default=NodeConfig.gossip_addr,
              help="HOST:PORT (UDP and TCP) for gossip (SWIM): `coterie members` then shows every "
                   "member's liveness. Default: off, or the --peer-addr host at port 7946 with --join.")
@click.option("--join", "join", default=",".join(NodeConfig.join),
              help="SEED[,SEED]: gossip addresses of members to join through (retried with back-off "
                   "until one answers).")
@click.option("--gossip-profile", type=click.Choice(["lan", "local"]), default=NodeConfig.gossip_profile,
              hidden=True, help="Gossip timings: lan (memberlist's defaults) or local (faster, for tests).")
@click.pass_context
def node(ctx: click.Context, name: str, data_dir: Path, client_addr: str, advertise_client_addr: str,
         peer_addr: str,
         initial_cluster: str, initial_cluster_state: str, snapshot_entries: int, snapshot_keep: int,
         tick_ms: int, election_ticks: int, log_level: str,
         max_pending_proposals: int, min_lease_ttl: float, metrics_addr: str,
         enable_fault_injection: bool, unsafe_local_reads: bool = False, gossip_addr: str = "",
         join: str = "", gossip_profile: str = "lan") -> None:
    """Run one node until SIGTERM (graceful) or SIGKILL (nothing acknowledged is lost)."""
    from coterie.node.server.app import Node

    setup_logging(log_level)
    try:
        cfg = NodeConfig(name=name, data_dir=data_dir, client_addr=client_addr,
                         advertise_client_addr=advertise_client_addr, peer_addr=peer_addr,
                         initial_cluster=parse_initial_cluster(initial_cluster),
                         initial_cluster_state=initial_cluster_state,
                         snapshot_entries=snapshot_entries, snapshot_keep=snapshot_keep,
                         tick_interval=tick_ms / 1000, election_tick=election_ticks,
                         fault_injection=enable_fault_injection,
                         max_pending_proposals=max_pending_proposals, min_lease_ttl=min_lease_ttl,
                         metrics_addr=metrics_addr, unsafe_local_reads=unsafe_local_reads,
                         gossip_addr=gossip_addr,
                         join=tuple(filter(None, (j.strip() for j in join.split(",")))),
                         gossip_profile=gossip_profile)
        asyncio.run(Node(cfg).serve_forever())
    except NodeConfigError as exc:
        if ctx.obj["debug"]:
            raise
        raise click.ClickException(str(exc)) from exc



class SnapshotFileError(ValueError):
    """A saved snapshot file (``coterie snapshot save``) that is too short, fails its SHA-256 or does
    not decode."""


def read_saved_snapshot(path: str) -> tuple[bytes, str]:
    """The state machine image in a file written by ``coterie snapshot save`` and its SHA-256 (hex),
    after checking the file's 32-byte SHA-256 trailer. Raises :class:`SnapshotFileError`."""
    import hashlib

    from coterie.client.snapshot import DIGEST_BYTES

    with open(path, "rb") as f:
        content = f.read()
    if len(content) < DIGEST_BYTES:
        raise SnapshotFileError(f"{path}: {len(content)} bytes is too short for a snapshot file")
    image, trailer = content[:-DIGEST_BYTES], content[-DIGEST_BYTES:]
    digest = hashlib.sha256(image).digest()
    if digest != trailer:
        raise SnapshotFileError(f"{path}: checksum mismatch (SHA-256 of the content {digest.hex()}, "
                                f"recorded {trailer.hex()}): the file is corrupt")
    return image, digest.hex()


@click.command("status")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_output_option
@click.pass_context
@_handles_errors
def snapshot_status(ctx: click.Context, file: str, output: str | None) -> None:
    """Check a file saved by `snapshot save` offline: verify its SHA-256, decode it and print its
    checksum, revision, applied index, key count (live keys), lease count and size. Exits 1 if the
    file is corrupt."""
    from coterie.node.statemachine import StateMachine

    image, sha = read_saved_snapshot(file)
    try:
        sm = StateMachine.from_snapshot(image)
    except Exception as exc:
        raise SnapshotFileError(
            f"{file}: the checksum matches but the content does not decode: {exc}") from exc
    row = {"file": file, "sha256": sha, "revision": sm.revision, "applied_index": sm.applied_index,
           "keys": len(sm.kv), "leases": len(sm.leases), "size": len(image)}
    if _fmt(ctx, output) == "json":
        click.echo(json.dumps(row, indent=2))
    else:
        click.echo(_table(["SHA256", "REVISION", "APPLIED INDEX", "KEYS", "LEASES", "SIZE"],
                          [[sha, row["revision"], row["applied_index"], row["keys"], row["leases"],
                            row["size"]]]))


@click.group()
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

    try:
        dc.run_demo(ctx.obj["endpoints"], timeout=max(float(ctx.obj["timeout"]), 5.0))
    except dc.DevClusterError as exc:
        _fail(ctx, exc)


