"""Observability against real ``coterie node`` processes: Prometheus metrics (``--metrics-addr``),
the standard gRPC health service on the client port, ``coterie endpoint status|health`` and
``coterie leader transfer``. Plus the hand-written health messages of :mod:`coterie.client._health`.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from coterie.client import Client
from coterie.client import _health as client_health
from coterie.v1 import cluster_pb2, kv_pb2
from tests.proc_cluster import NAMES, ProcCluster, cluster, free_ports, poll

COTERIE = [sys.executable, "-m", "coterie.client.cli"]


def run(*args: str, endpoints: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COTERIE, "--endpoints", endpoints, "--timeout", "10", *args],
                          capture_output=True, text=True, timeout=timeout)


def scrape(addr: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``http://addr/metrics``: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def health_status(addr: str, service: str = "") -> int | None:
    """The serving status from the official stub, or None if the call fails."""
    try:
        with grpc.insecure_channel(addr) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service),
                                                        timeout=2)
            return int(resp.status)
    except grpc.RpcError:
        return None


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _serving(addr: str) -> bool | None:
    return True if health_status(addr) == SERVING else None


# ------------------------------------------------------------------------------------------ metrics


def test_metrics_from_a_real_cluster(tmp_path: Path) -> None:
    ports = free_ports(3)
    maddr = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(NAMES)}
    extra = {n: ["--metrics-addr", maddr[n]] for n in NAMES}
    with cluster(tmp_path / "c", extra=extra) as c:
        lead = c.quiet()
        leader = next(n for n in NAMES if c.ids[n] == lead.member_id)
        before = {n: scrape(maddr[n]) for n in NAMES}
        for n in NAMES:
            m = before[n]
            is_leader = n == leader
            assert value(m, "coterie_server_is_leader") == (1 if is_leader else 0)
            assert value(m, "coterie_raft_role", role="leader") == (1 if is_leader else 0)
            assert value(m, "coterie_raft_role", role="follower") == (0 if is_leader else 1)
            assert value(m, "coterie_server_has_leader") == 1
            assert value(m, "coterie_server_leader_id") == lead.member_id
            assert value(m, "coterie_raft_term") == lead.term
            assert value(m, "coterie_server_leader_changes_seen_total") >= 1
            assert value(m, "coterie_raft_applied_index") <= lead.applied_index
            assert value(m, "coterie_raft_commit_index") >= value(m, "coterie_raft_applied_index")
            assert value(m, "coterie_leases") == 0 and value(m, "coterie_locks") == 0
        # the leader applied everything it had committed when it went quiet
        assert value(before[leader], "coterie_raft_applied_index") == lead.applied_index

        puts = 25
        with Client(",".join(c.endpoints()), timeout=10) as cl:
            for i in range(puts):
                cl.put(f"metrics/{i}", b"v")
            lease = cl.grant_lease(30)
            cl.put("metrics/leased", b"v", lease=lease)
            lock = cl.lock("metrics-lock", ttl=30)
            lock.acquire()
            w = cl.watch_prefix("metrics/")
            try:
                # a linearizable read on a follower times its read barrier
                follower = next(n for n in NAMES if n != leader)
                ch, kv = c.kv(follower)
                with ch:
                    assert kv.Range(kv_pb2.RangeRequest(key=b"metrics/0"), timeout=10).count == 1

                def watched() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
                    m = scrape(maddr[leader])
                    watchers = sum(value(scrape(maddr[n]), "coterie_watchers") for n in NAMES)
                    return m if watchers >= 1 and value(m, "coterie_locks") == 1 else None

                after = poll("the watcher and the lock in the metrics", watched, 10)
                fm = scrape(maddr[follower])
            finally:
                w.close()
                lock.release()

        ok = ("coterie_server_proposals_total", (("outcome", "ok"),))
        assert after[ok] - before[leader][ok] >= puts + 2, (after[ok], before[leader][ok])
        assert value(after, "coterie_server_proposals_total", outcome="failed") == \
            value(before[leader], "coterie_server_proposals_total", outcome="failed")
        assert value(after, "coterie_raft_applied_index") >= lead.applied_index + puts
        assert value(after, "coterie_leases") >= 1
        assert value(after, "coterie_mvcc_revision") >= puts
        # the histograms were recorded: WAL fsyncs and applies everywhere, batch sends on the leader,
        # the read barrier on the follower
        assert value(after, "coterie_disk_wal_fsync_duration_seconds_count") > \
            value(before[leader], "coterie_disk_wal_fsync_duration_seconds_count")
        assert value(after, "coterie_server_apply_duration_seconds_count") > 0
        assert value(fm, "coterie_server_apply_duration_seconds_count") > 0
        assert value(fm, "coterie_server_read_index_duration_seconds_count") >= 1
        peers = [n for n in NAMES if n != leader]
        for p in peers:
            pid = str(c.ids[p])
            assert value(after, "coterie_network_peer_batch_send_duration_seconds_count", peer=pid) > 0
            assert value(after, "coterie_network_peer_connected", peer=pid) == 1
        assert value(after, "coterie_network_peer_sent_batches_total") > 0

        # a path other than /metrics is a 404
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://{maddr[leader]}/other", timeout=5)
        assert err.value.code == 404


# ------------------------------------------------------------------------------ health and endpoint

REPO = Path(__file__).resolve().parent.parent


def compose_healthchecks() -> dict[str, list[str]]:
    """Each docker-compose.yml node's healthcheck command (read without a YAML library, as
    tests/test_advertise_client_addr.py does): checked to be ``coterie --endpoints 127.0.0.1:<its
    container client port> ... endpoint health``."""
    text = (REPO / "docker-compose.yml").read_text()
    out = {}
    for name, body in re.findall(r"^  (n\d):\n(.*?)(?=^  n\d:|^volumes:)", text, re.M | re.S):
        m = re.search(r"healthcheck:\n\s+test: \[(.*?)\]", body, re.S)
        assert m is not None, f"{name} has no healthcheck"
        argv = [a.strip().strip('"') for a in m.group(1).split(",")]
        assert argv[:2] == ["CMD", "coterie"] and argv[-2:] == ["endpoint", "health"], argv
        port = re.search(r'--client-addr, "0\.0\.0\.0:(\d+)"', body)
        assert port is not None
        assert argv[argv.index("--endpoints") + 1] == f"127.0.0.1:{port.group(1)}"
        out[name] = argv[1:]
    assert sorted(out) == list(NAMES)
    return out


def test_dockerfile_healthcheck_asks_the_health_service() -> None:
    text = (REPO / "Dockerfile").read_text()
    m = re.search(r"^HEALTHCHECK .*?\\\n\s+CMD (.*)$", text, re.M)
    assert m is not None, "no HEALTHCHECK"
    assert m.group(1).startswith('coterie --endpoints "$COTERIE_HEALTH_ENDPOINT"')
    assert "endpoint health" in m.group(1)
    assert "ENV COTERIE_HEALTH_ENDPOINT=127.0.0.1:7001" in text and "EXPOSE 7001" in text


def run_healthcheck(argv: list[str], endpoint: str) -> int:
    """A compose healthcheck command, run against ``endpoint`` instead of the container's port."""
    args = list(argv[1:])
    args[args.index("--endpoints") + 1] = endpoint
    return subprocess.run([*COTERIE, *args], capture_output=True, timeout=60).returncode


