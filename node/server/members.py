"""Cluster membership in the running node: the member address book, membership changes, and the
calls between members that keep the book complete.

**Who** is a member is the Raft core's configuration (voters and learners, thesis 4.1). **Where**
each member listens is the replicated address book in the state machine
(:class:`~coterie.node.statemachine.MemberTable`), which every member learns through the log and
which snapshots keep:

- :meth:`Membership.add` (``Cluster.MemberAdd``) proposes the change with the new member's name and
  addresses in its context;
- every member publishes its own name and addresses (``ClusterPeer.Publish`` to the leader's peer
  port, which proposes a ``MemberAttrsRequest``), at start and whenever the book disagrees with its
  flags, the way etcd publishes member attributes.

:class:`Membership` merges, per member id and field by field, the book (committed, authoritative),
then the contexts of membership changes already in the local log but not applied yet, then what this
node was told locally (``--initial-cluster``, or the answer to ``ClusterPeer.Join``). The result is
written into :attr:`NodeInfo.members` (redirect metadata, ``MemberList``, ``Status``) and into the
peer transport's links whenever it changes. A removed id never gets a link or an entry again.

Membership changes go one at a time through the core, return once applied on the leader, and fail
with typed errors (:class:`MemberNotFound`, :class:`MemberExists`, :class:`LearnerNotReady`,
:class:`InvalidMember`; ``NotLeader``, ``ConfChangeInProgress`` from the core).

A member that learns it was removed (its own removal applied, or a peer refusing its traffic or its
publication as removed) calls ``on_removed`` once; the node then shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc  # type: ignore[import-untyped]

from coterie.v1 import cluster_pb2, cluster_pb2_grpc, kv_pb2
from coterie.v1.wire import LEADER_ID_KEY, MEMBER_REMOVED_KEY

from ..raft import ConfChange, ConfChangeType, ConfState, EntryType, NotLeader, Role
from ..raft import confchange as _confchange
from ..statemachine import (
    ErrorResponse,
    MemberAttrs,
    MemberAttrsRequest,
    MemberTable,
    decode_member_context,
    encode_command,
    encode_member_context,
)
from .driver import Driver
from .errors import (
    InvalidMember,
    LearnerNotReady,
    MemberExists,
    MemberNotFound,
    MemberRemoved,
    MembershipError,
)
from .info import MemberInfo, NodeInfo
from .peer import PeerTransport
from .status import error_status

__all__ = ["ClusterPeerService", "Membership", "join_cluster"]

log = logging.getLogger("coterie.members")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _conf_ids(cs: ConfState) -> set[int]:
    return {*cs.voters, *cs.learners}


class Membership:
    """The node's view of the cluster's members, and the membership operations of its leader.

    Runs on the driver's event loop. ``attrs`` is what this node is (its flags); ``local`` what it
    was told about other members outside the log. ``transport`` is optional (in-process tests).

    Invariants, re-established by :meth:`refresh` after every apply and every appended membership
    change: neither :attr:`NodeInfo.members` nor the transport names an id the book lists as
    removed; every other known member with a known peer address has a link; this node describes
    itself with its own flags. Only the leader proposes changes, one at a time (the core refuses a
    second one with ``ConfChangeInProgress`` until the first is applied).
    """

    def __init__(
        self,
        driver: Driver,
        info: NodeInfo,
        *,
        attrs: MemberAttrs | None = None,
        local: dict[int, MemberAttrs] | None = None,
        transport: PeerTransport | None = None,
        promote_max_lag: int = 1000,
        publish_interval: float = 0.5,
    ) -> None:
        self.driver = driver
        self.info = info
        self.id = info.id
        self._attrs = attrs
        self.local = dict(local or {})
        self.transport = transport
        self.promote_max_lag = promote_max_lag
        """A learner is promoted only when its log is at most this many entries behind the leader's
        commit index (and the leader heard from it within an election timeout)."""
        self.publish_interval = publish_interval
        self.on_removed: Callable[[str], None] | None = None
        """Called once, on the loop, when this node learns it was removed (with the reason)."""
        self.removed = False
        self._pending: dict[int, MemberAttrs] = {}
        self._proposing: set[int] = set()
        self._seen: tuple[MemberTable, int, ConfState, int] | None = None
        self._task: asyncio.Task[None] | None = None
        # Membership changes already in the log but not applied (a restart with an unapplied tail).
        applied = driver.sm.applied_index
        for e in driver.raw.raft.log.entries:
            if e.index > applied and e.type == EntryType.CONF_CHANGE:
                self._conf_appended(_confchange.decode(e.data))
        driver.on_conf_appended.append(self._conf_appended)
        driver.on_applied.append(self.refresh)
        if transport is not None:
            transport.on_removed = self._removed_by_peer
        self.refresh()

    # ------------------------------------------------------------------------------ the merged view
    @property
    def attrs(self) -> MemberAttrs:
        """This node's own name and addresses (given, or those of its :class:`NodeInfo`)."""
        if self._attrs is not None:
            return self._attrs
        i = self.info
        return MemberAttrs(i.name, i.peer_addr, i.client_addr)

    @property
    def book(self) -> MemberTable:
        return self.driver.sm.members

    def conf_state(self) -> ConfState:
        """The configuration in the local log (what the core uses, committed or not)."""
        return self.driver.raw.raft.conf

    def attrs_of(self, member_id: int) -> MemberAttrs:
        """The best-known attributes of ``member_id``, field by field: this node's own flags for
        itself, then the book, then pending changes, then what it was told locally."""
        out = MemberAttrs()
        for src in (self.local.get(member_id), self._pending.get(member_id), self.book.get(member_id)):
            if src is not None:
                out = out.merged(src)
        return out.merged(self.attrs) if member_id == self.id else out

    def member_info(self, member_id: int) -> MemberInfo:
        a = self.attrs_of(member_id)
        return MemberInfo(member_id, a.name, a.peer_addr, a.client_addr)

    def known_ids(self) -> set[int]:
        book = self.book
        ids = _conf_ids(self.conf_state()) | {i for i, _ in book.items()}
        ids |= set(self._pending) | set(self.local)
        return {i for i in ids if not book.is_removed(i)}

    def members_pb(self) -> list[cluster_pb2.Member]:
        """The members of the configuration this node knows, by id."""
        cs = self.conf_state()
        learners = set(cs.learners)
        out = []
        for mid in sorted(_conf_ids(cs)):
            m = self.info.member(mid)
            out.append(cluster_pb2.Member(id=mid, name=m.name, peer_addr=m.peer_addr,
                                          client_addr=m.client_addr, is_learner=mid in learners))
        return out

    def refresh(self) -> None:
        """Bring :attr:`NodeInfo.members` and the transport's links in line with the merged view;
        notice this node's own removal. Cheap when nothing changed (run after every apply)."""
        book = self.book
        cs = self.conf_state()
        key = (book, book.version, cs, len(self._pending) + len(self.local))
        seen = self._seen
        if seen is not None and seen[0] is book and seen[1:] == key[1:]:
            return
        self._seen = key
        conf_ids = _conf_ids(cs)
        for mid in [m for m in self._pending
                    if m in book or book.is_removed(m) or (m not in conf_ids and m not in self._proposing)]:
            del self._pending[mid]  # applied, or its entry was truncated
        # This node itself: NodeInfo.member() answers from NodeInfo's own fields.
        members = {mid: self.member_info(mid) for mid in self.known_ids() - {self.id}}
        # NodeInfo.members may have been filled by its creator: keep what the view does not know.
        book_removed = book.removed
        for mid in [m for m in self.info.members if m in book_removed]:
            del self.info.members[mid]
        for mid, m in members.items():
            old = self.info.members.get(mid)
            if old is not None:
                m = MemberInfo(mid, m.name or old.name, m.peer_addr or old.peer_addr,
                               m.client_addr or old.client_addr)
            self.info.members[mid] = m
        if self.transport is not None:
            self.transport.set_peers({mid: m.peer_addr for mid, m in members.items()
                                      if mid != self.id and m.peer_addr})
        if book.is_removed(self.id):
            self._mark_removed("this member's removal was applied")

    def _conf_appended(self, cc: ConfChange) -> None:
        if cc.type != ConfChangeType.REMOVE:
            attrs = decode_member_context(cc.context)
            if attrs.peer_addr or attrs.name:
                self._pending[cc.node_id] = self._pending.get(cc.node_id, MemberAttrs()).merged(attrs)
                self._seen = None
                self.refresh()

    def _mark_removed(self, why: str) -> None:
        if self.removed:
            return
        self.removed = True
        log.warning("member %s was removed from the cluster (%s); it stops participating", self.id, why)
        if self.on_removed is not None:
            self.on_removed(why)

    def _removed_by_peer(self, peer: int) -> None:
        self._mark_removed(f"member {peer} refuses its traffic as a removed member")

    # ------------------------------------------------------------------------------ admin operations
    def _require_leader(self) -> None:
        if self.driver.role != Role.LEADER:
            raise NotLeader(self.driver.leader)

    async def add(self, *, peer_addr: str, name: str = "", client_addr: str = "", learner: bool = False,
                  member_id: int = 0) -> int:
        """Add a member (a learner if ``learner``); returns its id once the change is applied here.
        The leader picks an unused id when ``member_id`` is 0; ids of removed members are never
        reused."""
        self._require_leader()
        if not peer_addr or ":" not in peer_addr:
            raise InvalidMember(f"peer_addr must be HOST:PORT, got {peer_addr!r}")
        if client_addr and ":" not in client_addr:
            raise InvalidMember(f"client_addr must be HOST:PORT, got {client_addr!r}")
        if not name.strip():
            raise InvalidMember(f"name must not be empty, got {name!r} (members are told apart by name: "
                                "--name of `coterie node`, `status`, `member remove NAME`)")
        book = self.book
        # Members, and additions this leader has just proposed (their entry may not be appended yet).
        current = _conf_ids(self.conf_state()) | set(self._pending)
        for mid in current:
            m = self.attrs_of(mid)
            if m.peer_addr == peer_addr:
                raise MemberExists(f"member {mid} already has peer address {peer_addr}")
            if name and m.name == name:
                raise MemberExists(f"member {mid} is already named {name!r}")
        if member_id:
            if member_id in current:
                raise MemberExists(f"member {member_id} already exists")
            if book.is_removed(member_id):
                raise InvalidMember(f"member id {member_id} was removed; ids are never reused")
        else:
            used = current | {i for i, _ in book.items()} | set(book.removed) | set(self.local)
            member_id = max(used, default=0) + 1
        attrs = MemberAttrs(name, peer_addr, client_addr)
        # Reach the new member at once: the core replicates to it as soon as the entry is appended.
        self._pending[member_id] = attrs
        self._proposing.add(member_id)
        self._seen = None
        self.refresh()
        typ = ConfChangeType.ADD_LEARNER if learner else ConfChangeType.ADD_VOTER
        try:
            await self.driver.propose_conf_change(ConfChange(typ, member_id, encode_member_context(attrs)))
        finally:
            self._proposing.discard(member_id)
            self._seen = None
            self.refresh()
        log.info("member added", extra={"member": member_id, "member_name": name, "peer": peer_addr,
                                        "learner": learner})
        return member_id

    async def remove(self, member_id: int) -> None:
        """Remove a voter or learner; returns once the change is applied here. A leader that
        removes itself steps down once the change commits (thesis 4.2.2), then shuts down."""
        self._require_leader()
        if member_id not in _conf_ids(self.conf_state()):
            raise MemberNotFound(f"member {member_id} is not in the cluster")
        await self.driver.propose_conf_change(ConfChange(ConfChangeType.REMOVE, member_id))
        log.info("member removed", extra={"member": member_id})

    async def promote(self, member_id: int) -> None:
        """Make a learner a voter once it has caught up; returns once the change is applied here."""
        self._require_leader()
        cs = self.conf_state()
        if member_id in cs.voters:
            raise MembershipError(f"member {member_id} is already a voter")
        if member_id not in cs.learners:
            raise MemberNotFound(f"member {member_id} is not in the cluster")
        st = self.driver.status()
        pr = st.peers.get(member_id)
        if pr is None:
            raise NotLeader(self.driver.leader)
        timeout_s = self.driver.raw.raft.cfg.election_tick * self.driver.cfg.tick_interval
        contact = self.driver.peer_contact_seconds(member_id)
        if contact < 0 or contact > timeout_s:
            raise LearnerNotReady(
                f"learner {member_id} has not been heard from within an election timeout "
                f"({timeout_s:.1f} s); start it (or wait until it is reachable), then retry")
        lag = st.commit - pr.match
        if pr.match == 0 or lag > self.promote_max_lag:
            raise LearnerNotReady(
                f"learner {member_id} is {lag} entries behind the leader's commit index {st.commit} "
                f"(at most {self.promote_max_lag} allowed); retry once it has caught up")
        await self.driver.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, member_id))
        log.info("member promoted", extra={"member": member_id})

    # ------------------------------------------------------------------------------ publication
    async def publish_local(self, member_id: int, attrs: MemberAttrs) -> None:
        """On the leader: record ``attrs`` for ``member_id`` in the book through the log (nothing
        to do if the book already says so). Raises the state machine's error if refused."""
        self._require_leader()
        if self.book.get(member_id) == attrs:
            return
        req = MemberAttrsRequest(member_id, attrs.name, attrs.peer_addr, attrs.client_addr)
        resp = await self.driver.propose(encode_command(req, timestamp=_now_ms()))
        if isinstance(resp, ErrorResponse):
            raise resp.error

    def start(self) -> None:
        """Start the publisher: a task that keeps this member's own entry in the book right."""
        if self._task is None:
            self._task = asyncio.create_task(self._publisher(), name="member-publisher")

    async def stop(self) -> None:
        t, self._task = self._task, None
        if t is not None:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def _needs_publish(self) -> bool:
        return self.book.get(self.id) != self.attrs

    def _lonely(self) -> bool:
        """Out of the configuration in the local log, or no word from a leader for several election
        timeouts: ask the others whether this member was removed."""
        if self.id not in _conf_ids(self.conf_state()):
            return True
        timeout_s = self.driver.raw.raft.cfg.election_tick * self.driver.cfg.tick_interval
        return self.driver.leader_contact_seconds() > 3 * timeout_s

    async def _publisher(self) -> None:
        rr = 0
        while not self.removed:
            await asyncio.sleep(self.publish_interval)
            d = self.driver
            try:
                need = self._needs_publish()
                if not need and not self._lonely():
                    continue
                st = d.status()
                if need and st.applied < st.commit:
                    continue  # catch up first: the book may already hold what we would publish
                if d.role == Role.LEADER:
                    await self.publish_local(self.id, self.attrs)
                    continue
                targets = [self.attrs_of(d.leader).peer_addr] if d.leader else []
                if not targets or self._lonely():
                    others = sorted(m for m in self.known_ids() if m != self.id)
                    if others:
                        rr = (rr + 1) % len(others)
                        targets.append(self.attrs_of(others[rr]).peer_addr)
                for addr in filter(None, targets):
                    if await self._publish_to(addr):
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed attempt is retried at the next interval
                log.debug("publishing member attributes failed: %s", exc)

    async def _publish_to(self, addr: str) -> bool:
        """Send our attributes to the peer at ``addr``; True once the leader accepted them."""
        req = cluster_pb2.PublishRequest(
            cluster_id=self.info.cluster_id,
            member=cluster_pb2.Member(id=self.id, name=self.attrs.name, peer_addr=self.attrs.peer_addr,
                                      client_addr=self.attrs.client_addr))
        try:
            async with grpc.aio.insecure_channel(addr) as ch:
                await cluster_pb2_grpc.ClusterPeerStub(ch).Publish(req, timeout=2.0)
            return True
        except grpc.aio.AioRpcError as exc:
            md = {k: v for k, v in (exc.trailing_metadata() or ())}
            if MEMBER_REMOVED_KEY in md:
                self._mark_removed(f"member at {addr} says it was removed")
            elif LEADER_ID_KEY not in md:
                log.debug("publish to %s: %s %s", addr, exc.code(), exc.details())
            return False


