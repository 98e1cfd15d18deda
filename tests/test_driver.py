"""The driver: three nodes in one event loop, real WAL, in-memory transport, fast ticks.

These tests exercise the owner-task loop (group commit, proposal futures, ReadIndex barrier, leader
loss, restart from disk); the gRPC transport and services build on it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from coterie.node.raft import ConfState, Message, NotLeader, RaftConfig, RawNode, Role
from coterie.node.server.config import DriverConfig
from coterie.node.server.driver import Driver, OutcomeUnknown, ReadTimeout, Stopped
from coterie.node.statemachine import PutRequest, PutResponse, StateMachine, encode_command
from coterie.node.storage import DiskStorage

IDS = (1, 2, 3)


class Net:
    """In-memory transport between drivers; ``down`` nodes neither send nor receive."""

    def __init__(self) -> None:
        self.drivers: dict[int, Driver] = {}
        self.down: set[int] = set()

    def transport(self, frm: int) -> _Link:
        return _Link(self, frm)


class _Link:
    def __init__(self, net: Net, frm: int) -> None:
        self.net, self.frm = net, frm

    def send(self, messages: Sequence[Message]) -> None:
        if self.frm in self.net.down:
            return
        for m in messages:
            d = self.net.drivers.get(m.to)
            if d is not None and m.to not in self.net.down:
                asyncio.get_running_loop().call_soon(d.deliver, m)


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = Net()
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.stores: dict[int, DiskStorage] = {}

    def start(self, i: int) -> Driver:
        store = DiskStorage.open(self.root / f"n{i}")
        st = store.initial_state()
        sm = StateMachine.from_snapshot(st.snapshot.data) if st.snapshot else StateMachine()
        raw = RawNode(RaftConfig(id=i), random.Random(i * 7919),
                      hard_state=st.hard_state, snapshot=st.snapshot, entries=st.entries,
                      conf_state=ConfState(IDS))
        d = Driver(raw, store, sm, self.net.transport(i),
                   DriverConfig(tick_interval=0.01, snapshot_entries=50, snapshot_keep=10))
        self.net.drivers[i] = d
        self.stores[i] = store
        self.tasks[i] = asyncio.create_task(d.run())
        return d

    async def stop(self, i: int) -> None:
        self.net.drivers[i].stop()
        await self.tasks.pop(i)
        self.stores.pop(i).close()
        del self.net.drivers[i]

    async def leader(self, timeout: float = 10.0) -> Driver:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end:
            leaders = [d for d in self.net.drivers.values()
                       if d.role == Role.LEADER and d.raw.id not in self.net.down]
            if leaders:
                return leaders[0]
            await asyncio.sleep(0.01)
        raise AssertionError("no leader")


async def barrier_with_retry(d: Driver, attempts: int = 200) -> None:
    """What a client does: a read refused for want of a known leader is retried after a pause."""
    for _ in range(attempts):
        try:
            await d.read_barrier()
            return
        except (NotLeader, ReadTimeout):
            await asyncio.sleep(0.02)
    raise AssertionError("read barrier never succeeded")


def put(key: str, value: str) -> bytes:
    return encode_command(PutRequest(key.encode(), value.encode()))


def test_replicates_reads_and_survives_restart(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path)
        for i in IDS:
            c.start(i)
        ld = await c.leader()
        # Many concurrent proposals: they share fsyncs (group commit) and all get responses.
        resps = await asyncio.gather(*(ld.propose(put(f"k{n}", f"v{n}")) for n in range(200)))
        assert all(isinstance(r, PutResponse) for r in resps)
        assert sorted(r.revision for r in resps) == list(range(2, 202))
        # A linearizable read on a follower sees every acknowledged write.
        follower = next(d for d in c.net.drivers.values() if d is not ld)
        await follower.read_barrier()
        kv = follower.sm.kv.get(b"k199")
        assert kv is not None and kv.value == b"v199"
        # Snapshots were taken (snapshot_entries=50) and every node restarts from disk.
        for i in IDS:
            await c.stop(i)
        for i in IDS:
            c.start(i)
        ld = await c.leader()
        await ld.propose(put("after", "restart"))
        for d in c.net.drivers.values():
            await d.read_barrier()
            got = d.sm.kv.get(b"k123")
            assert got is not None and got.value == b"v123"
        for i in IDS:
            await c.stop(i)

    asyncio.run(main())


def test_follower_refuses_and_leader_loss_fails_fast(tmp_path: Path) -> None:
    async def main() -> None:
        c = Cluster(tmp_path)
        for i in IDS:
            c.start(i)
        ld = await c.leader()
        follower = next(d for d in c.net.drivers.values() if d is not ld)
        while follower.leader != ld.raw.id:  # it learns of the leader from the first append
            await asyncio.sleep(0.01)
        with pytest.raises(NotLeader) as ei:
            await follower.propose(put("x", "1"))
        assert ei.value.leader_hint == ld.raw.id
        # Cut the leader off: its pending proposal cannot commit, and it steps down (CheckQuorum),
        # failing the proposal with an unknown outcome rather than hanging.
        c.net.down.add(ld.raw.id)
        with pytest.raises((OutcomeUnknown, NotLeader)):
            await asyncio.wait_for(ld.propose(put("lost", "maybe")), 10)
        new = await c.leader()
        assert new is not ld
        await new.propose(put("y", "2"))
        c.net.down.clear()
        await barrier_with_retry(ld)  # the old leader catches up as a follower
        got = ld.sm.kv.get(b"y")
        assert got is not None and got.value == b"2"
        for i in IDS:
            await c.stop(i)
        with pytest.raises(Stopped):
            await ld.propose(put("z", "3"))

    asyncio.run(main())


class _GatedStorage:
    """A DiskStorage whose saves of entries carrying a gated payload block (in the worker thread)
    until the test opens that gate."""

    def __init__(self, inner: DiskStorage) -> None:
        self.inner = inner
        self.gates: dict[bytes, threading.Event] = {}
        self.saving: dict[bytes, threading.Event] = {}

    def save(self, hard_state: Any, entries: Sequence[Any], snapshot: Any = None, *,
             sync: bool = True) -> None:
        for e in entries:
            gate = self.gates.get(e.data)
            if gate is not None:
                self.saving[e.data].set()
                assert gate.wait(30), "gate never opened"
        self.inner.save(hard_state, entries, snapshot, sync=sync)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_committed_entry_is_answered_before_the_next_save(tmp_path: Path) -> None:
    """A proposal whose entry is durable and committed is answered at once, not after the fsync of
    the entries proposed behind it (the driver applies committed entries that precede a Ready's new
    entries before saving them). One voter, so commitment follows the leader's own save."""
    async def main() -> None:
        inner = DiskStorage.open(tmp_path / "n1")
        st = inner.initial_state()
        store = _GatedStorage(inner)
        raw = RawNode(RaftConfig(id=1), random.Random(1), hard_state=st.hard_state, snapshot=st.snapshot,
                      entries=st.entries, conf_state=ConfState((1,)))
        d = Driver(raw, store, StateMachine(), _Null(),  # type: ignore[arg-type]
                   DriverConfig(tick_interval=0.01))
        task = asyncio.create_task(d.run())
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 10
            while d.role != Role.LEADER:
                assert loop.time() < end, "no leader"
                await asyncio.sleep(0.01)
            await d.propose(put("warm", "0"))
            b, c = put("b", "1"), put("c", "2")
            for data in (b, c):
                store.gates[data], store.saving[data] = threading.Event(), threading.Event()
            fb = asyncio.ensure_future(d.propose(b))
            await asyncio.to_thread(store.saving[b].wait, 10)  # B's save is in flight...
            fc = asyncio.ensure_future(d.propose(c))
            await asyncio.sleep(0.05)  # ...and C reached the core meanwhile
            store.gates[b].set()
            await asyncio.to_thread(store.saving[c].wait, 10)  # now C's save is held
            resp = await asyncio.wait_for(fb, 5)  # B is answered while C's fsync is pending
            assert isinstance(resp, PutResponse)
            assert not fc.done()
            store.gates[c].set()
            assert isinstance(await asyncio.wait_for(fc, 5), PutResponse)
        finally:
            for g in store.gates.values():
                g.set()
            d.stop()
            await task
            inner.close()

    asyncio.run(main())