def test_health_follows_quorum_and_endpoint_commands(tmp_path: Path) -> None:
    c = ProcCluster(tmp_path / "c")
    with c:
        # A lone member of a three-member cluster: no quorum, no leader: NOT_SERVING, for as long as
        # it stays alone (several election timeouts at 50 ms ticks).
        c.start("n1")
        poll("n1's health service", lambda: health_status(c.client["n1"]), 30)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            assert health_status(c.client["n1"]) == NOT_SERVING
            time.sleep(0.1)
        checks = compose_healthchecks()
        assert run_healthcheck(checks["n1"], c.client["n1"]) == 1
        r = run("endpoint", "health", "-o", "json", endpoints=c.client["n1"])
        assert r.returncode == 1, r.stdout + r.stderr
        rows = json.loads(r.stdout)
        assert rows[0]["endpoint"] == c.client["n1"] and rows[0]["health"] is False
        assert rows[0]["error"].startswith("NOT_SERVING: no leader known"), rows

        c.start("n2")
        c.start("n3")
        c.settled()
        for n in NAMES:
            poll(f"{n} SERVING", functools.partial(_serving, c.client[n]), 30)
            assert health_status(c.client[n], "coterie.v1.KV") == SERVING
        assert [run_healthcheck(checks[n], c.client[n]) for n in NAMES] == [0, 0, 0]
        eps = ",".join(c.endpoints())
        r = run("endpoint", "health", "-o", "json", endpoints=eps)
        assert r.returncode == 0, r.stdout + r.stderr
        rows = json.loads(r.stdout)
        assert [(x["endpoint"], x["health"], x["error"]) for x in rows] == [
            (c.client[n], True, None) for n in NAMES]
        assert all(0 < x["took"] < 10 for x in rows)
        r = run("endpoint", "health", endpoints=eps)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0].split() == ["ENDPOINT", "HEALTH", "TOOK", "ERROR"]
        assert sum(" true " in line for line in r.stdout.splitlines()) == 3

        # endpoint status: one row per endpoint, one leader, one term; --cluster from one endpoint
        leader, term = c.settled()
        r = run("endpoint", "status", "-o", "json", endpoints=eps)
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        assert [x["endpoint"] for x in rows] == c.endpoints()
        assert [x["name"] for x in rows] == list(NAMES)
        assert [x["id"] for x in rows] == [c.ids[n] for n in NAMES]
        assert [x["is_leader"] for x in rows] == [n == leader for n in NAMES]
        assert {x["raft_term"] for x in rows} == {term}
        assert all(x["error"] is None and not x["is_learner"]
                   and x["raft_index"] >= x["raft_applied_index"] > 0 for x in rows)
        c.quiet()
        r = run("endpoint", "status", "--cluster", "-o", "json", endpoints=c.client["n2"])
        assert r.returncode == 0, r.stderr
        assert sorted(x["endpoint"] for x in json.loads(r.stdout)) == sorted(c.endpoints())
        r = run("endpoint", "status", endpoints=eps)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith("ENDPOINT") and "RAFT APPLIED INDEX" in lines[0]
        assert len(lines) == 4 and sum(" true " in x for x in lines[1:]) == 1

        # Kill two of three: the survivor loses its leader (or, leading, steps down: check quorum)
        # and goes NOT_SERVING; the commands report the dead endpoints and exit 1.
        survivor = next(n for n in NAMES if n != leader)
        for n in NAMES:
            if n != survivor:
                c.kill(n)
        poll(f"{survivor} NOT_SERVING",
             lambda: True if health_status(c.client[survivor]) == NOT_SERVING else None, 15)
        assert run_healthcheck(checks[survivor], c.client[survivor]) == 1
        r = run("endpoint", "health", "-o", "json", endpoints=eps)
        assert r.returncode == 1
        rows = {x["endpoint"]: x for x in json.loads(r.stdout)}
        assert not any(x["health"] for x in rows.values())
        assert rows[c.client[survivor]]["error"].startswith("NOT_SERVING")
        assert all(rows[c.client[n]]["error"] for n in NAMES if n != survivor)
        r = run("endpoint", "status", "-o", "json", endpoints=eps)
        assert r.returncode == 1 and "failed to get the status of" in r.stderr
        st = {x["endpoint"]: x for x in json.loads(r.stdout)}
        assert st[c.client[survivor]]["error"] is None and not st[c.client[survivor]]["is_leader"]
        assert all(st[c.client[n]]["error"] for n in NAMES if n != survivor)