class ClusterPeerService(cluster_pb2_grpc.ClusterPeerServicer):
    """``coterie.v1.ClusterPeer`` on the peer listener: Publish and Join (see cluster.proto)."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership

    def _header(self) -> kv_pb2.ResponseHeader:
        d = self.m.driver
        return kv_pb2.ResponseHeader(cluster_id=self.m.info.cluster_id, member_id=self.m.id,
                                     revision=d.sm.revision, raft_term=d.raw.raft.term)

    async def _abort(self, context: Any, exc: BaseException) -> None:
        code, details, md = error_status(exc, self.m.info, leader=self.m.driver.leader,
                                         not_leader=grpc.StatusCode.FAILED_PRECONDITION)
        if isinstance(exc, MemberRemoved):
            md = (*md, (MEMBER_REMOVED_KEY, "1"))
        await context.abort(code, details, trailing_metadata=md)

    async def Publish(  # noqa: N802
        self, request: cluster_pb2.PublishRequest, context: Any
    ) -> cluster_pb2.PublishResponse:
        m = self.m
        try:
            if request.cluster_id != m.info.cluster_id:
                raise InvalidMember(
                    f"cluster {request.cluster_id!r} is not this cluster ({m.info.cluster_id!r})")
            mid = request.member.id
            if m.book.is_removed(mid):
                raise MemberRemoved(f"member {mid} was removed from the cluster")
            m._require_leader()
            if mid not in _conf_ids(m.conf_state()):
                raise MemberNotFound(f"member {mid} is not in the cluster")
            mb = request.member
            await m.publish_local(mid, MemberAttrs(mb.name, mb.peer_addr, mb.client_addr))
        except Exception as exc:
            await self._abort(context, exc)
        return cluster_pb2.PublishResponse(header=self._header())

    async def Join(  # noqa: N802
        self, request: cluster_pb2.JoinRequest, context: Any
    ) -> cluster_pb2.JoinResponse:
        m = self.m
        try:
            await m.driver.read_barrier()
            members = m.members_pb()
            me = next((x for x in members if request.peer_addr and x.peer_addr == request.peer_addr), None)
            if me is None:
                me = next((x for x in members if request.name and x.name == request.name), None)
            if me is None:
                raise MemberNotFound(
                    f"no member with peer address {request.peer_addr!r} or name {request.name!r}: "
                    "add it with MemberAdd first")
        except Exception as exc:
            await self._abort(context, exc)
        return cluster_pb2.JoinResponse(header=self._header(), member=me, members=members)


async def join_cluster(name: str, peer_addr: str, peers: list[str], *, timeout: float = 30.0,
                       ) -> cluster_pb2.JoinResponse:
    """Ask the members at ``peers`` (peer addresses) who this node is in the cluster it was added
    to; retries every member in turn until ``timeout``. Raises ``TimeoutError`` with the last
    answer if none could say."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no member answered"
    delay = 0.1
    while True:
        for addr in peers:
            try:
                async with grpc.aio.insecure_channel(addr) as ch:
                    resp: cluster_pb2.JoinResponse = await cluster_pb2_grpc.ClusterPeerStub(ch).Join(
                        cluster_pb2.JoinRequest(name=name, peer_addr=peer_addr), timeout=2.0)
                    return resp
            except grpc.aio.AioRpcError as exc:
                last = f"{addr}: {exc.code().name} {exc.details()}"
        if loop.time() + delay > deadline:
            raise TimeoutError(f"could not join the cluster within {timeout:.0f} s ({last})")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
