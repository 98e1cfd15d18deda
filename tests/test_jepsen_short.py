"""Short Jepsen-style runs against real ``coterie node`` processes (the ``local`` backend; also
``netns`` when running as root with ``ip`` and ``iptables``): every workload under partitions and
kills must be valid, and the broken-node mode (reads without ReadIndex) must be caught under a
partition. Each run is bounded (a short time limit; the backend kills its nodes whatever happens),
and nothing here asserts a timing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from coterie.verify.checkers.linearizability import check
from coterie.verify.runner import RunConfig, run
from coterie.verify.workloads.register import to_lin_ops


def _run(tmp_path: Path, workload: str, nemesis: list[str], **kw: Any) -> dict[str, Any]:
    cfg = RunConfig(workload=workload, nemesis=nemesis, time_limit=float(kw.pop("time_limit", 12.0)),
                    recovery=3.0, interval=(1.0, 2.0), duration=(3.0, 5.0), store=tmp_path / "store",
                    seed=int(kw.pop("seed", 1)), **kw)
    res = run(cfg, log=lambda m: None)
    for name in ("history.jsonl", "results.json", "latency.png", "rate.png", "timeline.html"):
        assert (res.path / name).is_file(), name
    r = res.results
    assert not r["errors"], r["errors"]
    assert r["nemesis"]["faults"] >= 1, r["nemesis"]
    assert r["ops"]["ok"] >= 50, r["ops"]
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
    assert "NOT linearizable" in str(r["workload"]["explanation"])


def _netns_usable() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("iptables") is not None


@pytest.mark.skipif(not _netns_usable(), reason="netns backend needs root, ip and iptables")
def test_register_on_netns_under_partitions_and_kills(tmp_path: Path) -> None:
    r = _run(tmp_path, "register", ["partition", "kill"], backend="netns")
    assert r["valid"] is True, r["workload"]


def test_register_under_membership_churn(tmp_path: Path) -> None:
    """The membership nemesis removes a member, adds it back as a learner with a fresh data
    directory and a new id, and promotes it; the history stays linearizable and every node ends a
    voter under a new id."""
    r = _run(tmp_path, "register", ["member"], time_limit=8.0, seed=3)
    assert r["valid"] is True, r["workload"]
    assert r["membership"]["all_voters"] is True, r["membership"]
    steps = [e["value"] for e in _nemesis_events(tmp_path) if e["f"] == "member"]
    kinds = [s["step"] for s in steps]
    assert kinds[:3] == ["removed", "learner", "promoted"], steps
    removed, learner = steps[0], steps[1]
    assert learner["id"] > removed["id"], steps  # a new id, never a reused one
    assert removed["exited_by_itself"] is True, steps


def test_many_unknown_outcomes_are_checked(tmp_path: Path) -> None:
    """A short client deadline (0.1 s) while the leader is isolated or paused: many writes end with
    an unknown outcome (``info``), and the register checker still decides the history: valid as
    recorded, invalid once one read is made stale."""
    r = _run(tmp_path, "register", ["partition-leader", "pause"], client_timeout=0.1, time_limit=14.0, seed=5)
    assert r["valid"] is True, r["workload"]
    assert r["ops"]["info"] >= 10, r["ops"]
    events = [json.loads(line) for line in _history_file(tmp_path).read_text().splitlines()]
    ops = to_lin_ops(events)
    assert sum(o.status == "info" for o in ops) >= 10
    assert check(ops, timeout=120).ok is True
    stale = _make_one_read_stale(events)
    assert stale is not None, "no read followed two sequential writes of its key"
    res = check(to_lin_ops(stale), timeout=120)
    assert res.ok is False and "NOT linearizable" in res.explain()


def _run_dir(tmp_path: Path) -> Path:
    (d,) = [p for p in (tmp_path / "store").glob("*/*") if p.is_dir()]
    return d


def _history_file(tmp_path: Path) -> Path:
    return _run_dir(tmp_path) / "history.jsonl"


def _nemesis_events(tmp_path: Path) -> list[dict[str, Any]]:
    return [e for e in (json.loads(x) for x in _history_file(tmp_path).read_text().splitlines())
            if e["process"] == "nemesis"]


def _make_one_read_stale(events: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A copy of ``events`` where one ok read returns the value of a write that an ok write of the
    same key overwrote before the read began (values are unique, so no linearization exists)."""
    done = {e["invoke_index"]: e for e in events if e["process"] != "nemesis" and e["type"] != "invoke"}
    writes: dict[str, list[tuple[float, float, Any]]] = {}
    for e in events:
        if e["process"] != "nemesis" and e["type"] == "invoke" and e["f"] == "write":
            d = done.get(e["index"])
            if d is not None and d["type"] == "ok":
                writes.setdefault(e["key"], []).append((e["time"], d["time"], e["value"]))
    for e in events:
        if e["process"] == "nemesis" or e["type"] != "invoke" or e["f"] != "read":
            continue
        d = done.get(e["index"])
        if d is None or d["type"] != "ok":
            continue
        ws = writes.get(e["key"], [])
        for i1, w1 in enumerate(ws):
            for w2 in ws[i1 + 1:]:
                if w1[1] < w2[0] and w2[1] < e["time"] and d["value"] != w1[2]:
                    out = [dict(x) for x in events]
                    out[d["index"]]["value"] = w1[2]
                    return out
    return None
