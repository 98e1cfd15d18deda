"""Errors when the cluster has lost its quorum (two of three members killed): the error says so, with
how many members answered and which could not be reached; a read is marked safe to retry; a member's
"not the leader" is not doubled; the CLI prints it on one line."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from coterie.client import Client, DeadlineExceeded
from coterie.client._call import outage_summary
from coterie.client.cli import main
from tests.proc_cluster import ProcCluster, cluster


def test_outage_summary_counts_and_names() -> None:
    seen = {"a:1": (True, "not the leader; no leader known"), "b:2": (False, "refused")}
    s = outage_summary(seen, ["a:1", "b:2", "c:3"])
    assert s.startswith("the cluster has lost its quorum (2 of 3 members needed")
    assert "1 of 3 members answered" in s and "unreachable: b:2" in s and "not tried: c:3" in s
    s = outage_summary({"a:1": (True, ""), "b:2": (True, ""), "c:3": (False, "")}, ["a:1", "b:2", "c:3"])
    assert s.startswith("no leader could be used") and "2 of 3 members answered" in s
    assert outage_summary({}, ["a:1"]) == ""


@pytest.fixture(scope="module")
def lost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    with cluster(tmp_path_factory.mktemp("outage")) as c:
        with Client(c.endpoints(), timeout=10) as cl:
            cl.put("o/k", "v")
        c.kill("n2")
        c.kill("n3")
        time.sleep(1.0)  # n1 steps down (CheckQuorum) within an election timeout
        yield c


def test_read_says_the_quorum_is_lost(lost: ProcCluster) -> None:
    with Client(lost.endpoints(), timeout=3) as c, pytest.raises(DeadlineExceeded) as ei:
        c.get("o/k")
    msg = str(ei.value)
    assert "the cluster has lost its quorum" in msg, msg
    assert "1 of 3 members answered" in msg, msg
    assert f"unreachable: {lost.client['n2']}, {lost.client['n3']}" in msg, msg
    assert "not the leader: not the leader" not in msg, msg
    assert ei.value.retriable and msg.endswith("[safe to retry]"), msg


def test_write_says_the_quorum_is_lost(lost: ProcCluster) -> None:
    with Client(lost.endpoints(), timeout=3) as c, pytest.raises(DeadlineExceeded) as ei:
        c.put("o/k", "w")
    msg = str(ei.value)
    assert "the cluster has lost its quorum" in msg and "1 of 3 members answered" in msg, msg
    assert "not the leader: not the leader" not in msg, msg


def test_cli_prints_one_line_about_the_quorum(lost: ProcCluster) -> None:
    r = CliRunner().invoke(main, ["--endpoints", ",".join(lost.endpoints()), "--timeout", "3", "get", "o/k"])
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "the cluster has lost its quorum" in lines[0], r.stderr
    assert lines[0].endswith("[safe to retry]"), lines
