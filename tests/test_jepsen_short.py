"""Short Jepsen-style runs against real ``coterie node`` processes (the ``local`` backend; also
``netns`` when running as root with ``ip`` and ``iptables``): every workload under partitions and
kills must be valid, and the broken-node mode (reads without ReadIndex) must be caught under a
partition. Each run is bounded (a short time limit; the backend kills its nodes whatever happens),
and nothing here asserts a timing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from coterie.verify.runner import RunConfig, run


def _run(tmp_path: Path, workload: str, nemesis: list[str], **kw: object) -> dict[str, object]:
    cfg = RunConfig(workload=workload, nemesis=nemesis, time_limit=float(kw.pop("time_limit", 12.0)),
                    recovery=3.0, interval=(1.0, 2.0), duration=(3.0, 5.0), store=tmp_path / "store",
                    seed=int(kw.pop("seed", 1)), **kw)  # type: ignore[arg-type]
    res = run(cfg, log=lambda m: None)
    for name in ("history.jsonl", "results.json", "latency.png", "rate.png", "timeline.html"):
        assert (res.path / name).is_file(), name
    r = res.results
    assert not r["errors"], r["errors"]
    assert r["nemesis"]["faults"] >= 1, r["nemesis"]  # type: ignore[index]
    assert r["ops"]["ok"] >= 50, r["ops"]  # type: ignore[index]
    return {"valid": res.valid, **r}


@pytest.mark.parametrize("workload", ["register", "set", "watch"])
def test_workload_is_valid_under_partitions_and_kills(tmp_path: Path, workload: str) -> None:
    r = _run(tmp_path, workload, ["partition", "kill"])
    assert r["valid"] is True, r["workload"]


def test_broken_reads_are_caught_under_a_partition(tmp_path: Path) -> None:
    """Nodes serve reads from local state without ReadIndex: an isolated node keeps answering with
    values the majority has overwritten, which the linearizability checker must report."""
    r = _run(tmp_path, "register", ["partition-leader"], unsafe_local_reads=True, time_limit=15.0,
             workload_options={"keys": 1})
    assert r["valid"] is False, r["workload"]
    assert "NOT linearizable" in str(r["workload"]["explanation"])  # type: ignore[index]


def _netns_usable() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("iptables") is not None


@pytest.mark.skipif(not _netns_usable(), reason="netns backend needs root, ip and iptables")
def test_register_on_netns_under_partitions_and_kills(tmp_path: Path) -> None:
    r = _run(tmp_path, "register", ["partition", "kill"], backend="netns")
    assert r["valid"] is True, r["workload"]
