"""The ``compose`` backend: each node in its own container of a generated compose project, run with
``docker compose`` when it is available, else ``podman-compose`` (with podman).

Layout of one run: ``<root>/compose.yml`` defines services ``n1``..``nN`` (image ``coterie:dev``,
or ``$COTERIE_IMAGE``; ``--build`` builds it from the repository's Dockerfile with ``BASE_IMAGE``),
project ``cvc<k>`` (``k`` random, so runs do not collide), container names ``cvc<k>-n<i>``. Each node
listens on ``n<i>:7001`` (clients) and ``n<i>:7002`` (peers) on the project's network; its client port
is published on ``127.0.0.1:<free port>`` for the host's clients. Data lives in bind mounts
``<root>/data/n<i>`` (so a node added back starts from a wiped directory, and ``--keep-data`` works).
Containers never restart by themselves (``restart: "no"``).

Faults:

- partitions: ``iptables -A INPUT -s <container ip> -j DROP`` inside the containers (they have
  ``NET_ADMIN``); client traffic arrives from the host side of the network and is never dropped;
- kill: ``<engine> kill -s KILL``, then ``<engine> start``; pause: ``<engine> pause`` / ``unpause``;
- slow and lossy links: the nodes' fault-injection API (through the published client port);
- membership churn: as in every backend (:meth:`Backend.remove_member` ...); a node added back gets a
  ``.join`` marker in its wiped data directory, and the container's entry point then starts it with
  ``--initial-cluster-state existing``.

A container's network namespace (and so its rules) does not survive a restart, and its address may
change: whenever a node starts, every node's rules are set again (as pending faults, like the
``local`` backend's). ``teardown()`` saves each container's log to ``<root>/<name>.log`` and runs
``compose down -v`` (and removes the project's network, which podman-compose 1.0 leaves); it is
idempotent. Every engine command is bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from coterie.v1 import faults_pb2

from .base import Backend, NodeOptions, NodeProc, free_ports
from .local import LocalBackend

CLIENT_PORT = 7001
PEER_PORT = 7002
REPO = Path(__file__).resolve().parents[3]
ENTRY = ('if [ -e /data/.join ]; then set -- "$@" --initial-cluster-state existing; fi; '
         'exec coterie "$@"')


def _run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(args)} did not finish within {timeout:.0f} s") from exc
    if check and r.returncode != 0:
        why = (r.stderr.strip() or r.stdout.strip())[-2000:]
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {why}")
    return r


def pick_tools() -> tuple[list[str], str, dict[str, str]]:
    """(compose command, container engine, environment): ``docker compose`` with docker if that
    works, else ``podman-compose`` with podman (and ``scripts/podman/containers.conf`` as
    ``CONTAINERS_CONF`` unless one is set)."""
    env = dict(os.environ)
    if shutil.which("docker"):
        r = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return ["docker", "compose"], "docker", env
    if shutil.which("podman-compose") and shutil.which("podman"):
        conf = REPO / "scripts" / "podman" / "containers.conf"
        if "CONTAINERS_CONF" not in env and conf.is_file():
            env["CONTAINERS_CONF"] = str(conf)
        return ["podman-compose"], "podman", env
    raise RuntimeError("the compose backend needs 'docker compose' or podman-compose with podman")


class ComposeBackend(LocalBackend):
    name = "compose"

    def __init__(self, n: int, root: Path, options: NodeOptions | None = None, *, build: bool = False,
                 image: str | None = None) -> None:
        super().__init__(n, root, options)
        self.build = build
        self.image = image or os.environ.get("COTERIE_IMAGE", "coterie:dev")
        self.project = ""
        self.compose: list[str] = []
        self.engine = ""
        self.env: dict[str, str] = {}
        self.file = root / "compose.yml"
        self._up = False
        self._running: dict[str, tuple[float, bool, int | None]] = {}
        self._run_lock = threading.Lock()

    @classmethod
    def create(cls, nodes: int, root: Path, opts: NodeOptions, *, build_image: bool = False) -> Backend:
        return cls(nodes, root, opts, build=build_image)

    # ------------------------------------------------------------------------------ life cycle

    def container(self, name: str) -> str:
        return f"{self.project}-{name}"

    def _compose(self, *args: str, timeout: float = 300.0,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([*self.compose, "-p", self.project, "-f", str(self.file), *args], env=self.env,
                    timeout=timeout, check=check)

    def _engine(self, *args: str, timeout: float = 60.0,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([self.engine, *args], env=self.env, timeout=timeout, check=check)

    def setup(self) -> None:
        self.compose, self.engine, self.env = pick_tools()
        self.root.mkdir(parents=True, exist_ok=True)
        self.project = f"cvc{random.randrange(10**6):06d}"
        ports = free_ports(self.n)
        for i in range(self.n):
            name = f"n{i + 1}"
            client = f"127.0.0.1:{ports[i]}"
            data = self.root / "data" / name
            data.mkdir(parents=True, exist_ok=True)
            self.nodes[name] = NodeProc(name, i + 1, client, f"{name}:{PEER_PORT}", f"{name}:{CLIENT_PORT}",
                                        f"{name}:{PEER_PORT}", data)
        self.file.write_text(json.dumps(self._spec(), indent=2) + "\n")  # JSON is YAML
        if self.build:
            self._compose("build", timeout=1800)
        elif self._engine("image", "inspect", self.image, check=False).returncode != 0:
            raise RuntimeError(f"image {self.image} is missing: build it (coterie verify --backend compose "
                               f"--build, or docker compose build) or set COTERIE_IMAGE")

    def _spec(self) -> dict[str, Any]:
        o = self.options
        initial = self.initial_cluster()
        services: dict[str, Any] = {}
        for name, p in self.nodes.items():
            cmd = ["node", "--name", name, "--data-dir", "/data", "--client-addr", p.listen_client,
                   "--peer-addr", p.peer_addr, "--initial-cluster", initial, "--tick-ms", str(o.tick_ms),
                   "--election-ticks", str(o.election_ticks), "--log-level", o.log_level]
            if o.fault_injection:
                cmd.append("--enable-fault-injection")
            if o.unsafe_local_reads:
                cmd.append("--unsafe-local-reads")
            host_port = p.client_addr.rsplit(":", 1)[1]
            svc: dict[str, Any] = {
                "image": self.image, "container_name": self.container(name), "hostname": name,
                "entrypoint": ["sh", "-c", ENTRY, "sh"], "command": cmd, "restart": "no",
                "cap_add": ["NET_ADMIN"], "stop_grace_period": "10s",
                "ports": [f"127.0.0.1:{host_port}:{CLIENT_PORT}"],
                # Absolute: compose takes a source without "/" or "./" for a named volume (a
                # relative --store such as the default "store" would otherwise fail).
                "volumes": [f"{p.data_dir.resolve()}:/data"],
            }
            if self.build:
                svc["build"] = {"context": str(REPO),
                                "args": {"BASE_IMAGE": os.environ.get("BASE_IMAGE", "python:3.11-slim")}}
            services[name] = svc
        return {"services": services}

    def teardown(self) -> None:
        if not self.project or not self.file.exists():
            return
        for name in self.nodes:
            r = self._engine("logs", self.container(name), check=False, timeout=60)
            if r.returncode == 0:
                (self.root / f"{name}.log").write_text(r.stdout + r.stderr)
        self._compose("down", "-v", "-t", "5", timeout=300, check=False)
        # Whatever compose left behind (a container it did not know about after a failure).
        for name in self.nodes:
            self._engine("rm", "-f", "-v", self.container(name), check=False, timeout=60)
        # podman-compose 1.0 leaves the project's network behind.
        self._engine("network", "rm", "-f", f"{self.project}_default", check=False, timeout=60)
        self.file.unlink()
        for p in self.nodes.values():
            p.paused = False
        self._up = False

    def wipe_node(self, name: str) -> None:
        d = self.nodes[name].data_dir
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
        (d / ".join").write_text("added back: start with --initial-cluster-state existing\n")

    # ------------------------------------------------------------------------------ processes

    def start_all(self) -> None:
        if not self._up:
            self._compose("up", "-d", timeout=600)
            self._up = True
            self._forget()
            for name in self.nodes:
                self._after_start(name)
            return
        for name in self.nodes:
            self.start(name)

    def start(self, name: str) -> None:
        p = self.nodes[name]
        if p.removed:
            raise RuntimeError(f"{name} was removed from the cluster; add it back with add_member")
        if self.running(name):
            return
        self._engine("start", self.container(name))
        p.paused = False
        self._forget()
        self._after_start(name)

    def _after_start(self, name: str) -> None:
        # A new network namespace (no rules) and maybe a new address: set every node's faults again.
        with self._lock:
            self._pending = set(self.nodes)
        threading.Thread(target=self._apply_when_up, args=(name, 60.0), daemon=True).start()
        if self._grudge:
            threading.Thread(target=self._sync_for, args=(30.0,), daemon=True).start()

    def _sync_for(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.sync_faults():
            time.sleep(0.2)

    def _forget(self) -> None:
        with self._run_lock:
            self._running.clear()

    def _state_of(self, name: str) -> tuple[bool, int | None]:
        """(running, exit code), from ``inspect`` at most every 0.3 s per node."""
        now = time.monotonic()
        with self._run_lock:
            hit = self._running.get(name)
        if hit is not None and now - hit[0] < 0.3:
            return hit[1], hit[2]
        r = self._engine("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", self.container(name),
                         check=False, timeout=30)
        parts = r.stdout.split()
        running = r.returncode == 0 and bool(parts) and parts[0] == "true"
        code = int(parts[1]) if r.returncode == 0 and len(parts) > 1 and not running else None
        with self._run_lock:
            self._running[name] = (now, running, code)
        return running, code

    def running(self, name: str) -> bool:
        if not self._up:
            return False
        return self._state_of(name)[0]

    def exit_code(self, name: str) -> int | None:
        return self._state_of(name)[1]

    def kill(self, name: str) -> None:
        if self.running(name):
            self._engine("kill", "-s", "KILL", self.container(name), check=False)
        self.nodes[name].paused = False
        self._forget()

    def pause(self, name: str) -> None:
        if self.running(name):
            self._engine("pause", self.container(name))
            self.nodes[name].paused = True

    def resume(self, name: str) -> None:
        p = self.nodes[name]
        if p.paused:
            self._engine("unpause", self.container(name), check=False)
        p.paused = False
        self.sync_faults()

    def stop_all(self) -> None:
        if self._up:
            for name, p in self.nodes.items():
                if p.paused:
                    self._engine("unpause", self.container(name), check=False)
                    p.paused = False
            self._compose("stop", "-t", "10", timeout=300, check=False)
            self._forget()

    # ------------------------------------------------------------------------------ faults

    def ip(self, name: str) -> str:
        """The container's address on the project network ("" if it has none now)."""
        r = self._engine("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                         self.container(name), check=False, timeout=30)
        return r.stdout.split()[0] if r.returncode == 0 and r.stdout.split() else ""

    def _state(self, name: str) -> faults_pb2.FaultState:
        delay, drop = self._links.get(name, (0.0, 0.0))
        return faults_pb2.FaultState(drop_rate=drop, delay_seconds=delay)

    def _apply(self, name: str) -> bool:
        """iptables rules inside ``name`` for its grudge, then its link faults through the API."""
        p = self.nodes[name]
        if not self.running(name) or p.paused:
            return False
        with self._lock:
            drops = sorted(self._grudge.get(name, ()))
        ips = []
        for m in drops:
            ip = self.ip(m)
            if not ip and self.running(m):
                return False  # its address is not known yet: try again
            if ip:
                ips.append(ip)
        c = self.container(name)
        if self._engine("exec", c, "iptables", "-w", "-F", "INPUT", check=False).returncode != 0:
            return False
        for ip in ips:
            if self._engine("exec", c, "iptables", "-w", "-A", "INPUT", "-s", ip, "-j", "DROP",
                            check=False).returncode != 0:
                return False
        return super()._apply(name)

    def rules(self, name: str) -> str:
        """The INPUT rules inside ``name``'s container (for tests and debugging)."""
        return self._engine("exec", self.container(name), "iptables", "-w", "-S", "INPUT").stdout
