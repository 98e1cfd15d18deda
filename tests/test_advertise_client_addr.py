"""``coterie node --advertise-client-addr`` and ``coterie status`` with advertised addresses that mean
nothing to the host (the compose case: each node advertises ``nI:700I``, a name only the containers'
network resolves): every member is listed once, by id, and only members that no endpoint given answers
for are reported unreachable."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from coterie.client import Client
from coterie.client.cli import main
from coterie.node.server.config import NodeConfig, NodeConfigError
from tests.proc_cluster import NAMES, ProcCluster, poll


@pytest.fixture(scope="module")
def adv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    c = ProcCluster(tmp_path_factory.mktemp("adv"))
    c.extra = {n: ["--advertise-client-addr", _advertised(c, n)] for n in NAMES}
    with c:
        c.start_all()
        c.settled()
        yield c


def _advertised(c: ProcCluster, name: str) -> str:
    return f"{name}.invalid:{c.client[name].rsplit(':', 1)[1]}"


def test_advertised_address_is_what_members_publish(adv: ProcCluster) -> None:
    def published() -> dict[str, str] | None:
        with Client(adv.endpoints(), timeout=10) as c:
            got = {m.name: m.client_addr for m in c.member_list()}
        return got if all(got.values()) else None

    got = poll("every member's published address", published, 30)
    assert got == {n: _advertised(adv, n) for n in NAMES}


def test_status_lists_each_member_once(adv: ProcCluster) -> None:
    poll("addresses published", lambda: adv._all_published() or None, 30)
    r = CliRunner().invoke(main, ["--endpoints", ",".join(adv.endpoints()), "-o", "json", "status"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert sorted(row["name"] for row in rows) == list(NAMES), rows
    assert all(row["error"] is None for row in rows), rows
    assert sorted(row["client_addr"] for row in rows) == sorted(adv.endpoints())
    table = CliRunner().invoke(main, ["--endpoints", ",".join(adv.endpoints()), "status"])
    assert table.exit_code == 0 and "unreachable" not in table.stdout, table.output
    assert len(table.stdout.strip().splitlines()) == 1 + len(NAMES), table.stdout


def test_status_from_one_endpoint_reports_the_others_once(adv: ProcCluster) -> None:
    r = CliRunner().invoke(main, ["--endpoints", adv.client["n1"], "-o", "json", "status"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert sorted(rows) == list(NAMES), rows
    assert rows["n1"]["error"] is None
    for n in ("n2", "n3"):  # asked at the only address known for them, which does not resolve here
        assert rows[n]["error"] and rows[n]["client_addr"] == _advertised(adv, n), rows[n]


def test_node_config_advertise_default_and_check(tmp_path: object) -> None:
    from pathlib import Path

    base = dict(name="n1", data_dir=Path("/tmp/x"), client_addr="0.0.0.0:7001", peer_addr="n1:7101",
                initial_cluster={"n1": "n1:7101"})
    assert NodeConfig(**base).advertised_client_addr == "0.0.0.0:7001"  # type: ignore[arg-type]
    cfg = NodeConfig(**base, advertise_client_addr="127.0.0.1:7001")  # type: ignore[arg-type]
    cfg.validate()
    assert cfg.advertised_client_addr == "127.0.0.1:7001"
    with pytest.raises(NodeConfigError, match="--advertise-client-addr"):
        NodeConfig(**base, advertise_client_addr="nohost").validate()  # type: ignore[arg-type]


def test_compose_file_advertises_the_published_ports() -> None:
    """docker-compose.yml, read without a YAML library (its commands are flow sequences): each node
    binds its client port on every interface and advertises the port published on the host, which
    is the CLI's default endpoint for it; the command parses as `coterie node` options."""
    import re
    from pathlib import Path

    import click

    from coterie.client.cli import DEFAULT_ENDPOINTS
    from coterie.node.cli import node

    text = (Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text()
    services = re.findall(r"^  (n\d):\n(.*?)(?=^  n\d:|^volumes:)", text, re.M | re.S)
    assert [s for s, _ in services] == list(NAMES)
    advertised = []
    for name, body in services:
        m = re.search(r"command: \[(.*?)\]", body, re.S)
        assert m is not None, body
        args = [a.strip('"') for a in re.findall(r'"[^"]*"|[^,\s]+', m.group(1))]
        assert args[0] == "node"
        with click.Context(node, obj={"debug": False}) as ctx:
            assert node.parse_args(ctx, args[1:]) == []
            opts = ctx.params
        published = re.search(r'ports: \["(\d+):(\d+)"\]', body)
        assert published is not None
        host_port, container_port = published.groups()
        assert opts["name"] == name
        assert opts["client_addr"] == f"0.0.0.0:{container_port}"
        assert opts["advertise_client_addr"] == f"127.0.0.1:{host_port}"
        advertised.append(opts["advertise_client_addr"])
    assert ",".join(advertised) == DEFAULT_ENDPOINTS
