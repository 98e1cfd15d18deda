"""``coterie member list|add|promote|remove`` and ``coterie node --config FILE`` against real processes.

A fourth node is added as a learner through the CLI, started from a TOML config file (with one
setting from a ``COTERIE_NODE_*`` variable), promoted once it has caught up, and removed again, after
which its process exits by itself. Errors print one ``error:`` line and exit 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.proc_cluster import cluster, free_ports, poll

COTERIE = [sys.executable, "-m", "coterie.client.cli"]


def run(*args: str, endpoints: str, timeout: float = 60.0, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COTERIE, "--endpoints", endpoints, "--timeout", "10", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def members_json(endpoints: str) -> list[dict[str, Any]]:
    r = run("member", "list", "-o", "json", endpoints=endpoints)
    assert r.returncode == 0, r.stderr
    out: list[dict[str, Any]] = json.loads(r.stdout)
    return out


def test_member_commands_and_node_config_file(tmp_path: Path) -> None:
    with cluster(tmp_path / "c") as c:
        # A follower alone is enough: the list carries every member's client address.
        c.quiet()  # every member has published its addresses
        leader = c.leader()
        follower = next(n for n in ("n1", "n2", "n3") if n != leader)
        ms = members_json(c.client[follower])
        assert [(m["name"], m["client_addr"], m["learner"]) for m in ms] == [
            (n, c.client[n], False) for n in ("n1", "n2", "n3")]

        eps = ",".join(c.endpoints())
        r = run("put", "before/join", "x", endpoints=eps)
        assert r.returncode == 0, r.stderr

        client4, peer4 = (f"127.0.0.1:{p}" for p in free_ports(2))
        r = run("member", "add", "n4", "--peer-addr", peer4, "--client-addr", client4, "--learner",
                "-o", "json", endpoints=eps)
        assert r.returncode == 0, r.stderr
        added = json.loads(r.stdout)["added"]
        assert added["name"] == "n4" and added["learner"] and added["peer_addr"] == peer4
        n4_id = added["id"]

        # The new node, configured by a TOML file; the log level comes from the environment.
        cfg = tmp_path / "n4.toml"
        initial = ",".join(f"{n}={c.peer[n]}" for n in ("n1", "n2", "n3")) + f",n4={peer4}"
        cfg.write_text("[node]\n"
                       'name = "n4"\n'
                       f'data-dir = "{tmp_path / "n4"}"\n'
                       f'client-addr = "{client4}"\n'
                       f'peer-addr = "{peer4}"\n'
                       f'initial-cluster = "{initial}"\n'
                       'initial-cluster-state = "existing"\n'
                       f"tick-ms = {c.tick_ms}\n")
        env = {**os.environ, "COTERIE_NODE_LOG_LEVEL": "warning"}
        with open(tmp_path / "n4.log", "wb") as log:
            n4 = subprocess.Popen([*COTERIE, "node", "--config", str(cfg)], stdout=log, stderr=log, env=env)
        try:
            def caught_up() -> bool | None:
                r = run("get", "before/join", "--serializable", "-o", "json", endpoints=client4, timeout=30)
                return True if r.returncode == 0 and json.loads(r.stdout) else None

            poll("n4 serves the data written before it joined", caught_up, 60.0, interval=0.5)
            log_text = (tmp_path / "n4.log").read_text()
            assert '"level": "INFO"' not in log_text, "COTERIE_NODE_LOG_LEVEL=warning was ignored"

            def promoted() -> bool | None:
                r = run("member", "promote", "n4", "-o", "json", endpoints=eps)
                return True if r.returncode == 0 else None

            poll("n4 promoted", promoted, 60.0, interval=1.0)
            ms = members_json(eps)
            assert {m["name"]: m["learner"] for m in ms} == dict.fromkeys(("n1", "n2", "n3", "n4"), False)
            assert next(m for m in ms if m["name"] == "n4")["client_addr"] == client4

            r = run("member", "remove", str(n4_id), endpoints=eps)
            assert r.returncode == 0, r.stderr
            assert "n4" not in r.stdout
            assert n4.wait(timeout=60) == 0, "a removed member stops by itself"
        finally:
            if n4.poll() is None:
                n4.kill()
                n4.wait()

        assert [m["name"] for m in members_json(eps)] == ["n1", "n2", "n3"]
        # Errors: one line, exit 1.
        for args, needle in ((("member", "remove", "999"), "999"),
                             (("member", "remove", "nosuch"), "no member named 'nosuch'"),
                             (("member", "promote", "n1"), "")):
            r = run(*args, endpoints=eps)
            assert r.returncode == 1, (args, r.stdout, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr


def test_node_config_file_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('name = "n1"\ndata_dir = "x"\nbogus = 1\n')
    r = subprocess.run([*COTERIE, "node", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown settings bogus" in r.stderr, r.stderr
    cfg.write_text("name = \n")
    r = subprocess.run([*COTERIE, "node", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot read" in r.stderr, r.stderr
