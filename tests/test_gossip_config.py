"""The node's gossip settings (NodeConfig.gossip_addr, join, gossip_profile) and their CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from coterie.node import cli
from coterie.node.gossip import GossipConfig
from coterie.node.server.config import DEFAULT_GOSSIP_PORT, NodeConfig, NodeConfigError


def _node(**kw: Any) -> NodeConfig:
    base: dict[str, Any] = dict(name="n1", data_dir=Path("/tmp/x"), client_addr="127.0.0.1:1",
                                peer_addr="10.0.0.5:2", initial_cluster={"n1": "10.0.0.5:2"})
    return NodeConfig(**{**base, **kw})


def test_gossip_is_off_unless_an_address_or_a_seed_is_given() -> None:
    assert not _node().gossip_enabled
    on = _node(gossip_addr="10.0.0.5:9000")
    assert on.gossip_enabled and on.effective_gossip_addr == "10.0.0.5:9000"
    joined = _node(join=("10.0.0.6:7946",))
    assert joined.gossip_enabled and joined.effective_gossip_addr == f"10.0.0.5:{DEFAULT_GOSSIP_PORT}"


def test_gossip_profiles() -> None:
    assert _node().gossip_config() == GossipConfig.lan()
    assert _node(gossip_profile="local").gossip_config() == GossipConfig.local()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"gossip_addr": "nohost"}, "--gossip-addr"),
        ({"gossip_addr": "h:70000"}, "--gossip-addr"),
        ({"join": ("h:1", "h")}, "--join"),
        ({"gossip_profile": "wan"}, "--gossip-profile"),
    ],
)
def test_bad_gossip_settings_are_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(NodeConfigError, match=match):
        _node(**kw).validate()


def test_cli_gossip_defaults_are_node_config_defaults() -> None:
    opts = {p.name: p for p in cli.node.params if p.name}
    assert opts["gossip_addr"].default == NodeConfig.gossip_addr
    assert opts["join"].default == ",".join(NodeConfig.join)
    assert opts["gossip_profile"].default == NodeConfig.gossip_profile
    prof = opts["gossip_profile"]
    assert isinstance(prof, click.Option) and prof.hidden