class _Null:
    def send(self, messages: Sequence[Message]) -> None:
        pass


class _SlowSnapshots:
    """A DiskStorage whose snapshot saves take ``delay`` seconds (in the worker thread)."""

    def __init__(self, inner: DiskStorage, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.snapshots = 0

    def save_snapshot(self, snapshot: Any) -> None:
        self.snapshots += 1
        time.sleep(self.delay)
        self.inner.save_snapshot(snapshot)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_slow_snapshot_save_keeps_the_leader(tmp_path: Path) -> None:
    """The leader's snapshot writes take 1 s each, five or more election timeouts (10 ms ticks, 10-20
    ticks): its driver keeps ticking and sending heartbeats meanwhile, so no follower starts an election
    and the leader and term stay the same across its snapshots."""
    async def main() -> None:
        net = Net()
        stores: dict[int, DiskStorage] = {}
        slow: dict[int, _SlowSnapshots] = {}
        tasks = []
        for i in IDS:
            store = stores[i] = DiskStorage.open(tmp_path / f"n{i}")
            st = store.initial_state()
            raw = RawNode(RaftConfig(id=i), random.Random(i * 7919), hard_state=st.hard_state,
                          snapshot=st.snapshot, entries=st.entries, conf_state=ConfState(IDS))
            slow[i] = _SlowSnapshots(store, 0.0)
            d = Driver(raw, slow[i], StateMachine(), net.transport(i),  # type: ignore[arg-type]
                       DriverConfig(tick_interval=0.01, snapshot_entries=40, snapshot_keep=10))
            net.drivers[i] = d
            tasks.append(asyncio.create_task(d.run()))
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 10
            while not [d for d in net.drivers.values() if d.role == Role.LEADER]:
                assert loop.time() < end, "no leader"
                await asyncio.sleep(0.01)
            ld = next(d for d in net.drivers.values() if d.role == Role.LEADER)
            term = ld.raw.raft.term
            slow[ld.raw.id].delay = 1.0  # the followers save theirs at once, and keep their clocks
            for n in range(100):
                await ld.propose(put(f"s{n}", "x"))
            end = loop.time() + 20
            while slow[ld.raw.id].snapshots < 2:
                assert loop.time() < end, "snapshots were not taken"
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.2)  # let the last snapshot saves finish
            assert ld.role == Role.LEADER and ld.raw.raft.term == term
            assert all(d.raw.raft.term == term for d in net.drivers.values())
        finally:
            for d in net.drivers.values():
                d.stop()
            await asyncio.gather(*tasks)
            for store in stores.values():
                store.close()

    asyncio.run(main())
