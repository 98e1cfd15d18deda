"""Cluster membership and the member address book, with real ``coterie node`` processes on loopback.

- The address book: every member's client address reaches every member through the log, so a
  follower's redirect names the leader's client address, a client given only a follower endpoint
  succeeds, and MemberList shows every client address, also from a node restarted alone (no quorum,
  so from its own disk) after a snapshot, and after all nodes restart.
- Membership changes: a fourth node added as a learner joins with ``--initial-cluster-state
  existing``, catches up through a snapshot, is promoted; another member is removed and its process
  stops by itself; the cluster keeps serving and every member has the data. The documented errors.

Every wait is a bounded poll; every process is stopped (SIGTERM, then SIGKILL) when a test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
import msgpack
import pytest

from coterie.client import Client, FailedPrecondition
from coterie.node.raft import (
    ConfChange,
    ConfChangeInProgress,
    ConfChangeType,
    ConfState,
    RaftConfig,
    RawNode,
    Role,
)
from coterie.node.server.config import DriverConfig
from coterie.node.server.driver import Driver
from coterie.node.server.errors import LearnerNotReady, MemberNotFound
from coterie.node.server.info import NodeInfo
from coterie.node.server.members import ClusterPeerService, Membership, join_cluster
from coterie.node.server.status import error_status
from coterie.node.statemachine import (
    ErrorResponse,
    InvalidArgument,
    MemberAttrs,
    MemberAttrsRequest,
    MemberTable,
    NoopResponse,
    StateMachine,
    decode_command,
    decode_member_context,
    encode_command,
    encode_member_context,
)
from coterie.node.storage import DiskStorage
from coterie.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2, kv_pb2_grpc
from coterie.v1.wire import MEMBER_REMOVED_KEY as REMOVED_KEY
from tests.proc_cluster import free_ports
from tests.test_driver import Cluster

SC = grpc.StatusCode
T = 5.0  # seconds per RPC
_T = TypeVar("_T")


def wait_for(what: str, probe: Callable[[], _T | None], timeout: float = 30.0, every: float = 0.05) -> _T:
    """Poll ``probe`` until it returns something other than None/False; fail naming ``what``."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            got = probe()
        except grpc.RpcError as exc:
            got, last = None, exc
        if got is not None and got is not False:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


class Procs:
    """Up to five named nodes (``n1``..``n5``) on free loopback ports; ``n1``-``n3`` bootstrap."""

    NAMES = ("n1", "n2", "n3", "n4", "n5")

    def __init__(self, root: Path, extra: tuple[str, ...] = ()) -> None:
        ports = free_ports(2 * len(self.NAMES))
        self.root = root
        self.extra = extra
        self.client = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(self.NAMES)}
        self.peer = {n: f"127.0.0.1:{ports[len(self.NAMES) + i]}" for i, n in enumerate(self.NAMES)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def initial(self, names: tuple[str, ...]) -> str:
        return ",".join(f"{n}={self.peer[n]}" for n in names)

    def start(self, name: str, *, initial: tuple[str, ...] = ("n1", "n2", "n3"), state: str = "new") -> None:
        cmd = [sys.executable, "-m", "coterie.client.cli", "node", "--name", name,
               "--data-dir", str(self.root / name), "--client-addr", self.client[name],
               "--peer-addr", self.peer[name], "--initial-cluster", self.initial(initial),
               "--initial-cluster-state", state, "--tick-ms", "20", "--log-level", "info", *self.extra]
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=log)

    def stop(self, name: str) -> None:
        p = self.procs.pop(name)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    # ---------------------------------------------------------------- gRPC helpers
    def call(self, name: str, service: str, method: str, request: Any, timeout: float = T) -> Any:
        with grpc.insecure_channel(self.client[name]) as ch:
            stub: Any = (cluster_pb2_grpc.ClusterStub(ch) if service == "cluster" else kv_pb2_grpc.KVStub(ch))
            return getattr(stub, method)(request, timeout=timeout)

    def status(self, name: str) -> cluster_pb2.StatusResponse:
        req = cluster_pb2.StatusRequest()
        st: cluster_pb2.StatusResponse = self.call(name, "cluster", "Status", req, timeout=2)
        return st

    def members(self, name: str, linearizable: bool = False) -> list[cluster_pb2.Member]:
        r = self.call(name, "cluster", "MemberList", cluster_pb2.MemberListRequest(linearizable=linearizable))
        return list(r.members)

    def leader(self, among: tuple[str, ...] | None = None, timeout: float = 30.0) -> str:
        names = among or tuple(self.procs)

        def probe() -> str | None:
            for n in names:
                try:
                    if self.status(n).role == cluster_pb2.ROLE_LEADER:
                        return n
                except grpc.RpcError:
                    pass
            return None

        return wait_for("a leader", probe, timeout)

    def admin(self, method: str, request: Any, timeout: float = 30.0) -> Any:
        """A Cluster admin call on the leader; asked again (of the new leader) while the answer is a
        refusal by a non-leader, so a leadership change under load does not fail a test."""
        end = time.monotonic() + timeout
        while True:
            try:
                return self.call(self.leader(), "cluster", method, request)
            except grpc.RpcError as exc:
                err: Any = exc
                md = dict(err.trailing_metadata() or ())
                refused = err.code() == SC.FAILED_PRECONDITION and "coterie-leader-id" in md
                if not (refused or err.code() == SC.UNAVAILABLE) or time.monotonic() > end:
                    raise
            time.sleep(0.1)

    def name_of(self, member_id: int) -> str:
        return next(n for n in self.procs if self.status(n).member_id == member_id)

    def book_complete(self, name: str, names: tuple[str, ...]) -> bool:
        """``name`` lists exactly ``names`` as members, each with its own name and addresses."""
        got = {(m.name, m.peer_addr, m.client_addr) for m in self.members(name)}
        return got == {(n, self.peer[n], self.client[n]) for n in names}


