"""The node's gossip host (node/server/gossip.py) in one process, on real loopback sockets: UDP for the
datagrams, TCP for push-pulls too large for one, join retries, tag changes, graceful leave, and
malformed input dropped and counted."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable

import pytest

from coterie.node.gossip import GossipConfig, MemberState
from coterie.node.server.gossip import FRAME_HEADER, GossipHost, split_addr
from tests.proc_cluster import free_ports


def _cfg() -> GossipConfig:
    return GossipConfig.local(probe_interval=0.3, probe_timeout=0.1, gossip_interval=0.05)


def _host(name: str, port: int, meta: dict[str, str] | None = None, seed: int = 0) -> GossipHost:
    m = dict(meta or {"name": name})
    return GossipHost(name, f"127.0.0.1:{port}", _cfg(), lambda: m, rng=random.Random(seed))


async def _until(what: str, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


def _state(h: GossipHost, name: str) -> MemberState | None:
    assert h.core is not None
    m = h.core.member(name)
    return None if m is None else m.state


def _run(coro: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coro(), timeout))


def test_split_addr() -> None:
    assert split_addr("127.0.0.1:7946") == ("127.0.0.1", 7946)
    assert split_addr("[::1]:7946") == ("::1", 7946)
    for bad in ("7946", "host:", ":7946", "h:99999", "h:x"):
        with pytest.raises(ValueError):
            split_addr(bad)


def test_three_hosts_join_see_each_other_and_a_graceful_leave() -> None:
    async def run() -> None:
        ports = free_ports(3)
        hosts = [_host(f"g{i}", p, seed=i) for i, p in enumerate(ports)]
        for h in hosts:
            await h.start()
        seeds = [h.addr for h in hosts]
        for h in hosts:
            h.join(seeds)
        try:
            await _until("everyone alive everywhere", lambda: all(
                _state(a, b.name) == MemberState.ALIVE for a in hosts for b in hosts if a is not b))
            view, stats = hosts[0].members_pb()
            assert [m.name for m in view] == ["g0", "g1", "g2"]
            assert stats["packets_received"] > 0 and stats["dropped_malformed"] == 0
            await hosts[2].stop()
            await _until("g2 left", lambda: _state(hosts[0], "g2") == MemberState.LEFT
                         and _state(hosts[1], "g2") == MemberState.LEFT)
        finally:
            for h in hosts:
                await h.stop()

    _run(run)


def test_join_retries_with_backoff_until_a_seed_comes_up(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        p1, p2 = free_ports(2)
        late = _host("late-seed", p2, seed=2)
        early = _host("early", p1, seed=1)
        await early.start()
        early.join([f"127.0.0.1:{p2}"])
        try:
            await _until("two failed attempts", lambda: early.host_stats["host_join_attempts"] >= 2)
            assert not early.joined.is_set()
            await late.start()  # no --join of its own: it is joined
            await _until("joined", early.joined.is_set)
            await _until("both alive", lambda: _state(early, "late-seed") == MemberState.ALIVE
                         and _state(late, "early") == MemberState.ALIVE)
        finally:
            await early.stop()
            await late.stop()
        assert any("no seed answered; retrying" in r.getMessage() for r in caplog.records)

    _run(run)


def test_large_push_pull_goes_over_tcp() -> None:
    """Tags too large for one datagram: the push-pull (the only message that may exceed
    max_packet_size) goes over TCP on the gossip port, and the join still works."""

    async def run() -> None:
        p1, p2 = free_ports(2)
        big = {"name": "x", "pad": "p" * 500, "pad2": "q" * 500, "pad3": "r" * 500}
        a = _host("a", p1, big, seed=1)
        b = _host("b", p2, big, seed=2)
        await a.start()
        await b.start()
        b.join([a.addr])
        try:
            await _until("joined over TCP", lambda: _state(a, "b") == MemberState.ALIVE
                         and _state(b, "a") == MemberState.ALIVE)
            assert a.host_stats["host_stream_exchanges"] >= 1
            assert b.host_stats["host_stream_exchanges"] >= 1
            assert b.core is not None and b.core.member("a") is not None
            assert b.core.member("a").meta == big  # type: ignore[union-attr]
        finally:
            await a.stop()
            await b.stop()

    _run(run)


def test_tag_changes_are_published_with_a_higher_incarnation() -> None:
    async def run() -> None:
        p1, p2 = free_ports(2)
        tags = {"role": "follower"}
        a = GossipHost("a", f"127.0.0.1:{p1}", _cfg(), lambda: dict(tags), rng=random.Random(1))
        b = _host("b", p2, seed=2)
        await a.start()
        await b.start()
        b.join([a.addr])
        try:
            await _until("joined", lambda: _state(b, "a") == MemberState.ALIVE)
            assert b.core is not None
            before = b.core.member("a").incarnation  # type: ignore[union-attr]
            tags["role"] = "leader"
            await _until("b sees the new role", lambda: b.core is not None and
                         b.core.member("a").meta.get("role") == "leader")  # type: ignore[union-attr]
            assert b.core.member("a").incarnation > before  # type: ignore[union-attr]
        finally:
            await a.stop()
            await b.stop()

    _run(run)


def test_malformed_input_is_dropped_and_counted() -> None:
    async def run() -> None:
        p1, p2 = free_ports(2)
        a = _host("a", p1, seed=1)
        b = _host("b", p2, seed=2)
        await a.start()
        await b.start()
        b.join([a.addr])
        try:
            await _until("joined", lambda: _state(a, "b") == MemberState.ALIVE)
            rng = random.Random(7)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"", ("127.0.0.1", p1))
                s.sendto(b"\x01\xc1", ("127.0.0.1", p1))  # right version, not msgpack
                s.sendto(b"\x01\x93\x63\x01\x02", ("127.0.0.1", p1))  # an unknown message type
                for _ in range(100):
                    s.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))),
                             ("127.0.0.1", p1))
            # TCP: a frame longer than allowed, a truncated frame, garbage in a well-formed frame.
            for payload in ((1 << 31).to_bytes(FRAME_HEADER, "big"), b"\x00\x00\x00\x09abc",
                            (5).to_bytes(FRAME_HEADER, "big") + b"\x01junk"):
                _, w = await asyncio.open_connection("127.0.0.1", p1)
                w.write(payload)
                await w.drain()
                w.close()
            await _until("counted", lambda: a.stats()["packets_received"] >= 100 and sum(
                v for k, v in a.stats().items() if k.startswith("dropped_")) >= 100
                and a.host_stats["host_stream_dropped_oversized"] == 1
                and a.host_stats["host_stream_errors"] >= 1)
            st = a.stats()
            assert st["dropped_malformed"] >= 2 and st["dropped_bad_version"] >= 1
            assert st["dropped_unknown_type"] >= 1 and st["host_receive_errors"] == 0
            # Still gossiping: b is alive to a, probes keep being answered.
            probes = st["probes"]
            await _until("more probes", lambda: a.stats()["probes"] > probes + 2)
            assert _state(a, "b") == MemberState.ALIVE and _state(b, "a") == MemberState.ALIVE
        finally:
            await a.stop()
            await b.stop()

    _run(run)
