"""Leases, fenced writes, locks and elections of the client against three real ``coterie node``
processes (``tests.proc_cluster``): grant / keep-alive / expiry / revoke; lock mutual exclusion with
fenced increments, FIFO order and strictly increasing tokens; try_lock; lock timeout; release on a
client's crash; a holder paused past its TTL is fenced off; ``coterie lock`` terminates its command
when the lock is lost; elections. Every wait is bounded."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from coterie.client import (
    AsyncClient,
    Client,
    Fence,
    FenceRejected,
    LeaderInfo,
    LeaseLost,
    LeaseNotFound,
    Lock,
    LockTimeout,
)
from coterie.client.cli import EXIT_LOCK_LOST
from tests.proc_cluster import ProcCluster, cluster, poll

REPO = Path(__file__).resolve().parent.parent
MARGIN = 8.0
"""Seconds allowed beyond a TTL for an expiry to be applied (election time, apply lag, CI noise)."""


@pytest.fixture(scope="module")
def pc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    with cluster(tmp_path_factory.mktemp("locks")) as c:
        yield c


@pytest.fixture
def eps(pc: ProcCluster) -> str:
    return ",".join(pc.endpoints())


@pytest.fixture
def client(eps: str) -> Iterator[Client]:
    with Client(eps, timeout=10.0) as c:
        yield c


def lock_keys(c: Client, name: str) -> list[bytes]:
    return [kv.key for kv in c.get_prefix(f"coterie/locks/{name}/")]


def _queued(c: Client, name: str, n: int) -> bool | None:
    return True if len(lock_keys(c, name)) == n else None


# ================================================================================ leases


def test_lease_grant_ttl_list_and_revoke(client: Client) -> None:
    lease = client.grant_lease(30)
    assert lease.id > 0 and lease.ttl >= 30 and lease.alive
    assert lease.valid_until <= time.monotonic() + 30 * 0.99
    client.put("lease/a", "1", lease=lease)
    client.put("lease/b", "2", lease=lease.id)
    t = client.lease_ttl(lease, keys=True)
    assert t.exists and 0 < t.remaining <= 30 and t.ttl == lease.ttl
    assert sorted(t.keys) == [b"lease/a", b"lease/b"]
    assert lease.id in {x.id for x in client.leases()}
    assert client.revoke_lease(lease.id) == 2
    assert client.get("lease/a") is None and client.get("lease/b") is None
    assert not client.lease_ttl(lease.id).exists
    with pytest.raises(LeaseNotFound) as ei:
        client.put("lease/c", "3", lease=lease.id)
    assert ei.value.lease_id == lease.id
    with pytest.raises(LeaseNotFound):
        client.revoke_lease(lease.id)


def test_lease_expires_without_keepalive_and_is_reported_lost(client: Client) -> None:
    lease = client.grant_lease(1.0)
    client.put("lease/expiring", "x", lease=lease)
    assert lease.wait_lost(lease.ttl + 2)  # the client's own watchdog, at valid_until (ttl >= 1.0: minimum)
    assert not lease.alive
    poll("the key of an expired lease to go", lambda: True if client.get("lease/expiring") is None else None,
         lease.ttl + MARGIN)
    with pytest.raises(LeaseNotFound):
        client.revoke_lease(lease.id)


def test_kept_alive_lease_outlives_its_ttl_and_is_revoked_on_exit(client: Client) -> None:
    with client.lease(ttl=1.2) as lease:
        client.put("lease/kept", "x", lease=lease)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.0:
            assert lease.alive, lease._al.lost_reason
            time.sleep(0.1)
        assert lease.keepalives >= 5
        assert client.get("lease/kept") is not None
        assert time.monotonic() < lease.valid_until <= time.monotonic() + lease.ttl  # ttl: >= the minimum
    assert client.get("lease/kept") is None  # revoked on exit
    assert not lease.lost.is_set()  # a release is not a loss


def test_keepalive_of_an_existing_lease_and_ttl_zero_is_a_loss(client: Client) -> None:
    lease = client.grant_lease(1.5)
    kept = client.keep_alive(lease.id)
    time.sleep(2.5)
    assert kept.alive and client.lease_ttl(lease.id).exists
    client.revoke_lease(lease.id)  # from "outside" the keeping handle
    assert kept.wait_lost(kept.ttl + 2)
    kept.stop_keepalive()


@pytest.mark.asyncio
async def test_async_lease_body_is_cancelled_when_revoked_from_outside(eps: str) -> None:
    async with AsyncClient(eps) as c, AsyncClient(eps) as other:
        cancelled = False
        t0 = time.monotonic()
        with pytest.raises(LeaseLost):
            async with c.lease(ttl=1.5) as lease:
                await other.revoke_lease(lease.id)
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    cancelled = True
                    raise
        assert cancelled and time.monotonic() - t0 < 1.5 + 2


# ================================================================================ locks


def test_lock_mutual_exclusion_fenced_counter_8_contenders(eps: str, client: Client) -> None:
    name, counter = "test/counter", "locks/counter"
    client.put(counter, "0")
    rounds, workers = 3, 8
    order: list[tuple[int, int]] = []  # (token, worker) in acquisition order
    inside = 0
    overlap: list[str] = []
    mu = threading.Lock()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        nonlocal inside
        try:
            with Client(eps, timeout=10.0) as c:
                for _ in range(rounds):
                    with c.lock(name, ttl=5, timeout=120) as lk:
                        with mu:
                            inside += 1
                            if inside > 1:
                                overlap.append(f"worker {i} entered while {inside - 1} inside")
                            order.append((lk.token, i))
                        kv = c.get(counter)
                        assert kv is not None
                        c.put(counter, str(int(kv.value) + 1), fence=lk)
                        time.sleep(0.01)
                        with mu:
                            inside -= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert not overlap, overlap
    kv = client.get(counter)
    assert kv is not None and int(kv.value) == rounds * workers  # no lost update
    tokens = [t for t, _ in order]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)  # strictly increasing
    assert lock_keys(client, name) == []


def test_lock_is_fifo(eps: str, client: Client) -> None:
    name = "test/fifo"
    first = client.lock(name, ttl=5).acquire()
    got: list[int] = []
    mu = threading.Lock()
    clients = [Client(eps) for _ in range(4)]
    threads: list[threading.Thread] = []
    try:
        def contend(i: int) -> None:
            with clients[i].lock(name, ttl=5, timeout=60), mu:
                got.append(i)

        for i in range(4):  # each one queues only after the previous one's key is in
            threads.append(threading.Thread(target=contend, args=(i,)))
            threads[-1].start()
            poll(f"contender {i} to queue", functools.partial(_queued, client, name, i + 2), 10)
        first.release()
        for t in threads:
            t.join(60)
        assert got == [0, 1, 2, 3]
    finally:
        for c in clients:
            c.close()


def test_try_lock_and_timeout(eps: str, client: Client) -> None:
    name = "test/try"
    with Client(eps) as other:
        held = client.try_lock(name, ttl=5)
        assert isinstance(held, Lock) and held.alive and held.token > 0
        assert other.try_lock(name, ttl=5) is None
        assert lock_keys(client, name) == [held.key]  # the failed try left nothing behind
        t0 = time.monotonic()
        with pytest.raises(LockTimeout):
            other.lock(name, ttl=5, timeout=1.0).acquire()
        assert time.monotonic() - t0 < 1.0 + 5
        assert lock_keys(client, name) == [held.key]  # the timed-out contender was removed
        with pytest.raises(FenceRejected) as ei:  # a made-up token
            other.put("locks/try", "x", fence=Fence(f"coterie/locks/{name}/".encode(), held.token + 1000))
        assert (ei.value.token, ei.value.holder_token) == (held.token + 1000, held.token)
        other.put("locks/try", "x", fence=held.fence)  # anyone with the holder's token passes
        held.release()
        again = other.try_lock(name, ttl=5)
        assert again is not None and again.token > held.token
        again.release()


def _holder(eps: str, name: str, ttl: float) -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen([sys.executable, "-m", "tests.lock_holder", eps, name, str(ttl)], cwd=REPO,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = _readline(p.stdout, 30)
    assert line.startswith("held "), line
    return p, int(line.split()[1])


def _readline(f: IO[str], timeout: float) -> str:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(f.readline()), daemon=True)
    t.start()
    t.join(timeout)
    assert out, f"no line within {timeout} s"
    return out[0].strip()


def test_lock_is_released_when_its_holder_is_killed(eps: str, client: Client) -> None:
    name, ttl = "test/crash", 2.0
    p, token = _holder(eps, name, ttl)
    try:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        t0 = time.monotonic()
        with client.lock(name, ttl=5, timeout=ttl + MARGIN) as lk:
            assert lk.token > token
        assert time.monotonic() - t0 < ttl + MARGIN
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_paused_holder_is_fenced_off_after_another_takes_the_lock(eps: str, client: Client) -> None:
    name, ttl = "test/paused", 2.0
    p, token = _holder(eps, name, ttl)
    assert p.stdin is not None and p.stdout is not None
    try:
        p.stdin.write("write locks/paused old-before\n")
        p.stdin.flush()
        assert _readline(p.stdout, 15).startswith("ok ")
        p.send_signal(signal.SIGSTOP)
        with client.lock(name, ttl=5, timeout=ttl + MARGIN) as lk:
            assert lk.token > token
            client.put("locks/paused", "new", fence=lk)
            p.send_signal(signal.SIGCONT)
            for i in range(3):
                p.stdin.write(f"write locks/paused old-after-{i}\n")
                p.stdin.flush()
                ans = _readline(p.stdout, 30)
                assert ans == f"rejected {token} {lk.token}", ans
            p.stdin.write("alive\n")
            p.stdin.flush()
            assert _readline(p.stdout, 15) == "alive 0 lost 1"
            kv = client.get("locks/paused")
            assert kv is not None and kv.value == b"new"
    finally:
        with_cont = p.poll() is None
        if with_cont:
            p.send_signal(signal.SIGCONT)
            p.kill()
        p.wait(10)


def test_cli_lock_terminates_the_command_when_the_lock_is_lost(eps: str, client: Client) -> None:
    name = "test/cli"
    env = {**os.environ, "COTERIE_ENDPOINTS": eps}
    script = 'echo "token=$COTERIE_LOCK_TOKEN"; exec sleep 30'
    p = subprocess.Popen([sys.executable, "-m", "coterie.client.cli", "lock", name, "--ttl", "3",
                          "--grace", "2", "--", "sh", "-c", script],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = _readline(p.stdout, 30)
        assert line.startswith("token=") and int(line.split("=")[1]) > 0
        keys = poll("the CLI's lock key", lambda: lock_keys(client, name) or None, 10)
        lid = int(keys[0].rsplit(b"/", 1)[1], 16)
        t0 = time.monotonic()
        client.revoke_lease(lid)
        rc = p.wait(3 + 2 + 10)
        assert rc == EXIT_LOCK_LOST
        assert time.monotonic() - t0 < 15
        assert p.stderr is not None and "lost" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_cli_lock_runs_the_command_and_exits_with_its_status(eps: str) -> None:
    env = {**os.environ, "COTERIE_ENDPOINTS": eps}
    r = subprocess.run([sys.executable, "-m", "coterie.client.cli", "lock", "test/cli-ok", "--",
                        "sh", "-c", 'test -n "$COTERIE_LOCK_KEY"; exit 7'],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 7, r.stderr


# ================================================================================ elections


def test_election_campaign_observe_proclaim_resign(eps: str, client: Client) -> None:
    e1 = client.election("test/sched")
    assert e1.leader() is None
    seen: list[LeaderInfo] = []
    with Client(eps) as c2, Client(eps) as c3:
        obs = c3.election("test/sched").observe()

        def observe() -> None:
            for ld in obs:
                seen.append(ld)

        ot = threading.Thread(target=observe)
        ot.start()
        try:
            ld1 = e1.campaign("a", ttl=5)
            assert ld1.alive and ld1.value == b"a"
            cur = e1.leader()
            assert cur is not None and (cur.value, cur.token) == (b"a", ld1.token)
            e2 = c2.election("test/sched")
            won: list[object] = []
            t2 = threading.Thread(target=lambda: won.append(e2.campaign("b", ttl=5)))
            t2.start()
            time.sleep(0.5)
            assert not won  # b waits behind a
            e1.proclaim("a2")
            e1.resign()
            t2.join(20)
            assert won
            cur = e1.leader()
            assert cur is not None and cur.value == b"b" and cur.token > ld1.token
            with pytest.raises(FenceRejected):
                client.put("elect/x", "stale", fence=ld1)
            assert e2.leadership is not None
            c2.put("elect/x", "fresh", fence=e2.leadership)
            poll("the observer to see b", lambda: True if seen and seen[-1].value == b"b" else None, 10)
            assert [s.value for s in seen] == [b"a", b"a2", b"b"]
            e2.resign()
        finally:
            obs.close()
            ot.join(10)


def _cli(eps: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coterie.client.cli", "--endpoints", eps, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_lease_grant_ttl_list_revoke(eps: str, client: Client) -> None:
    r = _cli(eps, "-o", "json", "lease", "grant", "30")
    assert r.returncode == 0, r.stderr
    g = json.loads(r.stdout)
    lid = g["id"]
    assert g["ttl"] >= 30 and g["id_hex"] == f"{lid:016x}"
    client.put("cli-lease/k", "v", lease=lid)
    r = _cli(eps, "-o", "json", "lease", "ttl", f"0x{lid:x}", "--keys")
    t = json.loads(r.stdout)
    assert r.returncode == 0 and t["exists"] and 0 < t["remaining"] <= 30 and t["keys"] == ["cli-lease/k"]
    r = _cli(eps, "-o", "json", "lease", "list")
    assert r.returncode == 0 and lid in {x["id"] for x in json.loads(r.stdout)}
    r = _cli(eps, "lease", "revoke", str(lid))
    assert r.returncode == 0 and "1 keys deleted" in r.stdout, r.stderr
    r = _cli(eps, "lease", "ttl", str(lid))
    assert r.returncode == 1 and "not found" in r.stderr
    r = _cli(eps, "lease", "revoke", str(lid))
    assert r.returncode == 1 and "not found" in r.stderr
    assert client.get("cli-lease/k") is None


def test_cli_elect_and_observe(eps: str, client: Client) -> None:
    env = {**os.environ, "COTERIE_ENDPOINTS": eps}
    cli = [sys.executable, "-m", "coterie.client.cli"]
    obs = subprocess.Popen([*cli, "elect", "test/cli-elect", "--observe"],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cand = subprocess.Popen([*cli, "elect", "test/cli-elect", "me"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cand.stdout is not None and obs.stdout is not None
        assert _readline(cand.stdout, 30).startswith("elected: me (token ")
        assert _readline(obs.stdout, 30).startswith("leader: me (token ")
        cand.send_signal(signal.SIGINT)
        assert cand.wait(15) == 0
        assert client.election("test/cli-elect").leader() is None  # resigned
    finally:
        for p in (obs, cand):
            if p.poll() is None:
                p.kill()
            p.wait(10)


def test_cli_status_counts_leases_and_locks(eps: str, client: Client) -> None:
    with client.lock("test/status", ttl=30) as lk:
        def counted() -> list[dict[str, object]] | None:
            r = _cli(eps, "status", "-o", "json")
            rows = json.loads(r.stdout) if r.returncode == 0 else []
            ok = rows and all(isinstance(x["locks"], int) and x["locks"] >= 1 and isinstance(x["leases"], int)
                              and x["leases"] >= 1 for x in rows)
            return rows if ok else None

        poll("status to count the held lock", counted, 20, interval=0.5)
        assert lk.alive
        r = _cli(eps, "status")
        assert r.returncode == 0 and "LEASES" in r.stdout.splitlines()[0] and "LOCKS" in r.stdout


def test_a_locks_lease_handle_is_one_and_reports_the_loss(client: Client) -> None:
    lk = client.lock("test/lease-view", ttl=5).acquire()
    try:
        view = lk.lease
        assert view is not None and view is lk.lease and view.id
        client.revoke_lease(view.id)  # from outside: the lock is lost
        assert view.lost.wait(15) and not view.alive
    finally:
        lk.release()