def expect_rpc_error(code: Any, fn: Callable[[], Any]) -> Any:
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    err: Any = ei.value
    assert err.code() == code, (err.code(), err.details())
    return err


def serializable_count(p: Procs, name: str, prefix: bytes) -> int:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    r = p.call(name, "kv", "Range", kv_pb2.RangeRequest(key=prefix, range_end=end, count_only=True,
                                                         serializable=True))
    return int(r.count)


def snapshot_files(p: Procs, name: str) -> list[Path]:
    return sorted((p.root / name / "raft" / "snap").glob("*.snap"))


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    # Election timeouts of 0.6-1.2 s (30 ticks of 20 ms): spurious elections stay rare on a loaded machine.
    p = Procs(tmp_path, extra=("--snapshot-entries", "50", "--snapshot-keep", "10", "--election-ticks", "30"))
    try:
        yield p
    finally:
        p.stop_all()


FIRST = ("n1", "n2", "n3")


def test_address_book_redirects_restarts_and_snapshots(procs: Procs) -> None:
    p = procs
    for n in FIRST:
        p.start(n)
    leader = p.leader()
    # Every member learns every member's client address through the log.
    for n in FIRST:
        wait_for(f"{n}'s complete address book", lambda n=n: p.book_complete(n, FIRST))  # type: ignore[misc]
    follower = next(n for n in FIRST if n != leader)
    # A follower refuses a write naming the leader's id and client address.
    err = expect_rpc_error(SC.UNAVAILABLE, lambda: p.call(follower, "kv", "Put",
                                                          kv_pb2.PutRequest(key=b"x", value=b"1")))
    md = dict(err.trailing_metadata())
    assert md["coterie-leader-addr"] == p.client[p.name_of(int(md["coterie-leader-id"]))]
    # So a client that knows only the follower reaches the leader.
    with Client([p.client[follower]], timeout=20) as c:
        for i in range(80):
            c.put(f"book/{i:03d}", b"v%d" % i)
        assert len(c.get_prefix("book/")) == 80
        assert {m.client_addr for m in c.member_list()} == {p.client[n] for n in FIRST}
    # leader_contact_seconds is measured on followers; the leader reports contact with each peer.
    st = wait_for("a follower's leader contact", lambda: (
        s if (s := p.status(follower)).leader_contact_seconds >= 0 else None))
    assert st.role == cluster_pb2.ROLE_FOLLOWER and st.leader_contact_seconds < 60
    assert {(m.name, m.client_addr) for m in st.members} == {(n, p.client[n]) for n in FIRST}
    lst = p.status(leader)
    if lst.role == cluster_pb2.ROLE_LEADER:
        assert lst.leader_contact_seconds == 0
        assert {pr.id for pr in lst.progress} == {p.status(n).member_id for n in FIRST}
        assert all(pr.last_contact_seconds >= 0 for pr in lst.progress)
    # 80 writes with --snapshot-entries 50: every member has taken a snapshot that covers the
    # entries that published the addresses.
    for n in FIRST:
        wait_for(f"a snapshot on {n}", lambda n=n: snapshot_files(p, n))  # type: ignore[misc]

    # Restart every node, then bring one back alone: it has no quorum, so what it lists comes from its
    # own disk (the addresses were published before the snapshot, so from the snapshot).
    p.stop_all()
    p.start("n1")
    wait_for("n1 answering", lambda: p.status("n1"))
    wait_for("n1's address book from disk", lambda: p.book_complete("n1", FIRST), timeout=15)
    assert p.status("n1").role != cluster_pb2.ROLE_LEADER
    for n in ("n2", "n3"):
        p.start(n)
    p.leader()
    for n in FIRST:
        wait_for(f"{n}'s address book after the restart", lambda n=n: p.book_complete(n, FIRST))  # type: ignore[misc]
    with Client([p.client["n2"]], timeout=20) as c:
        assert len(c.get_prefix("book/")) == 80
        c.put("book/after", b"restart")


