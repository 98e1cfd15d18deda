"""The ``compose`` backend against real containers: opt-in (``COTERIE_TEST_COMPOSE=1``), not in CI,
because it needs docker compose or podman-compose and a built ``coterie:dev`` image (on hosts
without Docker Hub: ``scripts/compose-base-image``, then ``BASE_IMAGE=localhost/coterie-base:bookworm
podman-compose build``).

- A partition becomes iptables DROP rules inside the containers and moves the leadership; healing
  clears them; teardown leaves no container and no network of the project.
- A short register run under partitions, kills, pauses and membership churn is valid and ends with
  every node a voter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from coterie.v1 import cluster_pb2
from coterie.verify.backends.compose import ComposeBackend
from coterie.verify.nemesis.partition import isolate
from coterie.verify.runner import RunConfig, run

pytestmark = pytest.mark.skipif(
    os.environ.get("COTERIE_TEST_COMPOSE") != "1"
    or not (shutil.which("podman-compose") or shutil.which("docker")),
    reason="opt-in: COTERIE_TEST_COMPOSE=1 with docker compose or podman-compose and the coterie:dev image")


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
