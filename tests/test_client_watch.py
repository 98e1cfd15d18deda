"""The client watch API (``Client.watch`` / ``watch_prefix`` and the ``AsyncClient`` twins) against
three real ``coterie node`` processes, plus the resume bookkeeping (``WatchState``) alone.

- events in revision order with ``prev_kv``; a txn's changes (one revision) delivered whole, also a
  revision of 1,100 deletes and one of ~4.4 MiB with ``prev_kv`` (over gRPC's default message limit);
- ``start_revision`` in the past replays the history, then continues live;
- a start below the compaction point raises ``Compacted`` naming the oldest watchable revision;
- ``close()`` from another thread / ``aclose()`` from another task ends a blocked iteration;
- ``kill -9`` of the member a watch streams from (a follower; then, separately, the leader) in the
  middle of a stream of writes: a sync watch from "now" and an async watch from an explicit revision
  both see every acknowledged write exactly once, in revision order, with no gaps, and each revision's
  state (rebuilt from the events) equals what ``get_prefix(revision=r)`` returns.

Every wait is bounded (watches are closed by a timer or by the polling loop) and every process is
stopped in a ``finally``. Nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from coterie.client import (
    AsyncClient,
    AsyncWatch,
    Client,
    Compacted,
    CoterieError,
    DeadlineExceeded,
    DeleteResult,
    InvalidArgument,
    Op,
    Watch,
    WatchEvent,
)
from coterie.client._watch import WatchState
from coterie.v1 import kv_pb2
from tests.test_processes import NAMES, ProcCluster

T = 30.0
"""Generous bound for one wait (the machine is shared and slow)."""


# ============================================================================== helpers


def endpoints(c: ProcCluster) -> list[str]:
    return [c.client[n] for n in NAMES if n in c.procs]


def pinned(c: ProcCluster, first: str) -> list[str]:
    """Endpoints with member ``first`` first: a fresh client (no leader known) opens its watch there."""
    return [c.client[first]] + [c.client[n] for n in NAMES if n != first and n in c.procs]


def take(w: Watch, n: int, timeout: float = T) -> list[WatchEvent]:
    """The next ``n`` events of ``w`` (fewer if they do not come within ``timeout``: the watch is
    closed then, which also shows that close() from another thread ends a blocked iteration)."""
    out: list[WatchEvent] = []
    timer = threading.Timer(timeout, w.close)
    timer.start()
    try:
        for ev in w:
            out.append(ev)
            if len(out) >= n:
                break
    finally:
        timer.cancel()
    return out


async def atake(w: AsyncWatch, n: int, timeout: float = T) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        try:
            out.append(await asyncio.wait_for(anext(w), max(0.1, end - time.monotonic())))
        except TimeoutError:
            break
    return out


def summary(events: list[WatchEvent]) -> list[tuple[str, bytes, bytes, bytes | None]]:
    return [(e.type, e.kv.key, e.kv.value, e.prev_kv.value if e.prev_kv else None) for e in events]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    c = ProcCluster(tmp_path_factory.mktemp("cwatch"))
    try:
        for n in NAMES:
            c.start(n)
        c.leader()
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def client(cluster: ProcCluster) -> Iterator[Client]:
    with Client(endpoints(cluster)) as cl:
        yield cl


# ============================================================================== WatchState alone


def _resp(*revs: int, created: bool = False, header: int = 0, **kw: Any) -> kv_pb2.WatchResponse:
    evs = [kv_pb2.Event(kv=kv_pb2.KeyValue(key=b"k", value=b"v", mod_revision=r, create_revision=1,
                                           version=1)) for r in revs]
    return kv_pb2.WatchResponse(header=kv_pb2.ResponseHeader(revision=header), created=created,
                                events=evs, **kw)


def test_watch_state_resumes_after_the_last_complete_revision() -> None:
    st = WatchState(b"k", b"", 0, False)
    assert st.create_request().create_request.start_revision == 0  # from "now"
    assert st.on_response(_resp(created=True, header=41), "a") == []
    assert st.create_request().create_request.start_revision == 42  # "now" is pinned at creation
    assert [e.revision for e in st.on_response(_resp(42, 42, 44), "a")] == [42, 42, 44]
    assert st.create_request().create_request.start_revision == 45
    # A re-created watch's created response does not move the start.
    assert st.on_response(_resp(created=True, header=40), "b") == []
    assert st.create_request().create_request.start_revision == 45
    assert st.delivered_revision([]) == 44
    ev = st.on_response(_resp(45, 45), "b")
    assert st.delivered_revision(ev[1:]) == 44 and st.delivered_revision(ev[2:]) == 45


@pytest.mark.parametrize("revs", [(44,), (40,), (46, 45)])
def test_watch_state_refuses_split_or_reordered_revisions(revs: tuple[int, ...]) -> None:
    st = WatchState(b"k", b"", 43, False)
    st.on_response(_resp(created=True, header=50), "a")
    st.on_response(_resp(43, 44), "a")
    with pytest.raises(CoterieError, match="protocol violation"):
        st.on_response(_resp(*revs), "a")


def test_watch_state_compacted_names_the_oldest_revision() -> None:
    st = WatchState(b"k", b"", 5, False)
    st.on_response(_resp(created=True, header=9), "a")
    with pytest.raises(Compacted) as ei:
        st.on_response(_resp(canceled=True, compact_revision=8), "a")
    assert ei.value.compact_revision == 8 and ei.value.requested_revision == 5
    assert "oldest watchable revision is 8" in str(ei.value) and not ei.value.retriable
    with pytest.raises(InvalidArgument, match="bad key"):
        st.on_response(_resp(canceled=True, cancel_reason="bad key"), "a")


# ============================================================================== shared cluster


def test_events_in_order_with_prev_kv(client: Client) -> None:
    client.put("ev/0", b"before")
    with client.watch_prefix("ev/", prev_kv=True) as w:
        r1 = client.put("ev/1", b"v1")
        client.put("out/x", b"outside")
        client.put("ev/1", b"v2")
        client.delete("ev/1")
        t = client.txn(success=[Op.put("ev/2", b"x"), Op.put("ev/0", b"after")])
        events = take(w, 5)
    assert summary(events) == [
        ("PUT", b"ev/1", b"v1", None),
        ("PUT", b"ev/1", b"v2", b"v1"),
        ("DELETE", b"ev/1", b"", b"v2"),
        ("PUT", b"ev/2", b"x", None),
        ("PUT", b"ev/0", b"after", b"before"),
    ]
    revs = [e.revision for e in events]
    assert revs[0] == r1.revision and revs[1:3] == [r1.revision + 2, r1.revision + 3]
    assert revs[3] == revs[4] == t.revision
    assert w.revision == t.revision
    # A single-key watch sees only its key.
    with client.watch("ev/0") as w2:
        client.put("ev/00", b"no")
        r = client.put("ev/0", b"yes")
        got = take(w2, 1)
    assert [(e.kv.key, e.revision) for e in got] == [(b"ev/0", r.revision)]


def test_multi_key_revisions_are_delivered_whole(client: Client) -> None:
    n = 1100  # more deletes in one revision than the server puts in one response by count
    for i in range(0, n, 110):
        client.txn(success=[Op.put(f"big/{j:05d}", b"v") for j in range(i, i + 110)])
    with client.watch_prefix("big/") as w:
        before = client.put("big/first", b"1").revision
        deleted = client.txn(success=[Op.delete("big/", prefix=True)])
        after = client.put("big/last", b"2").revision
        events = take(w, n + 3)
    assert [e.revision for e in events] == [before] + [deleted.revision] * (n + 1) + [after]
    assert {e.kv.key for e in events[1:-1]} == {f"big/{j:05d}".encode() for j in range(n)} | {b"big/first"}
    assert all(e.type == "DELETE" for e in events[1:-1])
    # One revision of ~4.4 MiB with prev_kv (over gRPC's default 4 MiB receive limit), in one response.
    value = b"x" * (900 << 10)
    for i in range(5):
        client.put(f"huge/{i}", value)
    with client.watch_prefix("huge/", prev_kv=True) as w:
        assert client.delete_range("huge/", "huge0") == 5
        events = take(w, 5)
    assert len(events) == 5 and len({e.revision for e in events}) == 1
    assert all(e.type == "DELETE" and e.prev_kv is not None and e.prev_kv.value == value for e in events)


def test_start_revision_in_the_past_replays_history(client: Client) -> None:
    revs = [client.put("hist/k", f"{i}").revision for i in range(4)]
    client.delete("hist/k")
    with client.watch("hist/k", start_revision=revs[1], prev_kv=True) as w:
        old = take(w, 4)
        live = client.put("hist/k", b"new").revision
        new = take(w, 1)
    assert summary(old) == [("PUT", b"hist/k", b"1", b"0"), ("PUT", b"hist/k", b"2", b"1"),
                            ("PUT", b"hist/k", b"3", b"2"), ("DELETE", b"hist/k", b"", b"3")]
    assert [e.revision for e in old[:3]] == revs[1:]
    assert summary(new) == [("PUT", b"hist/k", b"new", None)] and new[0].revision == live


def test_close_from_another_thread_ends_a_blocked_iteration(client: Client) -> None:
    w = client.watch("quiet/k")
    got: list[WatchEvent] = []
    done = threading.Event()

    def consume() -> None:
        got.extend(w)
        done.set()

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    time.sleep(0.3)  # let it block in next()
    assert not done.is_set()
    w.close()
    assert done.wait(T), "close() did not end the iteration"
    assert got == []
    with pytest.raises(StopIteration):
        next(w)
    # Closing the client closes its watches too.
    with Client(client.endpoints) as c2:
        w2 = c2.watch("quiet/k")
    assert list(w2) == []


def test_async_watch(cluster: ProcCluster) -> None:
    async def run() -> None:
        async with AsyncClient(endpoints(cluster)) as c:
            await c.put("aw/0", b"before")
            async with c.watch_prefix("aw/", prev_kv=True) as w:
                r1 = await c.put("aw/1", b"v1")
                await c.put("aw/1", b"v2")
                t = await c.txn(success=[Op.put("aw/2", b"x"), Op.put("aw/0", b"after")])
                await c.delete("aw/1")
                events = await atake(w, 5)
                assert summary(events) == [
                    ("PUT", b"aw/1", b"v1", None),
                    ("PUT", b"aw/1", b"v2", b"v1"),
                    ("PUT", b"aw/2", b"x", None),
                    ("PUT", b"aw/0", b"after", b"before"),
                    ("DELETE", b"aw/1", b"", b"v2"),
                ]
                assert events[0].revision == r1.revision and events[2].revision == events[3].revision
                assert events[3].revision == t.revision
                # A timed-out __anext__ cancels the gRPC call under it; the watch resumes after the
                # last revision it delivered, losing and repeating nothing.
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(anext(w), 0.3)
                r = await c.put("aw/3", b"later")
                more = await atake(w, 1)
                assert [(e.kv.key, e.revision) for e in more] == [(b"aw/3", r.revision)]
            # Replay from the past with async for, ending it with aclose() from another task.
            seen: list[WatchEvent] = []
            w2 = c.watch("aw/1", start_revision=r1.revision)

            async def consume() -> None:
                async for ev in w2:
                    seen.append(ev)

            task = asyncio.create_task(consume())
            end = time.monotonic() + T
            while len(seen) < 3 and time.monotonic() < end:
                await asyncio.sleep(0.05)
            await w2.aclose()
            await asyncio.wait_for(task, T)  # ends without an error
            assert [e.type for e in seen] == ["PUT", "PUT", "DELETE"]

    asyncio.run(asyncio.wait_for(run(), 3 * T))


def test_compacted_start_raises_with_the_oldest_revision(client: Client, cluster: ProcCluster) -> None:
    r0 = client.put("cmp/k", b"0").revision
    client.put("cmp/k", b"1")
    r2 = client.put("cmp/k", b"2").revision
    client.compact(r2)
    w = client.watch("cmp/k", start_revision=r0)
    with pytest.raises(Compacted) as ei:
        next(w)
    assert ei.value.compact_revision == r2 and ei.value.requested_revision == r0
    assert f"oldest watchable revision is {r2}" in str(ei.value)
    with pytest.raises(StopIteration):  # the watch is over
        next(w)
    # From the compaction point itself, the history is complete.
    with client.watch("cmp/k", start_revision=r2) as w:
        assert [e.kv.value for e in take(w, 1)] == [b"2"]

    async def run() -> None:
        async with AsyncClient(endpoints(cluster)) as c:
            aw = c.watch("cmp/k", start_revision=r0)
            with pytest.raises(Compacted) as ei:
                await asyncio.wait_for(anext(aw), T)
            assert ei.value.compact_revision == r2
            with pytest.raises(StopAsyncIteration):
                await anext(aw)

    asyncio.run(asyncio.wait_for(run(), T))


# ============================================================================== kill -9 during writes


@dataclass
class Collected:
    events: list[WatchEvent] = field(default_factory=list)
    error: BaseException | None = None
    reconnects: int = 0
    endpoint: str = ""


@dataclass
class Acked:
    revision: int
    changes: list[tuple[str, bytes, bytes]]
    """(type, key, value) of each change the write made."""


def write_stream(c: Client, prefix: str, n: int, kill_at: int, kill: Callable[[], None]) -> list[Acked]:
    """``n`` writes (puts, 4-key txns, deletes); ``kill()`` runs before write ``kill_at``. Returns the
    acknowledged ones; a write that failed (outcome unknown to the caller) is left out."""
    acked: list[Acked] = []
    for i in range(n):
        if i == kill_at:
            kill()
        try:
            if i % 10 == 3:
                puts = [(f"{prefix}t{j}", f"{i}.{j}".encode()) for j in range(4)]
                t = c.txn(success=[Op.put(k, v) for k, v in puts])
                acked.append(Acked(t.revision, [("PUT", k.encode(), v) for k, v in puts]))
            elif i % 15 == 7:
                key = f"{prefix}k{(i - 1) % 20}"
                t = c.txn(success=[Op.delete(key)])
                res = t.results[0]
                assert isinstance(res, DeleteResult)
                if res.deleted:
                    acked.append(Acked(t.revision, [("DELETE", key.encode(), b"")]))
            else:
                key = f"{prefix}k{i % 20}"
                r = c.put(key, f"{i}")
                acked.append(Acked(r.revision, [("PUT", key.encode(), f"{i}".encode())]))
        except CoterieError:
            continue
    return acked


def sync_watcher(w: Watch, out: Collected) -> threading.Thread:
    def run() -> None:
        try:
            for ev in w:
                out.events.append(ev)
        except BaseException as exc:  # reported by the test
            out.error = exc
        out.reconnects, out.endpoint = w.reconnects, w.endpoint

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


class AsyncWatcher:
    """An AsyncClient watch on its own event loop thread, collecting into ``out`` until
    :meth:`stop_when` sees ``target`` or the deadline passes, then ``aclose()``."""

    def __init__(self, eps: list[str], prefix: str, start: int) -> None:
        self.out = Collected()
        self.ready = threading.Event()
        self.target: int | None = None
        self.deadline = time.monotonic() + 4 * T
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main(eps, prefix, start)),
                                       daemon=True)
        self.thread.start()

    async def _main(self, eps: list[str], prefix: str, start: int) -> None:
        try:
            async with AsyncClient(eps) as c, c.watch_prefix(prefix, start_revision=start) as w:
                self.out.endpoint = w.endpoint
                self.ready.set()

                async def consume() -> None:
                    async for ev in w:
                        self.out.events.append(ev)

                task = asyncio.create_task(consume())
                while time.monotonic() < self.deadline and not task.done():
                    t, evs = self.target, self.out.events
                    if t is not None and evs and evs[-1].revision >= t:
                        break
                    await asyncio.sleep(0.05)
                await w.aclose()
                await asyncio.wait_for(task, T)
                self.out.reconnects, self.out.endpoint = w.reconnects, w.endpoint
        except BaseException as exc:
            self.out.error = exc
        finally:
            self.ready.set()


def wait_for_revision(out: Collected, target: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if out.events and out.events[-1].revision >= target:
            return
        time.sleep(0.05)


def check_history(name: str, out: Collected, acked: list[Acked], first: int, last: int, c: Client,
                  prefix: str) -> None:
    """``out`` saw every revision in ``[first, last]`` exactly once, in order, whole; every
    acknowledged write; and the state after each revision is the store's state at that revision."""
    assert out.error is None, f"{name} watcher failed: {out.error!r}"
    events = [e for e in out.events if e.revision >= first]
    revs = [e.revision for e in events]
    assert revs == sorted(revs), f"{name}: events out of revision order"
    pairs = [(e.revision, e.kv.key) for e in events]
    dups = {p for p in pairs if pairs.count(p) > 1}
    assert not dups, f"{name}: duplicated events {sorted(dups)[:5]}"
    distinct = sorted(set(revs))
    assert distinct and distinct[0] == first and distinct[-1] >= last, (name, distinct[:3], distinct[-3:])
    gaps = sorted(set(range(first, distinct[-1] + 1)) - set(distinct))
    assert not gaps, f"{name}: revisions missing (gaps): {gaps[:10]}"
    by_rev: dict[int, set[tuple[str, bytes, bytes]]] = {}
    for e in events:
        by_rev.setdefault(e.revision, set()).add((e.type, e.kv.key, e.kv.value))
    for a in acked:
        assert by_rev.get(a.revision) == set(a.changes), (
            f"{name}: acknowledged write at revision {a.revision} seen as {by_rev.get(a.revision)}, "
            f"expected {a.changes}")
    # The state after each revision, rebuilt from the events, is the store's state at that revision.
    state = {kv.key: kv.value for kv in c.get_prefix(prefix, revision=first - 1)}
    i = 0
    for rev in distinct:
        while i < len(events) and events[i].revision == rev:
            e = events[i]
            if e.type == "PUT":
                state[e.kv.key] = e.kv.value
            else:
                state.pop(e.kv.key, None)
            i += 1
        got = {kv.key: kv.value for kv in c.get_prefix(prefix, revision=rev)}
        assert got == state, f"{name}: state at revision {rev} differs from the watched history"