def test_add_learner_join_promote_remove_and_errors(procs: Procs) -> None:
    p = procs
    for n in FIRST:
        p.start(n)
    p.leader()
    endpoints = [p.client[n] for n in FIRST]
    with Client(endpoints, timeout=20) as c:
        for i in range(120):  # --snapshot-entries 50 --snapshot-keep 10: the log is compacted
            c.put(f"data/{i:03d}", b"v%d" % i)
        # Add n4 as a learner; the leader picks its id.
        n4 = c.member_add(p.peer["n4"], name="n4", client_addr=p.client["n4"], learner=True)
        assert (n4.name, n4.peer_addr, n4.client_addr) == ("n4", p.peer["n4"], p.client["n4"])
        assert n4.is_learner
        assert n4.id == 4
        members = c.member_list()
        assert [(m.id, m.is_learner) for m in members] == [(1, False), (2, False), (3, False), (4, True)]
        # A learner that never started is not promoted.
        with pytest.raises(FailedPrecondition, match="learner 4"):
            c.member_promote(4)

    # Errors, straight from the gRPC statuses.
    add = cluster_pb2.MemberAddRequest
    for req, code in [
        (add(peer_addr=p.peer["n4"], name="n5"), SC.ALREADY_EXISTS),  # peer address in use
        (add(peer_addr=p.peer["n5"], name="n4"), SC.ALREADY_EXISTS),  # name in use
        (add(peer_addr=p.peer["n5"], name="n5", id=2), SC.ALREADY_EXISTS),  # id in use
        (add(peer_addr="no-port"), SC.INVALID_ARGUMENT),
        (add(peer_addr=p.peer["n5"], name=""), SC.INVALID_ARGUMENT),  # no name
        (add(peer_addr=p.peer["n5"], name="  "), SC.INVALID_ARGUMENT),
    ]:
        expect_rpc_error(code, lambda req=req: p.admin("MemberAdd", req))  # type: ignore[misc]
    expect_rpc_error(SC.NOT_FOUND, lambda: p.admin("MemberRemove", cluster_pb2.MemberRemoveRequest(id=99)))
    expect_rpc_error(SC.NOT_FOUND, lambda: p.admin("MemberPromote", cluster_pb2.MemberPromoteRequest(id=99)))
    err = expect_rpc_error(SC.FAILED_PRECONDITION,
                           lambda: p.admin("MemberPromote", cluster_pb2.MemberPromoteRequest(id=1)))
    assert "already a voter" in err.details()
    # A follower refuses an admin call, naming the leader and its client address.
    leader = p.leader()
    follower = next(n for n in FIRST if n != leader)
    err = expect_rpc_error(SC.FAILED_PRECONDITION, lambda: p.call(
        follower, "cluster", "MemberRemove", cluster_pb2.MemberRemoveRequest(id=4)))
    md = dict(err.trailing_metadata())
    assert md["coterie-leader-addr"] == p.client[p.name_of(int(md["coterie-leader-id"]))]

    # n4 joins: it asks the members for its id, and catches up through a snapshot (the entries it
    # needs were compacted away on every member).
    p.start("n4", initial=("n1", "n2", "n3", "n4"), state="existing")
    commit = p.status(leader).commit_index
    st4 = wait_for("n4 to catch up", lambda: (s if (s := p.status("n4")).applied_index >= commit else None))
    assert st4.member_id == 4 and st4.role == cluster_pb2.ROLE_FOLLOWER
    assert st4.first_index > 1, "n4 should have installed a snapshot"
    assert serializable_count(p, "n4", b"data/") == 120
    wait_for("n4's complete address book", lambda: p.book_complete("n4", ("n1", "n2", "n3", "n4")))

    with Client([p.client["n4"]], timeout=20) as c:  # a client given only the learner's endpoint
        members = wait_for("n4 promoted", lambda: _promote(c, 4), timeout=30)
        assert [(m.id, m.is_learner) for m in members] == [(1, False), (2, False), (3, False), (4, False)]
        # Remove a member other than the leader and n4; its process stops by itself.
        leader = p.leader()
        victim = next(n for n in FIRST if n != leader)
        victim_id = p.status(victim).member_id
        after = c.member_remove(victim_id)
        assert victim_id not in {m.id for m in after} and len(after) == 3
        wait_for(f"removed {victim} to exit", lambda: p.procs[victim].poll() is not None, timeout=30)
        assert "removed from the cluster" in p.log(victim)
        p.procs.pop(victim)
        expect_rpc_error(SC.NOT_FOUND,
                         lambda: p.admin("MemberRemove", cluster_pb2.MemberRemoveRequest(id=victim_id)))
        # The cluster keeps serving, and every remaining member has every write.
        for i in range(120, 150):
            c.put(f"data/{i:03d}", b"v%d" % i)
        rest = tuple(n for n in ("n1", "n2", "n3", "n4") if n != victim)
        for n in rest:
            wait_for(f"all data on {n}", lambda n=n: serializable_count(p, n, b"data/") == 150)  # type: ignore[misc]
            wait_for(f"{n}'s address book", lambda n=n: p.book_complete(n, rest))  # type: ignore[misc]

        # Remove the leader itself: it steps down, another member takes over, the old one exits.
        old = p.leader()
        old_id = p.status(old).member_id
        after = c.member_remove(old_id)
        assert old_id not in {m.id for m in after} and len(after) == 2
        wait_for(f"removed leader {old} to exit", lambda: p.procs[old].poll() is not None, timeout=30)
        p.procs.pop(old)
        survivors = tuple(n for n in rest if n != old)
        p.leader(among=survivors)
        c.put("data/150", b"after the leader left")
        for n in survivors:
            wait_for(f"the last write on {n}", lambda n=n: serializable_count(p, n, b"data/") == 151)  # type: ignore[misc]

    # Restart the survivors (a bootstrap member with its original flags, the joined n4 from its
    # meta.json), then add n5 straight as a voter: membership, addresses and data all persist.
    assert "n4" in survivors
    for n in survivors:
        p.stop(n)
    for n in survivors:
        if n == "n4":
            p.start(n, initial=("n1", "n2", "n3", "n4"), state="existing")
        else:
            p.start(n)
    p.leader(among=survivors)
    for n in survivors:
        wait_for(f"{n}'s address book after the restart", lambda n=n: p.book_complete(n, survivors))  # type: ignore[misc]
    with Client([p.client[n] for n in survivors], timeout=20) as c:
        n5 = c.member_add(p.peer["n5"], name="n5", client_addr=p.client["n5"])
        assert n5.id == 5 and not n5.is_learner  # ids of removed members are not reused
        p.start("n5", initial=(*survivors, "n5"), state="existing")
        final = (*survivors, "n5")
        wait_for("n5 to catch up", lambda: serializable_count(p, "n5", b"data/") == 151)
        c.put("data/151", b"with n5")
        for n in final:
            wait_for(f"the last write on {n}", lambda n=n: serializable_count(p, n, b"data/") == 152)  # type: ignore[misc]
            wait_for(f"{n}'s address book", lambda n=n: p.book_complete(n, final))  # type: ignore[misc]


