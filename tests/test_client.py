"""coterie.client.Client and AsyncClient against three real ``coterie node`` processes.

One cluster for the module; the test that kills the leader runs last. Every loop is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from coterie.client import (
    AsyncClient,
    Client,
    Compacted,
    Compare,
    InvalidArgument,
    Op,
    PutResult,
    RangeResult,
)
from coterie.v1 import kv_pb2
from tests.test_processes import NAMES, ProcCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    c = ProcCluster(tmp_path_factory.mktemp("client"))
    for n in NAMES:
        c.start(n)
    try:
        c.leader()
        yield c
    finally:
        c.stop_all()


def endpoints(c: ProcCluster) -> list[str]:
    return [c.client[n] for n in NAMES if n in c.procs]


@pytest.fixture
def client(cluster: ProcCluster) -> Iterator[Client]:
    with Client(endpoints(cluster)) as cl:
        yield cl


def test_put_get_prefix_range_delete(client: Client) -> None:
    r = client.put("kv/a", b"1")
    assert r.revision > 0 and r.prev is None
    r2 = client.put(b"kv/a", "2")
    assert r2.revision > r.revision and r2.prev is not None and r2.prev.value == b"1"
    kv = client.get("kv/a")
    assert kv is not None and kv.key == b"kv/a" and kv.value == b"2" and kv.version == 2
    assert kv.create_revision == r.revision and kv.mod_revision == r2.revision
    assert client.get("kv/missing") is None
    assert client.get("kv/a", serializable=True) is not None
    for k in ("kv/c", "kv/b", "kw/x"):
        client.put(k, k.upper())
    assert [x.key for x in client.get_prefix("kv/")] == [b"kv/a", b"kv/b", b"kv/c"]
    assert client.get_prefix(b"kv/")[1].value == b"KV/B"
    assert [x.key for x in client.get_range("kv/a", "kv/c")] == [b"kv/a", b"kv/b"]
    assert [x.key for x in client.get_range("kv/", "kw/z", limit=2)] == [b"kv/a", b"kv/b"]
    assert client.delete("kv/a") == 1
    assert client.delete("kv/a") == 0
    assert client.delete_prefix("kv/") == 2
    assert client.get_prefix("kv/") == []
    assert client.get("kw/x") is not None


def test_txn_success_and_failure(client: Client) -> None:
    client.put("t/a", b"1")
    ok, results = client.txn(
        compare=[Compare.value("t/a") == b"1", Compare.version("t/x") == 0],
        success=[Op.put("t/a", b"2"), Op.get("t/a")],
        failure=[Op.get("t/a")],
    )
    assert ok is True and isinstance(results, list)
    assert isinstance(results[0], PutResult)
    assert isinstance(results[1], RangeResult) and results[1].kvs[0].value == b"2"
    ok, results = client.txn(compare=[Compare.value("t/a") == b"1"], success=[Op.delete("t/a")],
                             failure=[Op.get("t/a")])
    assert ok is False and isinstance(results, list)
    assert isinstance(results[0], RangeResult) and results[0].kvs[0].value == b"2"
    r = client.txn(compare=[Compare.version("t/", prefix=True) > 0], success=[Op.get("t/", prefix=True)])
    assert r.succeeded and isinstance(r.results[0], RangeResult) and r.results[0].count == 1


def test_status(client: Client, cluster: ProcCluster) -> None:
    deadline = time.monotonic() + 20
    while True:  # a loaded machine may hold an election now and then: wait for a settled view
        st = client.status()
        roles = sorted(m.role for m in st.members)
        if roles == ["follower", "follower", "leader"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert roles == ["follower", "follower", "leader"]
    assert len(st.members) == 3 and all(m.error is None for m in st.members)
    assert st.leader_id != 0 and st.leader_endpoint == cluster.client[cluster.leader()]
    assert all(m.term > 0 and m.commit_index >= m.applied_index > 0 for m in st.members)


def test_compact(client: Client) -> None:
    first = client.put("cp/a", b"1").revision
    client.put("cp/a", b"2")
    client.compact(first)
    assert client.get("cp/a", revision=first) is not None
    with pytest.raises(Compacted) as ei:
        client.get("cp/a", revision=first - 1)
    assert ei.value.compact_revision == first and not ei.value.retriable


def test_oversized_key_is_invalid_argument(client: Client) -> None:
    with pytest.raises(InvalidArgument) as ei:
        client.put(b"k" * 5000, b"v")
    assert "4 KiB" in str(ei.value) and not ei.value.retriable
    assert "[retrying will not help]" in str(ei.value)


def test_follower_first_follows_the_leader_hint(cluster: ProcCluster) -> None:
    leader = cluster.leader()
    followers = [cluster.client[n] for n in NAMES if n != leader]
    with Client([*followers, cluster.client[leader]]) as cl:
        assert cl.put("hint/a", b"1").revision > 0
        assert cl._router.leader == cluster.client[leader]
    # A client that knows only a follower learns the leader's client address from the redirect
    # (the replicated address book) and the other members from Status, so it can fail over.
    with Client(followers[0], timeout=10.0) as cl:
        assert cl.put("hint/b", b"1").revision > 0
        assert cl._router.leader == cluster.client[leader]
        # Members publish their client addresses through the log shortly after start: poll Status
        # until every member's address is in the book (a race with the publications otherwise).
        want = sorted(cluster.client[n] for n in NAMES)
        end = time.monotonic() + 20
        while True:
            cl.status()
            if sorted(cl._router.endpoints) == want or time.monotonic() > end:
                break
            time.sleep(0.1)
        assert sorted(cl._router.endpoints) == want


def test_same_session_seq_applies_once(client: Client) -> None:
    client.put("once/warm", b"x")  # opens the session
    sid = client._session.session_id
    assert sid > 0
    header = client._session.next_header()
    req = kv_pb2.PutRequest(key=b"once/a", value=b"1", header=header)
    r1 = client._invoke("kv", "Put", req, write=True)
    r2 = client._invoke("kv", "Put", req, write=True)
    assert r1.header.revision == r2.header.revision
    kv = client.get("once/a")
    assert kv is not None and kv.version == 1 and kv.mod_revision == r1.header.revision


def test_async_client(cluster: ProcCluster) -> None:
    async def run() -> None:
        async with AsyncClient(",".join(endpoints(cluster))) as c:
            r = await c.put("aio/a", "1")
            assert r.revision > 0
            kv = await c.get("aio/a")
            assert kv is not None and kv.value == b"1"
            await c.put("aio/b", b"2")
            assert [x.key for x in await c.get_prefix("aio/")] == [b"aio/a", b"aio/b"]
            assert len(await c.get_range("aio/", "aio0", limit=1)) == 1
            ok, _ = await c.txn([Compare.value("aio/a") == b"1"], [Op.put("aio/a", b"3")], [])
            assert ok
            assert await c.delete("aio/b") == 1
            assert await c.delete_prefix("aio/") == 1
            st = await c.status()
            assert st.leader_id != 0
            with pytest.raises(InvalidArgument):
                await c.put(b"k" * 5000, b"v")

    asyncio.run(asyncio.wait_for(run(), 30))


def test_kill_leader_writes_continue(cluster: ProcCluster) -> None:
    with Client(endpoints(cluster), timeout=10.0) as cl:
        cl.put("kill/warm", b"x")
        leader = cluster.leader()
        assert cl._router.leader == cluster.client[leader]
        cluster.kill(leader)
        t0 = time.monotonic()
        for i in range(5):
            cl.put(f"kill/{i}", str(i))
        assert time.monotonic() - t0 < 40  # each put is bounded by the 10 s timeout anyway
        assert [kv.value for kv in cl.get_prefix("kill/")] == [b"0", b"1", b"2", b"3", b"4", b"x"]
        assert cl._router.leader != cluster.client[leader]
