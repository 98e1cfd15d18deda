"""The ``coterie`` command line (click).

So far: ``coterie node`` runs one node. The client commands (status, get, put, del, watch, compact,
bench) and ``coterie cluster up`` arrive with the client library.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import click

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
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """coterie: a coordination service on Raft."""
    ctx.obj = {"debug": debug}


@main.command()
@click.option("--name", required=True, help="This node's name in --initial-cluster.")
@click.option("--data-dir", required=True, type=click.Path(path_type=Path), help="WAL and snapshots.")
@click.option("--client-addr", required=True, help="HOST:PORT for clients (KV, Session, Cluster).")
@click.option("--peer-addr", required=True, help="HOST:PORT for Raft traffic between nodes.")
@click.option("--initial-cluster", required=True, help="NAME=PEERHOST:PORT,... for every member.")
@click.option("--tick-ms", default=100, show_default=True, help="Milliseconds per Raft tick.")
@click.option("--election-ticks", default=10, show_default=True, help="Ticks before an election.")
@click.option("--log-level", default="info", show_default=True)
@click.option("--enable-fault-injection", is_flag=True, hidden=True,
              help="Peer-link fault hooks for the Jepsen-style local backend (tests only).")
@click.pass_context
def node(ctx: click.Context, name: str, data_dir: Path, client_addr: str, peer_addr: str,
         initial_cluster: str, tick_ms: int, election_ticks: int, log_level: str,
         enable_fault_injection: bool) -> None:
    """Run one node until SIGTERM (graceful) or SIGKILL (nothing acknowledged is lost)."""
    from coterie.node.server.app import Node, NodeConfig, NodeConfigError, parse_initial_cluster

    setup_logging(log_level)
    try:
        cfg = NodeConfig(name=name, data_dir=data_dir, client_addr=client_addr, peer_addr=peer_addr,
                         initial_cluster=parse_initial_cluster(initial_cluster),
                         tick_interval=tick_ms / 1000, election_tick=election_ticks,
                         fault_injection=enable_fault_injection)
        asyncio.run(Node(cfg).serve_forever())
    except NodeConfigError as exc:
        if ctx.obj["debug"]:
            raise
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
