"""Node defaults have one source: NodeConfig's tunables are DriverConfig's and RaftConfig's defaults,
the CLI's ``node`` options default to NodeConfig's fields, every field is documented, and bad
values raise NodeConfigError (a real error, not an assert)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import click
import pytest

from coterie.node import cli
from coterie.node.raft import RaftConfig
from coterie.node.server import config as config_mod
from coterie.node.server.config import DriverConfig, NodeConfig, NodeConfigError, parse_initial_cluster


def _node(**kw: Any) -> NodeConfig:
    base: dict[str, Any] = dict(name="n1", data_dir=Path("/tmp/x"), client_addr="127.0.0.1:1",
                                peer_addr="127.0.0.1:2", initial_cluster={"n1": "127.0.0.1:2"})
    return NodeConfig(**{**base, **kw})


def test_node_tunables_default_to_the_driver_and_raft_defaults() -> None:
    cfg = _node()
    assert cfg.driver_config() == DriverConfig()
    d = DriverConfig()
    assert (cfg.tick_interval, cfg.snapshot_entries, cfg.snapshot_keep, cfg.max_pending_proposals) == (
        d.tick_interval, d.snapshot_entries, d.snapshot_keep, d.max_pending_proposals)
    assert cfg.raft_config(3) == RaftConfig(id=3)


def test_driver_config_carries_the_node_settings() -> None:
    cfg = _node(tick_interval=0.02, snapshot_entries=5, snapshot_keep=1, max_pending_proposals=7,
                election_tick=30)
    assert cfg.driver_config() == DriverConfig(tick_interval=0.02, max_pending_proposals=7,
                                               snapshot_entries=5, snapshot_keep=1)
    assert cfg.raft_config(2).election_tick == 30


def _node_options() -> dict[str, click.Parameter]:
    cmd = cli.node
    return {p.name: p for p in cmd.params if p.name}


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("initial_cluster_state", NodeConfig.initial_cluster_state),
        ("snapshot_entries", NodeConfig.snapshot_entries),
        ("snapshot_keep", NodeConfig.snapshot_keep),
        ("tick_ms", round(NodeConfig.tick_interval * 1000)),
        ("election_ticks", NodeConfig.election_tick),
        ("max_pending_proposals", NodeConfig.max_pending_proposals),
        ("min_lease_ttl", NodeConfig.min_lease_ttl),
        ("metrics_addr", NodeConfig.metrics_addr),
    ],
)
def test_cli_node_defaults_are_node_config_defaults(option: str, expected: Any) -> None:
    assert _node_options()[option].default == expected


def _undocumented_fields(cls: type) -> list[str]:
    """Fields of ``cls`` (a dataclass of config.py) not followed by a docstring."""
    tree = ast.parse(inspect.getsource(config_mod))
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__).body
    missing = []
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            nxt = body[i + 1] if i + 1 < len(body) else None
            if not (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                missing.append(stmt.target.id)
    return missing


@pytest.mark.parametrize("cls", [DriverConfig, NodeConfig])
def test_every_field_is_documented(cls: type) -> None:
    assert _undocumented_fields(cls) == []
    assert {f.name for f in dataclasses.fields(cls)}  # the parse found the class


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"name": ""}, "--name"),
        ({"name": "n9"}, "--name"),
        ({"peer_addr": "127.0.0.1:9"}, "--peer-addr"),
        ({"initial_cluster_state": "old"}, "--initial-cluster-state"),
        ({"tick_interval": 0.0}, "--tick-ms"),
        ({"join_timeout": -1.0}, "join timeout"),
        ({"max_pending_proposals": 0}, "--max-pending-proposals"),
        ({"election_tick": 1}, "--election-ticks"),
        ({"snapshot_entries": 0}, "snapshot_entries"),
        ({"snapshot_keep": -1}, "snapshot_keep"),
        ({"min_lease_ttl": -1.0}, "--min-lease-ttl"),
        ({"min_lease_ttl": float("nan")}, "--min-lease-ttl"),
        ({"metrics_addr": "9100"}, "--metrics-addr"),
        ({"metrics_addr": "127.0.0.1:http"}, "--metrics-addr"),
    ],
)
def test_bad_node_config_is_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(NodeConfigError, match=match):
        _node(**kw).validate()


@pytest.mark.parametrize(
    "kw", [{"tick_interval": -1.0}, {"read_timeout": 0.0}, {"max_pending_proposals": 0},
           {"lease_checkpoint_interval": 0.0}, {"lease_expire_retry": -1.0}]
)
def test_bad_driver_config_is_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(NodeConfigError):
        DriverConfig(**kw).validate()


def test_parse_initial_cluster() -> None:
    assert parse_initial_cluster("a=h:1, b=h:2") == {"a": "h:1", "b": "h:2"}
    for bad in ("", "a", "a=h", "a=h:1,a=h:2"):
        with pytest.raises(NodeConfigError):
            parse_initial_cluster(bad)


def test_min_lease_ttl_defaults_to_twice_the_longest_election_timeout() -> None:
    # Default ticks (0.1 s x 10, randomized up to 20 ticks = 2 s): 2 x 2 s.
    assert _node().effective_min_lease_ttl() == pytest.approx(4.0)
    # 50 ms ticks: the longest election timeout is 1 s, so the 2 s floor applies.
    assert _node(tick_interval=0.05).effective_min_lease_ttl() == pytest.approx(2.0)
    assert _node(tick_interval=0.1, election_tick=30).effective_min_lease_ttl() == pytest.approx(12.0)
    assert _node(min_lease_ttl=0.5).effective_min_lease_ttl() == 0.5  # explicit wins


def test_cli_min_lease_ttl_reaches_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[NodeConfig] = []

    class FakeNode:
        def __init__(self, cfg: NodeConfig) -> None:
            seen.append(cfg)

        async def serve_forever(self) -> None:
            return None

    from coterie.node.server import app

    monkeypatch.setattr(app, "Node", FakeNode)
    monkeypatch.setattr(cli, "setup_logging", lambda level: None)  # keep pytest's log handlers
    from click.testing import CliRunner

    res = CliRunner().invoke(cli.node, ["--name", "n1", "--data-dir", str(tmp_path), "--client-addr",
                                        "127.0.0.1:1", "--peer-addr", "127.0.0.1:2", "--initial-cluster",
                                        "n1=127.0.0.1:2", "--min-lease-ttl", "7.5"], obj={"debug": True})
    assert res.exit_code == 0, res.output
    assert seen[0].min_lease_ttl == 7.5 and seen[0].effective_min_lease_ttl() == 7.5