# ------------------------------------------------------------------------------------ leader transfer


def _leader_of(c: ProcCluster) -> str:
    return c.settled()[0]


def test_leader_transfer_moves_leadership(tmp_path: Path) -> None:
    with cluster(tmp_path / "c") as c:
        c.quiet()
        eps = ",".join(c.endpoints())
        leader = _leader_of(c)
        target = next(n for n in NAMES if n != leader)
        r = run("leader", "transfer", "--to", target, "-o", "json", endpoints=eps)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out == {"from": c.ids[leader], "from_name": leader, "to": c.ids[target], "to_name": target,
                       "leader": c.ids[target]}
        st = c.status(target)
        assert st is not None and st.role == cluster_pb2.ROLE_LEADER
        assert _leader_of(c) == target

        # by id, through a follower's endpoint only (the call follows the leader hint)
        other = next(n for n in NAMES if n not in (leader, target))
        r = run("leader", "transfer", "--to", str(c.ids[other]), endpoints=c.client[leader])
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"leadership transferred from {target} ({c.ids[target]}) to {other} " \
                                   f"({c.ids[other]})"
        assert _leader_of(c) == other

        # without --to: another voter
        r = run("leader", "transfer", "-o", "json", endpoints=eps)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["from_name"] == other and out["to_name"] != other and out["leader"] == out["to"]
        assert _leader_of(c) == out["to_name"]

        # to the leader itself: nothing to do; to nobody: an error line, exit 1
        now = _leader_of(c)
        r = run("leader", "transfer", "--to", now, endpoints=eps)
        assert r.returncode == 0 and r.stdout.strip() == f"{now} ({c.ids[now]}) already leads", r.stderr
        r = run("leader", "transfer", "--to", "n9", endpoints=eps)
        assert r.returncode == 1 and r.stderr.startswith("error: no member named 'n9'"), r.stderr


def test_transfer_leader_to_a_non_member_is_invalid_argument(tmp_path: Path) -> None:
    from coterie.client.errors import InvalidArgument

    with cluster(tmp_path / "c") as c, Client(",".join(c.endpoints()), timeout=5) as cl:
        with pytest.raises(InvalidArgument):
            cl.transfer_leader(99)
        leader = _leader_of(c)
        assert cl.transfer_leader(c.ids[leader]) == c.ids[leader]


# ----------------------------------------------------------------------------- health messages


@pytest.mark.parametrize("service", ["", "coterie.v1.KV", "x" * 300])
def test_health_request_encoding_matches_protobuf(service: str) -> None:
    assert client_health.encode_request(service) == \
        health_pb2.HealthCheckRequest(service=service).SerializeToString()


@pytest.mark.parametrize("status", [0, 1, 2, 3])
def test_health_response_decoding_matches_protobuf(status: int) -> None:
    raw = health_pb2.HealthCheckResponse(status=status).SerializeToString()
    assert client_health.decode_response(raw) == status
    # unknown fields of every wire type are skipped
    extra = b"\x10\x05" + b"\x19" + bytes(8) + b"\x22\x02ab" + b"\x2d" + bytes(4)
    assert client_health.decode_response(extra + raw) == status


def test_health_response_decoding_refuses_garbage() -> None:
    for bad in (b"\x08", b"\x0a\x05ab", b"\x0b"):
        with pytest.raises(ValueError):
            client_health.decode_response(bad)
