"""Gossip in real ``coterie node`` processes on loopback (real UDP and TCP): three nodes started with
``--initial-cluster`` and ``--gossip-addr``/``--join``, observed through ``coterie members``.

The failure detection bound is computed from the gossip configuration the nodes run
(``--gossip-profile local``, :meth:`GossipConfig.local`), not picked by hand: see :func:`dead_bound`."""

from __future__ import annotations

import functools
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from coterie.node.gossip import GossipConfig
from coterie.node.gossip.suspicion import min_suspicion_timeout
from tests.proc_cluster import NAMES, ProcCluster, free_ports, poll


def dead_bound(cfg: GossipConfig, n: int) -> float:
    """Seconds from a member's crash until every other member of ``n`` marks it dead, at worst
    (without message loss or local-health slow-down):

    - each observer probes the members round-robin over a list it reshuffles at each wrap, so the
      crashed member is probed again at most ``2 (n - 1)`` probe intervals after it was last probed;
    - that probe fails at the end of its probe interval, and the observer suspects it;
    - the suspicion expires after at most Lifeguard's maximum, ``suspicion_max_timeout_mult`` times
      the minimum (sooner with confirmations: the other observers' suspicions);
    - plus one second for the dead message to travel and for this test's polling.
    """
    lo = min_suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
    hi = cfg.suspicion_max_timeout_mult * lo if cfg.lifeguard else lo
    return 2 * (n - 1) * cfg.probe_interval + cfg.probe_interval + hi + 1.0


def members(c: ProcCluster, name: str, *args: str) -> Any:
    """``coterie --endpoints <name> members -o json ARGS`` as parsed JSON (None if it failed)."""
    out = subprocess.run([sys.executable, "-m", "coterie.client.cli", "--endpoints", c.client[name],
                          "--timeout", "2", "members", "-o", "json", *args],
                         capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout) if out.returncode == 0 else None


def states(c: ProcCluster, name: str) -> dict[str, tuple[str, int]] | None:
    v = members(c, name)
    return None if v is None else {m["name"]: (m["state"], m["incarnation"]) for m in v["members"]}


def _is(c: ProcCluster, viewer: str, name: str, state: str, min_incarnation: int) -> bool | None:
    """True if ``viewer`` sees ``name`` in ``state`` with at least ``min_incarnation``, else None."""
    s = states(c, viewer)
    if s is None or name not in s:
        return None
    return True if s[name][0] == state and s[name][1] >= min_incarnation else None


def _gossip_cluster(root: Path) -> tuple[ProcCluster, dict[str, str]]:
    ports = free_ports(3)
    gossip = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(NAMES)}
    seeds = ",".join(gossip.values())
    extra = {n: ["--gossip-addr", gossip[n], "--join", seeds, "--gossip-profile", "local"] for n in NAMES}
    return ProcCluster(root, extra=extra), gossip


def test_members_failure_detection_rejoin_and_garbage(tmp_path: Path) -> None:
    c, gossip = _gossip_cluster(tmp_path)
    with c:
        c.start_all()
        leader, _ = c.settled()

        # Every node sees three alive members with their tags, the Raft leader's role among them.
        for viewer in NAMES:
            def converged(viewer: str = viewer) -> Any:
                v = members(c, viewer)
                if v is None or v["view_from"] != viewer or len(v["members"]) != 3:
                    return None
                ms = {m["name"]: m for m in v["members"]}
                ok = all(m["state"] == "alive" for m in ms.values()) and \
                    all(m["meta"].get("role") == ("leader" if n == leader else "follower")
                        for n, m in ms.items())
                return ms if ok else None

            ms = poll(f"{viewer} sees 3 alive members with their roles", converged, 30)
            for n in NAMES:
                assert ms[n]["addr"] == gossip[n]
                meta = ms[n]["meta"]
                assert meta["name"] == n and meta["client_addr"] == c.client[n]
                assert meta["peer_addr"] == c.peer[n] and meta["version"]

        # kill -9 a member: the others mark it dead within the bound, and say who suspected it.
        victim = "n3" if leader != "n3" else "n2"
        others = [n for n in NAMES if n != victim]
        before = states(c, others[0])
        assert before is not None
        inc_before = before[victim][1]
        bound = dead_bound(GossipConfig.local(), 3)
        c.kill(victim)
        t0 = time.monotonic()
        for o in others:
            poll(f"{o} marks {victim} dead", functools.partial(_is, c, o, victim, "dead", 0), bound + 5)
        took = time.monotonic() - t0
        assert took <= bound, f"{victim} was marked dead after {took:.1f} s, bound {bound:.1f} s"
        for o in others:
            why = members(c, o, "--why", victim)
            assert why is not None and why["name"] == victim and why["state"] == "dead"
            suspects = [e for e in why["events"] if e["kind"] == "suspect"]
            assert suspects and all(e["by"] in others for e in suspects), why
            assert any(e["kind"] == "dead" and e["by"] in others for e in why["events"]), why
            text = subprocess.run([sys.executable, "-m", "coterie.client.cli", "--endpoints", c.client[o],
                                   "members", "--why", victim], capture_output=True, text=True, timeout=30)
            assert text.returncode == 0 and f"suspect  by {suspects[-1]['by']}" in text.stdout, text.stdout
            assert f"{victim} is dead" in text.stdout

        # Restarted, it rejoins and is alive again, with a higher incarnation (it refutes its death).
        c.start(victim)
        for o in others:
            poll(f"{o} sees {victim} alive again",
                 functools.partial(_is, c, o, victim, "alive", inc_before + 1), 30)

        # Garbage datagrams to a gossip port are dropped and counted; the node keeps working.
        target = others[0]
        st0 = members(c, target)["stats"]
        rng = random.Random(1)
        host, port = gossip[target].rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(200):
                s.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))), (host, int(port)))
                time.sleep(0.001)

        def dropped(st: dict[str, int]) -> int:
            return sum(v for k, v in st.items() if k.startswith("dropped_"))

        poll("the garbage counted", lambda: ((v := members(c, target)) is not None
             and dropped(v["stats"]) >= dropped(st0) + 200) or None, 10)
        time.sleep(2 * GossipConfig.local().probe_interval)
        poll("still three alive", lambda: ((s := states(c, target)) is not None
             and all(st == "alive" for st, _ in s.values()) and len(s) == 3) or None, 10)
        put = subprocess.run([sys.executable, "-m", "coterie.client.cli", "--endpoints",
                              ",".join(c.endpoints()), "put", "after-garbage", "ok"],
                             capture_output=True, text=True, timeout=30)
        assert put.returncode == 0, put.stderr
        assert c.status(target) is not None


def test_members_without_gossip_says_it_is_off(tmp_path: Path) -> None:
    with ProcCluster(tmp_path) as c:
        c.start_all()
        c.settled()
        out = subprocess.run([sys.executable, "-m", "coterie.client.cli", "--endpoints", c.client["n1"],
                              "members"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "gossip is off on n1" in out.stderr, out.stderr
