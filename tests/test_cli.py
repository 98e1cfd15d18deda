"""The ``coterie`` CLI against a real cluster started by ``coterie cluster up``, the supervisor itself
(a killed node is reported and restarted; Ctrl-C / SIGTERM stop every node; a taken port fails
cleanly), and ``scripts/dev-cluster --demo-only``.

Every supervisor runs in its own session, so cleanup can SIGKILL its whole process group (nodes
included) whatever happened; every wait is bounded and polls, nothing asserts a timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner, Result

from coterie.client.cli import DEFAULT_ENDPOINTS, main
from coterie.node import devcluster as dc

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "coterie.client.cli"]


# ================================================================================ helpers


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(nodes: int) -> int:
    """A base port B with B..B+nodes-1 and B+100..B+100+nodes-1 free a moment ago (below the
    ephemeral range, so outgoing connections do not take them meanwhile)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 32000)
        ports = [*range(base, base + nodes), *range(base + 100, base + 100 + nodes)]
        if all(_bindable(p) for p in ports):
            return base
    raise AssertionError("no free block of ports")


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


class ClusterUp:
    """``coterie cluster up`` as a child process in its own session, with its output in files."""

    def __init__(self, root: Path, *, nodes: int = 3, extra: tuple[str, ...] = ()) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.nodes = nodes
        self.base = free_port_block(nodes)
        self.data = root / "data"
        self.ready = root / "ready"
        self.out_path, self.err_path = root / "up.out", root / "up.err"
        self.endpoints = ",".join(f"127.0.0.1:{self.base + i}" for i in range(nodes))
        cmd = [*CLI, "cluster", "up", "--nodes", str(nodes), "--base-port", str(self.base),
               "--data-dir", str(self.data), "--tick-ms", "20", "--log-level", "warning",
               "--ready-file", str(self.ready), *extra]
        self._files: list[IO[bytes]] = [self.out_path.open("wb"), self.err_path.open("wb")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._files[0],
                                     stderr=self._files[1], start_new_session=True)
        self.pgid = self.proc.pid

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"cluster up exited with {self.proc.returncode}:\n{self.out()}\n"
                                     f"{self.err()}")
            return self.ready.exists() and self.ready.read_text().strip() != ""
        wait_for(ready, timeout, "a leader (the ready file)")

    def pids(self) -> dict[str, int]:
        """Each node's latest pid, from the supervisor's output."""
        out: dict[str, int] = {}
        for m in re.finditer(r"^(n\d+): (?:pid |restarted \(pid )(\d+)", self.out(), re.M):
            out[m.group(1)] = int(m.group(2))
        return out

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(60)
        finally:
            kill_group(self.pgid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            for f in self._files:
                f.close()


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def status_json(endpoints: str) -> tuple[int, list[dict[str, Any]]]:
    r = cli("--endpoints", endpoints, "status", "-o", "json")
    return r.exit_code, json.loads(r.stdout)


# ================================================================================ no cluster needed


def test_plan_defaults_match_the_cli_default_endpoints(tmp_path: Path) -> None:
    specs = dc.plan(3, tmp_path)
    assert dc.endpoints(specs) == DEFAULT_ENDPOINTS
    assert [s.peer_addr for s in specs] == ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
    assert dc.initial_cluster(specs) == "n1=127.0.0.1:7101,n2=127.0.0.1:7102,n3=127.0.0.1:7103"
    assert [s.data_dir for s in specs] == [tmp_path / "n1", tmp_path / "n2", tmp_path / "n3"]
    with pytest.raises(dc.DevClusterError, match="overlap"):
        dc.plan(3, tmp_path, base_port=7001, peer_base_port=7002)
    with pytest.raises(dc.DevClusterError, match="out of range"):
        dc.plan(3, tmp_path, base_port=65534)
    with pytest.raises(dc.DevClusterError, match="between 1 and"):
        dc.plan(0, tmp_path)


def test_exit_descriptions_and_log_tail(tmp_path: Path) -> None:
    assert dc.describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert dc.describe_exit(3) == "exited with code 3"
    log = tmp_path / "n1.log"
    log.write_text('{"ts": 1, "level": "INFO", "msg": "old run"}\n')
    offset = log.stat().st_size
    assert dc.last_log_line(log, offset) == ""
    with log.open("a") as f:
        f.write('{"ts": 2, "level": "ERROR", "msg": "boom", "exc": "Traceback...\\nOSError: disk full"}\n\n')
    assert dc.last_log_line(log, offset) == "boom: OSError: disk full"
    with log.open("a") as f:
        f.write("Error: the data directory belongs to another cluster\n")
    assert dc.last_log_line(log) == "Error: the data directory belongs to another cluster"
    assert dc.last_log_line(tmp_path / "missing.log") == ""


def test_bad_cluster_up_options_are_usage_errors(tmp_path: Path) -> None:
    r = cli("cluster", "up", "--nodes", "0", "--data-dir", str(tmp_path))
    assert r.exit_code == 2
    r = cli("cluster", "up", "--base-port", "7001", "--peer-base-port", "7002", "--data-dir", str(tmp_path))
    assert r.exit_code == 2 and "overlap" in r.stderr


def test_unreachable_cluster_is_one_error_line_and_exit_1() -> None:
    dead = f"127.0.0.1:{free_port_block(1)}"
    r = cli("--endpoints", dead, "--timeout", "1", "get", "k")
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "did not complete" in lines[0], r.stderr
    r = cli("--endpoints", dead, "status", "-o", "json")
    assert r.exit_code == 1
    rows = json.loads(r.stdout)
    assert [row["client_addr"] for row in rows] == [dead] and rows[0]["error"]
    assert r.stderr.strip() == f"error: no member answered ({dead})"
    r = cli("--endpoints", dead, "status")
    assert r.exit_code == 1 and "unreachable" in r.stdout
    # A real process: the error line on stderr, the traceback only with --debug.
    p = subprocess.run([*CLI, "--endpoints", dead, "--timeout", "1", "put", "k", "v"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "Traceback" not in p.stderr, p.stderr
    p = subprocess.run([*CLI, "--debug", "--endpoints", dead, "--timeout", "1", "put", "k", "v"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" in p.stderr and "DeadlineExceeded" in p.stderr, p.stderr


def test_port_in_use_fails_before_starting_anything(tmp_path: Path) -> None:
    base = free_port_block(3)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 1))
        blocker.listen()
        p = subprocess.run([*CLI, "cluster", "up", "--base-port", str(base),
                            "--data-dir", str(tmp_path / "d"), "--ready-file", str(tmp_path / "ready")],
                           capture_output=True, text=True, timeout=60, start_new_session=True)
    assert p.returncode == 1
    assert f"error: address already in use: 127.0.0.1:{base + 1}" in p.stderr, p.stderr
    assert "pid" not in p.stdout and not (tmp_path / "ready").exists()


# ================================================================================ one shared cluster


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterUp]:
    c = ClusterUp(tmp_path_factory.mktemp("cli"))
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()


def test_cluster_up_prints_endpoints_and_members(up: ClusterUp) -> None:
    out = up.out()
    assert f"endpoints {up.endpoints}" in out
    assert f"export COTERIE_ENDPOINTS={up.endpoints}" in out
    assert re.search(r"^ready: n[123] leads \(term \d+\)", out, re.M), out
    assert sorted(up.pids()) == ["n1", "n2", "n3"]
    assert up.ready.read_text() == up.endpoints + "\n"
    assert up.proc.poll() is None and up.err() == ""


def test_status_table_and_json(up: ClusterUp) -> None:
    got: list[list[dict[str, Any]]] = []

    def answered() -> bool:  # an election may be under way now and then: take an answer with a leader
        rc, rows = status_json(up.endpoints)
        if rc == 0:
            got.append(rows)
        return rc == 0

    wait_for(answered, 60, "status to find a leader")
    rows = got[-1]
    assert [r["name"] for r in rows] == ["n1", "n2", "n3"]
    for i, r in enumerate(rows):
        assert r["client_addr"] == f"127.0.0.1:{up.base + i}"
        assert r["peer_addr"] == f"127.0.0.1:{up.base + 100 + i}"
        assert r["error"] is None and r["term"] >= 1 and r["applied"] <= r["commit"] <= r["last_index"]
        assert r["log_entries"] == r["last_index"] - r["first_index"] + 1
    leaders = [r for r in rows if r["role"] == "leader"]
    if leaders:  # an election may be under way at this very moment; then followers name no leader yet
        assert len(leaders) == 1 and leaders[0]["progress"] is not None
    res = CliRunner(env={"COTERIE_ENDPOINTS": up.endpoints}).invoke(main, ["status"])
    if res.exit_code == 0:
        lines = res.stdout.splitlines()
        assert lines[0].split() == ["NAME", "ID", "CLIENT", "ADDR", "PEER", "ADDR", "ROLE", "TERM", "LEADER",
                                    "COMMIT", "APPLIED", "LOG", "LEASES", "LOCKS", "LAST", "CONTACT"]
        assert [ln.split()[0] for ln in lines[1:]] == ["n1", "n2", "n3"]
        assert sum(" leader " in ln for ln in lines[1:]) <= 1
    else:
        assert res.stderr.startswith("error: no leader elected")


def test_status_with_one_endpoint_dead(up: ClusterUp) -> None:
    dead = f"127.0.0.1:{free_port_block(1)}"
    eps = f"127.0.0.1:{up.base},{dead}"
    r = wait_for(lambda: (lambda r: r if r.exit_code == 0 else None)(
        cli("--endpoints", eps, "status", "-o", "json")), 60, "status through n1")
    rows = {row["client_addr"] or row["name"]: row for row in json.loads(r.stdout)}
    assert rows[dead]["error"] and rows[f"127.0.0.1:{up.base}"]["error"] is None
    names = {row["name"] for row in rows.values()}
    assert {"n1", "n2", "n3"} <= names, rows  # the others come from n1's member list


def test_put_get_del(up: ClusterUp) -> None:
    ep = ["--endpoints", up.endpoints]
    r = cli(*ep, "put", "cli/a", "1")
    assert r.exit_code == 0 and re.fullmatch(r"OK revision \d+\n", r.stdout), r.output
    rev = int(r.stdout.split()[-1])
    r = cli(*ep, "put", "cli/b", "two words", "-o", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["revision"] == rev + 1
    r = cli(*ep, "-o", "json", "get", "cli/a")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == [{"key": "cli/a", "value": "1", "create_revision": rev,
                                     "mod_revision": rev, "version": 1, "lease": 0}]
    r = cli(*ep, "get", "cli/", "--prefix")
    assert r.exit_code == 0
    assert [ln.split()[:2] for ln in r.stdout.splitlines()] == [
        ["KEY", "VALUE"], ["cli/a", "1"], ["cli/b", "two"]]
    r = cli(*ep, "get", "cli/none")
    assert r.exit_code == 0 and r.stdout == ""
    r = cli(*ep, "del", "cli/", "--prefix", "-o", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"deleted": 2}
    r = cli(*ep, "del", "cli/a")
    assert r.exit_code == 0 and r.stdout == "0\n"


def test_watch_replays_history_and_stops_after_max_events(up: ClusterUp) -> None:
    ep = ["--endpoints", up.endpoints]
    revs = []
    for i in range(3):
        r = cli(*ep, "put", f"w1/k{i}", f"v{i}", "-o", "json")
        assert r.exit_code == 0
        revs.append(json.loads(r.stdout)["revision"])
    assert cli(*ep, "del", "w1/k0").exit_code == 0
    r = cli(*ep, "watch", "w1/", "--prefix", "--rev", str(revs[0]), "--max-events", "4", "-o", "json",
            "--prev-kv", "--duration", "60")
    assert r.exit_code == 0, r.output
    events = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(e["type"], e["kv"]["key"]) for e in events] == [
        ("PUT", "w1/k0"), ("PUT", "w1/k1"), ("PUT", "w1/k2"), ("DELETE", "w1/k0")]
    assert [e["revision"] for e in events[:3]] == revs and events[3]["revision"] > revs[2]
    assert events[3]["prev_kv"]["value"] == "v0"
    r = cli(*ep, "watch", "w1/k1", "--rev", str(revs[0]), "--max-events", "1", "--duration", "60")
    assert r.exit_code == 0 and r.stdout == f"{revs[1]} PUT w1/k1 v1\n", r.output


def test_watch_duration_ends_a_quiet_watch(up: ClusterUp) -> None:
    r = cli("--endpoints", up.endpoints, "watch", "quiet/", "--prefix", "--duration", "1")
    assert r.exit_code == 0 and r.stdout == "", r.output


def test_live_watch_process_sees_changes_and_stops_on_ctrl_c(up: ClusterUp) -> None:
    ep = ["--endpoints", up.endpoints]
    p = subprocess.Popen([*CLI, *ep, "-o", "json", "watch", "w2/x", "--duration", "120"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    stdout = p.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # The watch starts "from now", established at some moment we do not know: put until it reports one.
        i = 0
        deadline = time.monotonic() + 60
        while not lines:
            assert time.monotonic() < deadline, "the watch reported no event"
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
            i += 1
            assert cli(*ep, "put", "w2/x", f"v{i}").exit_code == 0
            time.sleep(0.3)
        assert cli(*ep, "del", "w2/x").exit_code == 0
        wait_for(lambda: any('"DELETE"' in ln for ln in lines), 60, "the delete event")
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert p.wait(30) == 0
    finally:
        kill_group(p.pid)
        p.wait(10)
    reader.join(10)
    events = [json.loads(ln) for ln in lines]
    assert events[-1]["type"] == "DELETE" and events[-1]["kv"]["key"] == "w2/x"
    assert all(e["type"] == "PUT" and e["kv"]["value"].startswith("v") for e in events[:-1])
    revs = [e["revision"] for e in events]
    assert revs == sorted(set(revs)), "events out of order or duplicated"
    vals = [int(e["kv"]["value"][1:]) for e in events[:-1]]
    assert vals == list(range(vals[0], i + 1)), "a put was missed"


def test_cluster_demo(up: ClusterUp) -> None:
    r = cli("--endpoints", up.endpoints, "cluster", "demo")
    assert r.exit_code == 0, r.output
    assert "get demo/greeting" in r.stdout and "txn: if demo/color == blue, put green" in r.stdout
    assert re.search(r"the watch saw +PUT demo/greeting = hello again at revision \d+ \(it replaced hello\)",
                     r.stdout), r.stdout
    r = cli("--endpoints", up.endpoints, "get", "demo/", "--prefix", "-o", "json")
    assert {kv["key"]: kv["value"] for kv in json.loads(r.stdout)} == {
        "demo/color": "green", "demo/greeting": "hello again"}


def test_watch_below_compaction_is_one_error_line(up: ClusterUp) -> None:
    ep = ["--endpoints", up.endpoints]
    r = cli(*ep, "put", "w3/k", "v", "-o", "json")
    rev = json.loads(r.stdout)["revision"]
    r = cli(*ep, "compact", str(rev), "-o", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["compacted"] == rev
    r = cli(*ep, "watch", "w3/k", "--rev", "1", "--duration", "30")
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "compacted" in lines[0], r.stderr
    r = cli("--debug", *ep, "watch", "w3/k", "--rev", "1", "--duration", "30")
    assert r.exit_code == 1 and type(r.exception).__name__ == "Compacted"


def test_killed_node_is_reported_restarted_and_ctrl_c_stops_all(up: ClusterUp) -> None:
    """Runs last on the shared cluster: it ends it."""
    old = up.pids()["n2"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: f"n2 (pid {old}) killed by SIGKILL" in up.err(), 60, "the death report")
    assert "restarting in" in up.err()
    wait_for(lambda: up.pids()["n2"] != old, 60, "the restart")
    wait_for(lambda: (lambda rc_rows: rc_rows[0] == 0 and all(r["error"] is None for r in rc_rows[1]))(
        status_json(up.endpoints)), 90, "every member answering status with a leader")
    pids = up.pids()
    os.killpg(up.pgid, signal.SIGINT)  # a terminal's Ctrl-C reaches the supervisor and its nodes
    assert up.proc.wait(60) == 0, up.err()
    assert up.out().rstrip().endswith("stopped")
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert group_gone(up.pgid)


# ================================================================================ more clusters


def test_no_restart_reports_and_exits_once_every_node_died(tmp_path: Path) -> None:
    c = ClusterUp(tmp_path, nodes=1, extra=("--no-restart",))
    try:
        c.wait_ready()
        pid = c.pids()["n1"]
        os.kill(pid, signal.SIGKILL)
        assert c.proc.wait(60) == 1
        err = c.err()
        assert f"n1 (pid {pid}) killed by SIGKILL" in err and "not restarting" in err, err
        assert "every node has stopped" in err
    finally:
        c.close()


def test_sigterm_stops_every_node(tmp_path: Path) -> None:
    c = ClusterUp(tmp_path, nodes=1)
    try:
        c.wait_ready()
        pid = c.pids()["n1"]
        c.proc.send_signal(signal.SIGTERM)
        assert c.proc.wait(60) == 0
        assert "stopping: SIGTERM to every node" in c.out() and c.out().rstrip().endswith("stopped")
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        c.close()


def test_dev_cluster_script_demo_only(tmp_path: Path) -> None:
    base = free_port_block(3)
    eps = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
    p = subprocess.Popen([str(REPO / "scripts" / "dev-cluster"), "--demo-only", "--",
                          "--base-port", str(base), "--data-dir", str(tmp_path / "data"), "--tick-ms", "20"],
                         cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=600)
    finally:
        kill_group(p.pid)
        p.wait(10)
    assert p.returncode == 0, out
    assert "ready: " in out and f"endpoints {eps}" in out
    assert re.search(r"the watch saw +PUT demo/greeting = hello again", out), out
    table = out[out.index("== coterie status"):]
    assert re.search(rf"^n1 .* 127\.0\.0\.1:{base} .* (leader|follower) ", table, re.M), table
    assert "leader" in table
    assert out.rstrip().endswith("stopped"), out
    assert group_gone(p.pid), "the script left processes behind"
    assert (tmp_path / "data" / "n1.log").exists()


def test_dev_cluster_script_runs_in_the_foreground_until_ctrl_c(tmp_path: Path) -> None:
    """On a terminal the script keeps the cluster up after the demo; Ctrl-C stops every process."""
    import pty

    base = free_port_block(3)
    eps = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
    script = str(REPO / "scripts" / "dev-cluster")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        try:
            os.execv(script, [script, "--", "--base-port", str(base), "--data-dir", str(tmp_path / "data"),
                              "--tick-ms", "20"])
        finally:
            os._exit(127)
    buf = bytearray()

    def read_until(needle: bytes | None, timeout: float) -> bool:
        """Read the terminal until ``needle`` shows up (None: until it closes) or ``timeout``."""
        end = time.monotonic() + timeout
        while (needle is None or needle not in buf) and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: every process holding the terminal is gone
                    return needle is None
                if not data:
                    return needle is None
                buf.extend(data)
        return needle is not None and needle in buf

    status = None
    try:
        assert read_until(b"Ctrl-C stops it", 600), buf.decode(errors="replace")
        # The demo is over and the cluster keeps serving.
        wait_for(lambda: status_json(eps)[0] == 0, 60, "the cluster to answer after the demo")
        r = cli("--endpoints", eps, "get", "demo/greeting", "-o", "json")
        assert json.loads(r.stdout)[0]["value"] == "hello again"
        os.write(fd, b"\x03")  # Ctrl-C on the terminal
        read_until(None, 120)
        end = time.monotonic() + 60
        while status is None and time.monotonic() < end:
            done, st = os.waitpid(pid, os.WNOHANG)
            status = os.waitstatus_to_exitcode(st) if done else None
            time.sleep(0.1)
    finally:
        kill_group(pid)
        if status is None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        os.close(fd)
    text = buf.decode(errors="replace")
    assert status == 0, text
    assert "stopping: SIGTERM to every node" in text and text.rstrip().endswith("stopped"), text
    assert group_gone(pid), "processes left behind after Ctrl-C"


# ================================================================================ the supervisor alone


def fake_supervisor(tmp_path: Path, code: str, **kw: Any) -> tuple[dc.Supervisor, list[str], list[str]]:
    """A one-member supervisor whose child runs ``python -c code`` instead of a node."""
    specs = dc.plan(1, tmp_path, base_port=free_port_block(1))
    out: list[str] = []
    err: list[str] = []
    sup = dc.Supervisor(specs, out=out.append, err=err.append, **kw)
    for c in sup.children:
        c.cmd = [sys.executable, "-c", code]
    return sup, out, err


def test_supervisor_reports_each_death_and_gives_up_on_a_node_that_keeps_failing(tmp_path: Path) -> None:
    code = "import sys; print('Error: boom', file=sys.stderr); sys.exit(3)"
    sup, out, err = fake_supervisor(tmp_path, code, backoff_base=0.01)
    stop = threading.Event()
    guard = threading.Timer(120, stop.set)
    guard.start()
    try:
        rc = sup.run(stop, ready_timeout=600)
    finally:
        guard.cancel()
    assert not stop.is_set(), "the supervisor did not give up by itself"
    assert rc == 1
    reports = [e for e in err if e.startswith("n1 (pid ")]
    assert len(reports) == dc.MAX_QUICK_FAILURES + 1, err
    assert all("exited with code 3" in e and "last log line: Error: boom [log:" in e for e in reports), err
    assert all("restarting in" in e for e in reports[:-1]) and "giving up" in reports[-1]
    assert err[-1] == "every node has stopped; shutting down"
    assert sum(o.startswith("n1: restarted (pid ") for o in out) == dc.MAX_QUICK_FAILURES


def test_stop_sigkills_a_node_that_ignores_sigterm(tmp_path: Path) -> None:
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(300)")
    sup, _, err = fake_supervisor(tmp_path, code, grace=1.0)
    sup.start_all()
    proc = sup.children[0].proc
    assert proc is not None
    try:
        wait_for(lambda: "up" in sup.specs[0].log_path.read_text(), 60, "the child to ignore SIGTERM")
        sup.stop_all()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert err == [f"n1 (pid {proc.pid}) did not stop within 1 s; sending SIGKILL"]
    assert sup.children[0].proc is None