def _promote(c: Client, member_id: int) -> Any:
    try:
        return c.member_promote(member_id)
    except FailedPrecondition as exc:  # not caught up yet: retried by wait_for
        if "learner" not in str(exc):
            raise
        return None


# ==================================================================================== in-process units



def test_member_table_is_replicated_state_kept_by_snapshots() -> None:
    sm = StateMachine()
    a1 = MemberAttrs("n1", "h:1", "")
    sm.apply_membership(1, 1, removed=False, context=b"")  # a bootstrap entry: no attributes
    sm.apply_membership(2, 2, removed=False, context=encode_member_context(MemberAttrs("n2", "h:2", "c:2")))
    r = sm.apply(3, encode_command(MemberAttrsRequest(1, a1.name, a1.peer_addr, "c:1"), timestamp=5))
    assert isinstance(r, NoopResponse)
    assert sm.members.get(1) == MemberAttrs("n1", "h:1", "c:1")
    sm.apply_membership(4, 2, removed=False, context=b"")  # a promotion keeps the attributes
    assert sm.members.get(2) == MemberAttrs("n2", "h:2", "c:2")
    sm.apply_membership(5, 2, removed=True)
    assert 2 not in sm.members and sm.members.is_removed(2)
    r = sm.apply(6, encode_command(MemberAttrsRequest(2, "n2", "h:2", "c:9")))
    assert isinstance(r, ErrorResponse) and "removed" in str(r.error)
    assert sm.revision == 1 and sm.applied_index == 6  # membership leaves the key-value store alone
    # Snapshots carry the table; equal states give equal bytes; an older snapshot has none.
    snap = sm.snapshot()
    restored = StateMachine.from_snapshot(snap)
    assert restored.members == sm.members and restored.snapshot() == snap
    old = msgpack.unpackb(snap, raw=False)[:6]
    old[1] = 1  # a version-1 snapshot: no members (and no leases)
    assert len(StateMachine.from_snapshot(msgpack.packb(old, use_bin_type=True)).members) == 0
    with pytest.raises(InvalidArgument):
        MemberTable.load([[[1, "n1", "h:1"]], []])
    # Commands and contexts round-trip; a malformed context is read as "no attributes".
    req = MemberAttrsRequest(7, "n7", "h:7", "c:7")
    assert decode_command(encode_command(req)).request == req
    assert decode_member_context(b"\xc1garbage") == MemberAttrs()
    assert decode_member_context(encode_member_context(a1)) == a1


