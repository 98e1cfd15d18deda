"""The ``netns`` backend (root): each node in its own network namespace, joined to a bridge on the
host by a veth pair; partitions are real ``iptables`` DROP rules inside the namespaces.

Layout of one run (``k`` is a per-run number, so concurrent runs do not collide):

- bridge ``cvb<k>`` on the host, subnet ``10.213.<k>.0/24``: the host is ``.1``, node ``i``
  (1-based) is ``.(10 + i)``;
- namespace ``cv<k>n<i>`` with ``lo`` and ``eth0`` (the veth end), its host end ``cv<k>h<i>`` on
  the bridge;
- each node listens on ``<its ip>:7001`` (clients, reached from the host through the bridge) and
  ``<its ip>:7002`` (peers).

A grudge ``n -> {m...}`` becomes ``iptables -A INPUT -s <ip of m> -j DROP`` in ``n``'s namespace, so
``n`` drops everything from ``m`` (client traffic comes from the host's address and is never
dropped). Slow and lossy links use the nodes' fault-injection API, as in the ``local`` backend.

``teardown()`` kills the nodes, deletes the namespaces (which removes the veths) and the bridge;
it runs whatever happened (the runner uses the backend as a context manager) and is idempotent.
``setup()`` installs iptables with apt if it is missing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

from coterie.v1 import faults_pb2

from .base import Grudge, NodeOptions, NodeProc
from .local import LocalBackend

CLIENT_PORT = 7001
PEER_PORT = 7002


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        why = r.stderr.strip() or r.stdout.strip()
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {why}")
    return r


def ensure_tools() -> None:
    """Root, ``ip`` and ``iptables`` (installed with apt when missing)."""
    if os.geteuid() != 0:
        raise RuntimeError("the netns backend needs root (network namespaces, iptables)")
    if shutil.which("ip") is None:
        raise RuntimeError("the netns backend needs the 'ip' command (iproute2)")
    if shutil.which("iptables") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "iptables"], check=False, env=env,
                       capture_output=True, timeout=600)
        if shutil.which("iptables") is None:
            raise RuntimeError("iptables is missing and 'apt-get install iptables' did not provide it")


class NetnsBackend(LocalBackend):
    name = "netns"

    def __init__(self, n: int, root: Path, options: NodeOptions | None = None) -> None:
        super().__init__(n, root, options)
        self.k = 0
        self.bridge = ""
        self.netns: dict[str, str] = {}
        self.ip: dict[str, str] = {}
        self._iptables_grudge: dict[str, frozenset[str]] = {}
        self._made: list[tuple[str, str]] = []
        """What setup created, in order: ("bridge", name) / ("netns", name)."""

    def setup(self) -> None:
        ensure_tools()
        self.root.mkdir(parents=True, exist_ok=True)
        existing = _sh("ip", "-o", "link", "show").stdout
        for _ in range(50):
            k = random.randint(1, 250)
            if f"cvb{k}:" not in existing and f"cvb{k}@" not in existing:
                break
        else:
            raise RuntimeError("no free bridge name cvb<k> found")
        self.k = k
        self.bridge = f"cvb{k}"
        host_ip = f"10.213.{k}.1"
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        self._made.append(("bridge", self.bridge))
        self._record()
        _sh("ip", "addr", "add", f"{host_ip}/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        for i in range(1, self.n + 1):
            name = f"n{i}"
            ns = f"cv{k}n{i}"
            ip = f"10.213.{k}.{10 + i}"
            host_end, ns_end = f"cv{k}h{i}", f"cv{k}p{i}"
            _sh("ip", "netns", "add", ns)
            self._made.append(("netns", ns))
            self._record()
            _sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            _sh("ip", "link", "set", ns_end, "netns", ns)
            _sh("ip", "link", "set", host_end, "master", self.bridge)
            _sh("ip", "link", "set", host_end, "up")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_end, "name", "eth0")
            _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            self.netns[name] = ns
            self.ip[name] = ip
            client, peer = f"{ip}:{CLIENT_PORT}", f"{ip}:{PEER_PORT}"
            self.nodes[name] = NodeProc(name, i, client, peer, client, peer, self.root / "data" / name)
        # Bridged traffic may traverse the host's FORWARD chain (br_netfilter): let it through.
        _sh("iptables", "-w", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT")
        self._made.append(("forward", self.bridge))
        self._record()

    def _record(self) -> None:
        (self.root / "netns.json").write_text(json.dumps(self._made))

    def teardown(self) -> None:
        self.stop_all()
        for kind, name in reversed(self._made):
            if kind == "netns":
                _sh("ip", "netns", "del", name, check=False)
            elif kind == "bridge":
                _sh("ip", "link", "del", name, check=False)
            elif kind == "forward":
                _sh("iptables", "-w", "-D", "FORWARD", "-i", name, "-o", name, "-j", "ACCEPT", check=False)
        self._made.clear()
        if self.root.exists():
            self._record()

    def wrap(self, p: NodeProc, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns[p.name], *cmd]

    # ------------------------------------------------------------------------------ faults

    def _state(self, name: str) -> faults_pb2.FaultState:
        delay, drop = self._links.get(name, (0.0, 0.0))
        return faults_pb2.FaultState(drop_rate=drop, delay_seconds=delay)

    def partition(self, grudge: Grudge) -> None:
        g = {n: frozenset(v) for n, v in grudge.items() if v}
        for name, ns in self.netns.items():
            _sh("ip", "netns", "exec", ns, "iptables", "-w", "-F", "INPUT")
            for m in sorted(g.get(name, ())):
                _sh("ip", "netns", "exec", ns, "iptables", "-w", "-A", "INPUT", "-s", self.ip[m],
                    "-j", "DROP")
        self._iptables_grudge = g

    def rules(self, name: str) -> str:
        """The INPUT rules in ``name``'s namespace (for tests and debugging)."""
        return _sh("ip", "netns", "exec", self.netns[name], "iptables", "-w", "-S", "INPUT").stdout
