"""The ``compose`` backend against real containers: opt-in (``COTERIE_TEST_COMPOSE=1``), not in CI,
because it needs docker compose or podman-compose and a built ``coterie:dev`` image (on hosts
without Docker Hub: ``scripts/compose-base-image``, then ``BASE_IMAGE=localhost/coterie-base:bookworm
podman-compose build``).

- A partition becomes iptables DROP rules inside the containers and moves the leadership; healing
  clears them; teardown leaves no container and no network of the project.
- A short register run under partitions, kills, pauses and membership churn is valid and ends with
  every node a voter.

The generated compose file's bind mounts are checked without containers (always run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from coterie.v1 import cluster_pb2
from coterie.verify.backends.base import NodeProc
from coterie.verify.backends.compose import ComposeBackend
from coterie.verify.nemesis.partition import isolate
from coterie.verify.runner import RunConfig, run

needs_compose = pytest.mark.skipif(
    os.environ.get("COTERIE_TEST_COMPOSE") != "1"
    or not (shutil.which("podman-compose") or shutil.which("docker")),
    reason="opt-in: COTERIE_TEST_COMPOSE=1 with docker compose or podman-compose and the coterie:dev image")


def test_spec_mounts_absolute_data_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A relative store (the CLI's default "store") must not become "store/...:/data", which compose
    # takes for a named volume (podman-compose then fails creating a volume named after the path).
    monkeypatch.chdir(tmp_path)
    b = ComposeBackend(2, Path("store") / "run")
    for i, name in enumerate(("n1", "n2")):
        b.nodes[name] = NodeProc(name, i + 1, f"127.0.0.1:{17001 + i}", f"{name}:7002", f"{name}:7001",
                                 f"{name}:7002", b.root / "data" / name)
    for name, svc in b._spec()["services"].items():
        src = svc["volumes"][0].rsplit(":", 1)[0]
        assert Path(src).is_absolute() and Path(src) == tmp_path / "store" / "run" / "data" / name, src


@needs_compose
def test_partition_inside_containers_and_clean_teardown(tmp_path: Path) -> None:
    b = ComposeBackend(3, tmp_path)
    with b:
        b.start_all()
        b.wait_for_ready(180)
        lead = b.wait_for_leader(60)
        b.partition(isolate(b.names(), lead))
        others = [n for n in b.names() if n != lead]
        rules = b.rules(lead)
        for n in others:
            assert f"-A INPUT -s {b.ip(n)}/32 -j DROP" in rules, rules
        end = time.monotonic() + 90
        while time.monotonic() < end:
            sts = [b.status(n) for n in others]
            if any(st is not None and st.role == cluster_pb2.ROLE_LEADER for st in sts):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("no leader on the majority side within 90 s")
        b.heal_network()
        assert "-j DROP" not in b.rules(lead)
        project, engine = b.project, b.engine
    left = subprocess.run([engine, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                          timeout=60).stdout
    assert project not in left
    nets = subprocess.run([engine, "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True,
                          timeout=60).stdout
    assert project not in nets


@needs_compose
def test_register_under_every_process_fault(tmp_path: Path) -> None:
    cfg = RunConfig(workload="register", nemesis=["partition", "kill", "pause", "member"], backend="compose",
                    time_limit=25.0, recovery=5.0, interval=(1.0, 3.0), duration=(3.0, 5.0),
                    store=tmp_path / "store", seed=11)
    res = run(cfg, log=lambda m: None)
    r = res.results
    assert not r["errors"], r["errors"]
    assert res.valid is True, r["workload"]
    assert r["nemesis"]["faults"] >= 2
    assert r["membership"]["all_voters"] is True
    for name in ("n1.log", "n2.log", "n3.log"):
        assert (res.path / "nodes" / name).is_file(), name