class _NoPeers:
    def send(self, messages: Any) -> None:
        pass


def test_membership_changes_in_process(tmp_path: Path) -> None:
    """Three drivers in one loop: add / promote / remove through Membership, the book on every
    member, one change at a time, and the contact times Status reports."""

    async def main() -> None:
        c = Cluster(tmp_path)
        drivers = {i: c.start(i) for i in (1, 2, 3)}
        infos = {i: NodeInfo(i, f"n{i}", "units", client_addr=f"c:{i}", peer_addr=f"p:{i}") for i in drivers}
        ms = {i: Membership(drivers[i], infos[i]) for i in drivers}
        try:
            ld = await c.leader()
            lid = ld.raw.id
            m = ms[lid]
            for i in drivers:  # what each member's publisher would send to the leader
                await m.publish_local(i, MemberAttrs(f"n{i}", f"p:{i}", f"c:{i}"))
            new = await m.add(peer_addr="p:4", name="n4", client_addr="c:4", learner=True)
            assert new == 4 and 4 in ld.status().conf_state.learners
            for i, d in drivers.items():  # every member applies the change and the addresses

                def applied(d: Driver = d) -> bool:
                    return d.sm.members.get(4) == MemberAttrs("n4", "p:4", "c:4")

                def knows_leader(i: int = i) -> bool:
                    return infos[i].member(lid).client_addr == f"c:{lid}"

                await _until(applied)
                await _until(knows_leader)
            with pytest.raises(LearnerNotReady, match="not been heard from"):
                await m.promote(4)
            # Once it runs it is heard from; a learner further behind than allowed is refused.
            drivers[4] = c.start(4)
            await _until(lambda: ld.status().peers[4].match > 0)
            m.promote_max_lag = -1
            with pytest.raises(LearnerNotReady, match="entries behind"):
                await m.promote(4)
            m.promote_max_lag = 1000
            await c.stop(4)
            del drivers[4]
            with pytest.raises(MemberNotFound):
                await m.remove(9)
            # One change at a time: with the followers cut off the first cannot commit.
            followers = [i for i in drivers if i != lid]
            c.net.down.update(followers)
            first = asyncio.ensure_future(m.add(peer_addr="p:5", name="n5"))
            await asyncio.sleep(0.05)
            with pytest.raises(ConfChangeInProgress) as ei:
                await m.add(peer_addr="p:6", name="n6")
            code, _details, _md = error_status(ei.value, infos[lid])
            assert code == SC.FAILED_PRECONDITION
            c.net.down.clear()
            with contextlib.suppress(Exception):  # committed, or lost with a leadership change
                await asyncio.wait_for(first, 10)
            ld = await c.leader()
            m = ms[ld.raw.id]
            await _until(lambda: all(d.sm.applied_index >= ld.sm.applied_index for d in drivers.values()))
            await m.remove(4)
            assert 4 not in ld.status().conf_state.learners
            await _until(lambda: all(d.sm.members.is_removed(4) for d in drivers.values()))
            assert all(4 not in info.members for info in infos.values())
            # Contact times: a follower heard from the leader recently; the leader reports 0 for itself.
            f = next(d for d in drivers.values() if d is not ld)
            await _until(lambda: 0 <= f.leader_contact_seconds() < 60)
            assert ld.leader_contact_seconds() == 0.0 and ld.peer_contact_seconds(ld.raw.id) == 0.0
            assert 0 <= ld.peer_contact_seconds(f.raw.id) < 60
        finally:
            for i in list(c.tasks):
                await asyncio.wait_for(c.stop(i), 10)

    asyncio.run(asyncio.wait_for(main(), 60))


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def test_cluster_peer_publish_and_join(tmp_path: Path) -> None:
    """ClusterPeer on a one-node cluster over real gRPC: Join finds a member by peer address or name,
    and fails NOT_FOUND for a node never added; Publish checks cluster, membership and removal."""

    async def main() -> None:
        store = DiskStorage.open(tmp_path / "n1")
        st = store.initial_state()
        raw = RawNode(RaftConfig(id=1), random.Random(1), hard_state=st.hard_state, snapshot=st.snapshot,
                      entries=st.entries, conf_state=ConfState((1,)))
        d = Driver(raw, store, StateMachine(), _NoPeers(), DriverConfig(tick_interval=0.01))
        task = asyncio.create_task(d.run())
        info = NodeInfo(1, "n1", "units", client_addr="c:1", peer_addr="p:1")
        m = Membership(d, info)
        server = grpc.aio.server()
        cluster_pb2_grpc.add_ClusterPeerServicer_to_server(ClusterPeerService(m), server)
        addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        try:
            await _until(lambda: d.role == Role.LEADER)
            await m.add(peer_addr="p:2", name="n2", client_addr="c:2", learner=True)
            j = await join_cluster("n2", "p:2", [addr], timeout=5)
            assert (j.header.cluster_id, j.member.id, j.member.is_learner) == ("units", 2, True)
            assert {x.id for x in j.members} == {1, 2}
            j = await join_cluster("n2", "elsewhere:1", [addr], timeout=5)  # found by name
            assert j.member.id == 2
            with pytest.raises(TimeoutError, match="NOT_FOUND"):
                await join_cluster("n9", "p:9", [addr], timeout=0.5)
            async with grpc.aio.insecure_channel(addr) as ch:
                stub = cluster_pb2_grpc.ClusterPeerStub(ch)

                async def publish(cluster: str, mid: int, client: str) -> Any:
                    mb = cluster_pb2.Member(id=mid, name=f"n{mid}", peer_addr=f"p:{mid}", client_addr=client)
                    req = cluster_pb2.PublishRequest(cluster_id=cluster, member=mb)
                    return await stub.Publish(req, timeout=T)

                await publish("units", 2, "c:2-moved")
                assert d.sm.members.get(2) == MemberAttrs("n2", "p:2", "c:2-moved")
                assert info.member(2).client_addr == "c:2-moved"
                for args, code in [(("other", 2, "x:1"), SC.INVALID_ARGUMENT),
                                   (("units", 7, "x:1"), SC.NOT_FOUND)]:
                    with pytest.raises(grpc.aio.AioRpcError) as ei:
                        await publish(*args)
                    assert ei.value.code() == code
                await d.propose_conf_change(ConfChange(ConfChangeType.REMOVE, 2))
                with pytest.raises(grpc.aio.AioRpcError) as ei:
                    await publish("units", 2, "c:2")
                assert ei.value.code() == SC.FAILED_PRECONDITION
                assert REMOVED_KEY in dict(ei.value.trailing_metadata() or ())
        finally:
            await server.stop(None)
            d.stop()
            await asyncio.wait_for(task, 10)
            store.close()

    asyncio.run(asyncio.wait_for(main(), 60))
