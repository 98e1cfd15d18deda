"""Watches that stay useful when nothing happens to them:

- progress notifications: a quiet watcher learns how far the member's revision has got, so after a
  compaction of history it never needed, and a reconnect, it resumes instead of failing as compacted;
- leaderless members: a member cut off from the cluster ends its watch streams with UNAVAILABLE, so
  the client moves the watch to a member that still sees new writes.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import pytest

from coterie.client import Client, WatchEvent
from coterie.client._watch import WatchState
from coterie.node.server import watch as watch_mod
from coterie.v1 import faults_pb2, faults_pb2_grpc, kv_pb2
from tests.proc_cluster import NAMES, cluster, poll
from tests.test_services import T, single_node


def test_quiet_watcher_gets_progress_notifications(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_mod, "PROGRESS_INTERVAL", 0.2)

    async def main() -> None:
        async with single_node(tmp_path) as (driver, s):
            call = s.kv.Watch()
            await asyncio.wait_for(call.write(kv_pb2.WatchRequest(
                create_request=kv_pb2.WatchCreateRequest(key=b"quiet"))), T)
            created = await asyncio.wait_for(call.read(), T)
            assert created.created
            state = WatchState(b"quiet", b"", 0, False)
            assert state.on_response(created, "x") == []
            for i in range(3):
                await s.kv.Put(kv_pb2.PutRequest(key=b"other", value=b"%d" % i), timeout=T)
            rev = driver.sm.kv.revision
            while True:  # a progress notification for the quiet watcher arrives, with no events
                resp = await asyncio.wait_for(call.read(), T)
                assert not resp.events and not resp.canceled
                if resp.progress_notify and resp.header.revision == rev:
                    break
            assert state.on_response(resp, "x") == [] and state.received == rev
            # Resuming there is legal after compacting everything up to it...
            await s.kv.Compact(kv_pb2.CompactionRequest(revision=rev), timeout=T)
            call2 = s.kv.Watch()
            await asyncio.wait_for(call2.write(state.create_request()), T)
            again = await asyncio.wait_for(call2.read(), T)
            assert again.created and not again.canceled, again
            # ...and the next change is delivered exactly once.
            await s.kv.Put(kv_pb2.PutRequest(key=b"quiet", value=b"now"), timeout=T)
            ev = await asyncio.wait_for(call2.read(), T)
            got = state.on_response(ev, "x")
            assert [(e.kv.key, e.kv.value) for e in got] == [(b"quiet", b"now")]
            call.cancel()
            call2.cancel()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_watch_leaves_a_member_cut_off_from_the_leader(tmp_path: Path) -> None:
    with cluster(tmp_path, extra={"*": ["--enable-fault-injection"]}) as c:
        leader = c.leader()
        follower = next(n for n in NAMES if n != leader)
        others = [n for n in NAMES if n != follower]
        with Client(c.client[follower], timeout=10.0) as on_follower:
            start = on_follower.put("w/0", b"0").revision
        events: list[WatchEvent] = []
        errors: list[BaseException] = []
        # The watching client knows only the follower at first; it learns the others from Status.
        wc = Client([c.client[follower], *(c.client[n] for n in others)], timeout=30.0)
        w = wc.watch_prefix("w/", start_revision=start)
        assert w.endpoint == c.client[follower]

        def consume() -> None:
            try:
                for ev in w:
                    events.append(ev)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        poll("the first event", lambda: events or None, 30.0)
        # Cut the follower off from both other members (both directions, at the follower).
        ids = {n: c.ids[n] for n in NAMES}
        with grpc.insecure_channel(c.client[follower]) as ch:
            faults_pb2_grpc.FaultInjectionStub(ch).SetFaults(
                faults_pb2.FaultState(blocked=[ids[n] for n in others]), timeout=10)
        try:
            with Client([c.client[n] for n in others], timeout=30.0) as majority:
                revs = [majority.put(f"w/{i}", b"%d" % i).revision for i in range(1, 6)]
            # The watch gives up on the cut-off member and resumes elsewhere, without a gap.
            poll("the writes made on the majority side", lambda: len(events) >= 6 or None, 30.0)
            assert w.endpoint != c.client[follower]
            assert [e.revision for e in events] == [start, *revs]
            assert not errors, errors
        finally:
            with grpc.insecure_channel(c.client[follower]) as ch:
                faults_pb2_grpc.FaultInjectionStub(ch).SetFaults(faults_pb2.FaultState(), timeout=10)
            w.close()
            t.join(timeout=30)
            wc.close()
        assert not t.is_alive()