def run_kill_scenario(root: Path, victim_role: str) -> None:
    """Both watchers stream from one member (the leader, or a follower) when it is killed with
    SIGKILL a third of the way through the writes."""
    c = ProcCluster(root)
    try:
        for n in NAMES:
            c.start(n)
        leader = c.leader()
        victim = leader if victim_role == "leader" else next(n for n in NAMES if n != leader)
        prefix = f"kill-{victim_role}/"
        with Client(endpoints(c), timeout=20.0) as writer:
            r0 = writer.put(f"{prefix}warm", b"0").revision
            # The sync watch is "from now"; the async one from an explicit revision.
            watch_client = Client(pinned(c, victim), timeout=20.0)
            try:
                w = watch_client.watch_prefix(prefix)
                assert w.endpoint == c.client[victim]
                sync_out = Collected()
                th = sync_watcher(w, sync_out)
                aw = AsyncWatcher(pinned(c, victim), prefix, r0 + 1)
                assert aw.ready.wait(T) and aw.out.error is None, aw.out.error
                assert aw.out.endpoint == c.client[victim]
                acked = write_stream(writer, prefix, 240, 80, lambda: c.kill(victim))
                assert len(acked) >= 150, f"only {len(acked)} writes acknowledged"
                last = max(a.revision for a in acked)
                aw.target = last
                wait_for_revision(sync_out, last, 4 * T)
                w.close()
                th.join(T)
                aw.thread.join(5 * T)
                assert not th.is_alive() and not aw.thread.is_alive()
            finally:
                watch_client.close()
            # Nothing but these writes changed the store since r0, so every revision is ours.
            check_history("sync", sync_out, acked, r0 + 1, last, writer, prefix)
            check_history("async", aw.out, acked, r0 + 1, last, writer, prefix)
            assert sync_out.reconnects >= 1 and aw.out.reconnects >= 1, "the watches did not reconnect"
            assert sync_out.endpoint != c.client[victim] and aw.out.endpoint != c.client[victim]
            seen_sync = [e for e in sync_out.events if r0 < e.revision <= last]
            seen_async = [e for e in aw.out.events if e.revision <= last]
            assert summary(seen_sync) == summary(seen_async)
            # A fresh watch replaying the same revisions on a surviving member agrees.
            with writer.watch_prefix(prefix, start_revision=r0 + 1) as replay:
                again = take(replay, len(seen_async))
            assert summary(again) == summary(seen_async)
            # With every member gone, a watch gives up after the client's timeout, retriably.
            with Client(endpoints(c), timeout=2.0) as short:
                w = short.watch_prefix(prefix)
                for n in list(c.procs):
                    c.kill(n)
                guard = threading.Timer(T, w.close)
                guard.start()
                try:
                    with pytest.raises(DeadlineExceeded) as ei:
                        next(w)
                finally:
                    guard.cancel()
                assert ei.value.retriable
                assert list(w) == []
    finally:
        c.stop_all()


def test_kill_the_follower_a_watch_streams_from(tmp_path: Path) -> None:
    run_kill_scenario(tmp_path, "follower")


def test_kill_the_leader_a_watch_streams_from(tmp_path: Path) -> None:
    run_kill_scenario(tmp_path, "leader")
