"""The local development cluster behind ``coterie cluster up``: N ``coterie node`` child processes on
loopback, supervised, and the short demo that ``scripts/dev-cluster`` runs against them.

Layout (``plan``): member ``i`` (1-based) is named ``n<i>``, serves clients on ``base_port + i - 1`` and
Raft on ``peer_base_port + i - 1`` (default ``base_port + 100``), keeps its data in ``<data_dir>/n<i>``
and logs (JSON lines) to ``<data_dir>/n<i>.log``. With the defaults (3 nodes, base port 7001) these are
exactly the addresses of the CLI's default endpoints and of the README's hand-started cluster, so the
same data directories can be used both ways.

Supervision invariants (:class:`Supervisor`):

- every child the supervisor started is either running, waiting for a restart, given up on, or has been
  stopped: none is left running when :meth:`Supervisor.run` returns (whatever way it returns);
- a child that exits while the cluster is not being stopped is always reported (exit status and the
  last line of its log), then restarted after a back-off unless restarts are off; after
  ``MAX_QUICK_FAILURES`` consecutive runs shorter than ``STABLE_AFTER`` seconds it is given up on;
- stopping sends SIGTERM to every running child (a node stops gracefully on it, handing leadership
  over), waits up to ``grace`` seconds for all of them together, then SIGKILLs the rest.

Not covered: if the supervisor itself is killed with SIGKILL its children keep running (they share its
process group, so a terminal's Ctrl-C or hang-up still reaches them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 7001
PEER_PORT_OFFSET = 100
MAX_NODES = 99
STABLE_AFTER = 10.0
"""A child that ran at least this many seconds resets its consecutive-failure count."""
MAX_QUICK_FAILURES = 5
"""Consecutive short-lived runs after which a child is given up on."""
POLL_INTERVAL = 0.2


class DevClusterError(Exception):
    """The dev cluster cannot be started as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One planned member of the dev cluster."""

    name: str
    client_addr: str
    peer_addr: str
    data_dir: Path
    log_path: Path


def plan(nodes: int, data_dir: Path, *, base_port: int = DEFAULT_BASE_PORT, peer_base_port: int | None = None,
         host: str = DEFAULT_HOST) -> list[MemberSpec]:
    """The members of an ``nodes``-node cluster (see the module docstring for the layout); raises
    :class:`DevClusterError` if the count or a port is out of range or client and peer ports overlap."""
    if not 1 <= nodes <= MAX_NODES:
        raise DevClusterError(f"--nodes must be between 1 and {MAX_NODES}, got {nodes}")
    peer_base = base_port + PEER_PORT_OFFSET if peer_base_port is None else peer_base_port
    client_ports = range(base_port, base_port + nodes)
    peer_ports = range(peer_base, peer_base + nodes)
    for p in (*client_ports, *peer_ports):
        if not 1 <= p <= 65535:
            raise DevClusterError(f"port {p} is out of range (client ports from {base_port}, peer ports "
                                  f"from {peer_base}, {nodes} nodes)")
    if set(client_ports) & set(peer_ports):
        raise DevClusterError(f"client ports {base_port}-{base_port + nodes - 1} overlap peer ports "
                              f"{peer_base}-{peer_base + nodes - 1}; choose another --peer-base-port")
    return [MemberSpec(name=f"n{i + 1}", client_addr=f"{host}:{client_ports[i]}",
                       peer_addr=f"{host}:{peer_ports[i]}", data_dir=data_dir / f"n{i + 1}",
                       log_path=data_dir / f"n{i + 1}.log") for i in range(nodes)]


def endpoints(specs: list[MemberSpec]) -> str:
    """The client endpoints, comma-separated (the form ``--endpoints`` and ``COTERIE_ENDPOINTS`` take)."""
    return ",".join(s.client_addr for s in specs)


def initial_cluster(specs: list[MemberSpec]) -> str:
    """The ``--initial-cluster`` value every member is started with."""
    return ",".join(f"{s.name}={s.peer_addr}" for s in specs)


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def ports_in_use(specs: list[MemberSpec]) -> list[str]:
    """The planned addresses that cannot be bound right now (another process listens there)."""
    busy: list[str] = []
    for addr in [a for s in specs for a in (s.client_addr, s.peer_addr)]:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(_split(addr))
            except OSError:
                busy.append(addr)
    return busy


def node_command(spec: MemberSpec, specs: list[MemberSpec], *, tick_ms: int, log_level: str) -> list[str]:
    """The command line of ``coterie node`` for ``spec`` (run with this interpreter)."""
    return [sys.executable, "-m", "coterie.client.cli", "node", "--name", spec.name,
            "--data-dir", str(spec.data_dir), "--client-addr", spec.client_addr,
            "--peer-addr", spec.peer_addr, "--initial-cluster", initial_cluster(specs),
            "--tick-ms", str(tick_ms), "--log-level", log_level]


def describe_exit(returncode: int) -> str:
    """``exited with code 1`` or ``killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def last_log_line(path: Path, since: int = 0, limit: int = 200) -> str:
    """The last non-empty line written to ``path`` at or after byte ``since``, reduced to its message
    (and error) if it is one of the node's JSON log lines; ``""`` if there is none."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(since, size - 64 * 1024)
            f.seek(start)
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    with contextlib.suppress(ValueError, AttributeError):
        obj = json.loads(line)
        if isinstance(obj, dict) and "msg" in obj:
            line = str(obj["msg"])
            exc = obj.get("exc")
            if exc:
                line += ": " + str(exc).strip().splitlines()[-1]
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def leader_of(specs: list[MemberSpec], timeout: float = 0.5) -> tuple[str, int] | None:
    """The name and term of a member that reports itself leader, or None."""
    import grpc  # type: ignore[import-untyped]

    from coterie.v1 import cluster_pb2, cluster_pb2_grpc

    for s in specs:
        try:
            with grpc.insecure_channel(s.client_addr) as ch:
                st = cluster_pb2_grpc.ClusterStub(ch).Status(cluster_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError:
            continue
        if st.role == cluster_pb2.ROLE_LEADER:
            return s.name, int(st.term)
    return None


@dataclass(slots=True)
class _Child:
    spec: MemberSpec
    cmd: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log_offset: int = 0
    quick_failures: int = 0
    restart_at: float | None = None
    given_up: bool = False
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


Echo = Callable[[str], None]


class Supervisor:
    """Starts, watches and stops the children of one dev cluster (invariants: module docstring).

    ``out`` receives progress lines, ``err`` problem reports (a child that died, given up on, no
    leader in time). Not thread-safe: one thread calls :meth:`run` (or the lower-level methods)."""

    def __init__(self, specs: list[MemberSpec], *, tick_ms: int = 100, log_level: str = "info",
                 restart: bool = True, grace: float = 10.0, backoff_base: float = 0.5,
                 out: Echo | None = None, err: Echo | None = None) -> None:
        self.specs = specs
        self.restart = restart
        self.grace = grace
        self.backoff_base = backoff_base
        """The first restart delay in seconds; it doubles with each consecutive quick failure (<= 10 s)."""
        self.out: Echo = out or (lambda s: print(s, flush=True))
        self.err: Echo = err or (lambda s: print(s, file=sys.stderr, flush=True))
        self.children = [_Child(s, node_command(s, specs, tick_ms=tick_ms, log_level=log_level))
                         for s in specs]
        self.stopping = False

    # ------------------------------------------------------------------------------ lifecycle

    def _spawn(self, c: _Child) -> None:
        c.spec.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with c.spec.log_path.open("ab") as log:
            c.log_offset = log.tell()
            c.proc = subprocess.Popen(c.cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        c.started_at = time.monotonic()
        c.restart_at = None

    def start_all(self) -> None:
        """Start every child; raises :class:`DevClusterError` (starting none) if a port is taken."""
        busy = ports_in_use(self.specs)
        if busy:
            raise DevClusterError(f"address already in use: {', '.join(busy)} (is another cluster "
                                  "running? stop it or choose --base-port)")
        for c in self.children:
            self._spawn(c)

    def pids(self) -> dict[str, int]:
        return {c.spec.name: c.proc.pid for c in self.children if c.proc is not None}

    def alive(self) -> list[str]:
        return [c.spec.name for c in self.children if c.proc is not None and c.proc.poll() is None]

    def poll(self) -> None:
        """Notice children that exited (report, schedule a restart or give up) and start those whose
        restart is due. Does nothing once stopping."""
        if self.stopping:
            return
        now = time.monotonic()
        for c in self.children:
            if c.proc is not None:
                rc = c.proc.poll()
                if rc is None:
                    continue
                self._on_exit(c, rc, now)
            elif c.restart_at is not None and now >= c.restart_at:
                c.restarts += 1
                self._spawn(c)
                assert c.proc is not None
                self.out(f"{c.spec.name}: restarted (pid {c.proc.pid}, restart {c.restarts})")

    def _on_exit(self, c: _Child, rc: int, now: float) -> None:
        assert c.proc is not None
        pid, ran = c.proc.pid, now - c.started_at
        c.proc = None
        c.exits.append(rc)
        why = last_log_line(c.spec.log_path, c.log_offset)
        report = f"{c.spec.name} (pid {pid}) {describe_exit(rc)} after {ran:.1f} s"
        if why:
            report += f"; last log line: {why}"
        report += f" [log: {c.spec.log_path}]"
        if not self.restart:
            self.err(f"{report}; not restarting (restarts are off)")
            c.given_up = True
            return
        c.quick_failures = 1 if ran >= STABLE_AFTER else c.quick_failures + 1
        if c.quick_failures > MAX_QUICK_FAILURES:
            self.err(f"{report}; giving up after {MAX_QUICK_FAILURES} consecutive runs shorter than "
                     f"{STABLE_AFTER:.0f} s")
            c.given_up = True
            return
        delay = min(10.0, self.backoff_base * 2 ** (c.quick_failures - 1))
        c.restart_at = now + delay
        self.err(f"{report}; restarting in {delay:.1f} s")

    def all_given_up(self) -> bool:
        return all(c.given_up for c in self.children)

    def stop_all(self) -> None:
        """SIGTERM every running child, wait up to ``grace`` seconds in all, SIGKILL the rest."""
        self.stopping = True
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for c in running:
            assert c.proc is not None
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for c in running:
            assert c.proc is not None
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.err(f"{c.spec.name} (pid {c.proc.pid}) did not stop within {self.grace:.0f} s; "
                         "sending SIGKILL")
                c.proc.kill()
                c.proc.wait()
        for c in self.children:
            if c.proc is not None:
                c.proc.wait()  # reap the ones that had already exited
            c.proc = None

    # ------------------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, *, ready_timeout: float = 60.0, ready_file: Path | None = None,
            on_ready: Callable[[str, int], None] | None = None) -> int:
        """Start the cluster and supervise it until ``stop`` is set or every child is given up on;
        then stop it. Reports readiness (a leader elected) once, writing ``ready_file`` (the endpoints
        and a newline, atomically). Returns 0 on a requested stop, 1 if every child was given up on.
        Raises :class:`DevClusterError` if the cluster cannot be started."""
        eps = endpoints(self.specs)
        try:
            self.start_all()
            for name, pid in self.pids().items():
                spec = next(s for s in self.specs if s.name == name)
                self.out(f"{name}: pid {pid}, client {spec.client_addr}, peer {spec.peer_addr}, "
                         f"data {spec.data_dir}, log {spec.log_path}")
            ready = False
            ready_deadline = time.monotonic() + ready_timeout
            warned = False
            next_probe = 0.0
            while not stop.is_set():
                self.poll()
                if self.all_given_up():
                    self.err("every node has stopped; shutting down")
                    return 1
                now = time.monotonic()
                if not ready and now >= next_probe:
                    next_probe = now + 0.25
                    found = leader_of(self.specs)
                    if found is not None:
                        ready = True
                        self.out(f"ready: {found[0]} leads (term {found[1]}); endpoints {eps}")
                        if ready_file is not None:
                            tmp = ready_file.with_name(ready_file.name + ".tmp")
                            tmp.write_text(eps + "\n")
                            tmp.replace(ready_file)
                        if on_ready is not None:
                            on_ready(*found)
                    elif now >= ready_deadline and not warned:
                        warned = True
                        self.err(f"no leader after {ready_timeout:.0f} s; still supervising (see the logs "
                                 f"under {self.specs[0].log_path.parent})")
                stop.wait(POLL_INTERVAL)
            return 0
        finally:
            if any(c.proc is not None for c in self.children):
                self.out(f"stopping: SIGTERM to every node, SIGKILL after {self.grace:.0f} s")
                self.stop_all()
                self.out("stopped")
            else:
                self.stop_all()


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM,
                                                                     signal.SIGHUP)) -> Iterator[None]:
    """Within the block, the given signals set ``stop`` instead of their default action (main thread
    only); the previous handlers are restored afterwards."""
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old: dict[int, Any] = {}
    try:
        for s in signals:
            old[s] = signal.signal(s, handler)
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ================================================================================ the demo


def run_demo(endpoints_: str, *, timeout: float = 10.0, out: TextIO | None = None) -> None:
    """The short tour ``scripts/dev-cluster`` shows: clear ``demo/``, puts, a get, a prefix get, a
    compare-and-swap txn, and a watch that sees a change made after it was established. Raises
    :class:`DevClusterError` if a step does not behave as shown (e.g. the watch sees nothing within
    ``timeout`` seconds) and the client's typed errors if the cluster fails a call."""
    from coterie.client import Client, Compare, Op

    stream = out or sys.stdout

    def say(step: str, result: str) -> None:
        print(f"  {step:<44} {result}", file=stream, flush=True)

    print(f"demo against {endpoints_} (Python: coterie.client.Client)", file=stream, flush=True)
    with Client(endpoints_, timeout=timeout) as c:
        say("delete_prefix demo/", f"{c.delete_prefix('demo/')} deleted")
        r = c.put("demo/greeting", "hello")
        say("put demo/greeting = hello", f"revision {r.revision}")
        r = c.put("demo/color", "blue")
        say("put demo/color = blue", f"revision {r.revision}")
        kv = c.get("demo/greeting")
        if kv is None or kv.value != b"hello":
            raise DevClusterError(f"get demo/greeting returned {kv!r}, expected the value b'hello'")
        say("get demo/greeting", f"hello (mod revision {kv.mod_revision}, version {kv.version})")
        kvs = c.get_prefix("demo/")
        say("get_prefix demo/", ", ".join(f"{k.key.decode()}={k.value.decode()}" for k in kvs))
        ok, _ = c.txn(compare=[Compare.value("demo/color") == "blue"],
                      success=[Op.put("demo/color", "green")], failure=[Op.get("demo/color")])
        if not ok:
            raise DevClusterError("the txn's compare demo/color == blue failed right after putting blue")
        say("txn: if demo/color == blue, put green", "succeeded")
        w = c.watch_prefix("demo/", prev_kv=True)
        timer = threading.Timer(timeout, w.close)
        timer.start()
        try:
            say("watch_prefix demo/ (from now on)", "established")
            r = c.put("demo/greeting", "hello again")
            say("put demo/greeting = hello again", f"revision {r.revision}")
            ev = next(iter(w), None)
        finally:
            timer.cancel()
            w.close()
        if ev is None:
            raise DevClusterError(f"the watch saw no event within {timeout:.0f} s")
        prev = ev.prev_kv.value.decode() if ev.prev_kv is not None else "nothing"
        say("the watch saw", f"{ev.type} {ev.kv.key.decode()} = {ev.kv.value.decode()} at revision "
            f"{ev.revision} (it replaced {prev})")
