"""The driver: the one asyncio task that owns a node's Raft core, its WAL and its state machine.

Nothing else touches the core. gRPC handlers and the peer transport hand work to the driver through
:meth:`Driver.deliver`, :meth:`Driver.propose` and :meth:`Driver.read_barrier`, which queue it and
(for the latter two) await a future. The loop, in order (thesis 10.2.1, etcd raft's Ready contract):

1. tick the core when a tick interval has passed; feed it every queued message and request;
2. take a Ready; send ``messages`` at once; apply the committed entries that precede the Ready's
   new entries (they are durable here already, saved by earlier Readies) and answer their
   proposals, so a response never waits for the next batch's fsync;
3. persist snapshot, entries and hard state with one ``fdatasync`` in a worker thread (a Ready that
   only moves the commit index is one small unsynced write, done inline). The event
   loop keeps serving handlers meanwhile, and the driver keeps running the core (:meth:`Driver._while_io`):
   it ticks on schedule, steps peer messages, takes proposals and reads, and sends at once what the
   core may send before persistence (``RawNode.take_messages``: heartbeats, appends, ...), so a slow
   fsync never silences the leader's heartbeats or a follower's election clock. What must wait
   (votes, append acknowledgements, read states, new entries and committed ones) waits for the next
   Ready. Membership proposals stay queued until the save returns, so the transport learns of a
   new member (``on_conf_appended``) before anything is sent to it;
4. send ``persisted_messages``; apply the snapshot and the remaining committed entries (on a
   follower, entries can commit in the Ready that brings them), resolving the futures of the
   proposals they answer; release ReadIndex reads once applied;
5. ``advance()``; take a state machine snapshot and compact when enough entries were applied (its
   file is written and synced in a worker thread while the core keeps running, as in step 3).

Membership changes (:meth:`Driver.propose_conf_change`) travel the same way. The entry is applied to
the state machine's member address book (``StateMachine.apply_membership``) when committed, and
``on_conf_appended`` callbacks see it as soon as it is in the local log, which is when the core
starts using the new configuration (thesis 4.1), so the transport can reach a new member at once.

The driver also records when it last heard from each peer and from the leader (loop time), for
``Status``: :meth:`Driver.leader_contact_seconds` and :meth:`Driver.peer_contact_seconds`.

Metrics (:mod:`.metrics`). The driver always keeps a few plain integer counters (proposals answered
and failed, leader changes seen, failed reads); they cost an integer add. Latency histograms
(:attr:`Driver.fsync_seconds`, :attr:`Driver.apply_seconds`, :attr:`Driver.read_index_seconds`) are
``None`` unless the node serves metrics, and then cost a clock read and an ``observe`` per synced
save, per applied batch and per read.

Leases. The driver owns the node's :class:`~.lease_timer.LeaseTimer` (:attr:`Driver.leases`) and
reads the node's lease clock (:attr:`Driver.clock`, a :class:`~.clock.NodeClock` the fault-injection
service can skew). Every node, leader or not, feeds the state machine's lease updates
(``sm.take_lease_updates()``) to the timer with ``clock.now()`` right after each applied entry, after
a snapshot restore, and once at start (a state machine restored from a snapshot on disk). When the
node becomes leader it calls ``became_leader``. At each tick (step 1; also during a save, step 3), a
leader that has applied an entry of its own term (so every earlier keep-alive, since entries apply in
log order) queues ``timer.expired(now)`` and ``timer.checkpoints(now)`` as internal proposals (no
session, no caller waiting) on the normal proposal path, i.e. the inbox. That is O(leases) per tick
and sends nothing itself: the tick's heartbeats leave with the same Ready as those appends, never
after them. A lost internal proposal is harmless: the timer proposes an expiry again after its
``retry``, and the next checkpoint replaces a lost one.

A proposal's future resolves with the state machine's response when its entry (same index *and*
term) is applied. If leadership is lost first, it fails with :class:`OutcomeUnknown`: the entry may
still commit, so only an idempotent (session-numbered) retry is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    NotLeader,
    ProposalDropped,
    RaftError,
    RawNode,
    Ready,
    Role,
    Snapshot,
    Status,
)
from ..raft import confchange as _confchange
from ..statemachine import Response, StateMachine, encode_command
from ..storage import DiskStorage
from .clock import NodeClock
from .config import DriverConfig
from .lease_timer import LeaseTimer

log = logging.getLogger("coterie.driver")
_T = TypeVar("_T")


class DriverError(RaftError):
    """Base class of the driver's own outcomes."""


class Overloaded(DriverError):
    """Too many proposals are waiting; the caller should back off (RESOURCE_EXHAUSTED)."""


class OutcomeUnknown(DriverError):
    """Leadership was lost after the proposal was appended: it may or may not commit."""


class ReadTimeout(DriverError):
    """No read index arrived in time (leader lost or unreachable); safe to retry."""


class Stopped(DriverError):
    """The driver is shutting down."""


class Observer(Protocol):
    """A latency histogram (``prometheus_client.Histogram`` is one): seconds per observation."""

    def observe(self, amount: float) -> None: ...


class Transport(Protocol):
    """Sends Raft messages to peers. Must not block; delivery is best effort."""

    def send(self, messages: Sequence[Message]) -> None: ...


@dataclass(slots=True)
class _Proposal:
    term: int
    future: asyncio.Future[Response]


class Driver:
    """Owns ``raw`` (the core), ``storage`` (its WAL) and ``sm`` (the replicated state machine)."""

    def __init__(
        self,
        raw: RawNode,
        storage: DiskStorage,
        sm: StateMachine,
        transport: Transport,
        config: DriverConfig | None = None,
        *,
        on_conf_change: Callable[[ConfChange], None] | None = None,
        clock: NodeClock | None = None,
    ) -> None:
        self.raw = raw
        self.storage = storage
        self.sm = sm
        self.transport = transport
        self.cfg = config or DriverConfig()
        self.cfg.validate()
        self.on_conf_change = on_conf_change
        self._inbox: deque[tuple[str, Any, Any]] = deque()
        self._wake = asyncio.Event()
        self._proposals: dict[int, _Proposal] = {}
        self._queued_proposals = 0
        self._reads: dict[bytes, tuple[float, asyncio.Future[int]]] = {}
        self._read_waits: list[tuple[int, asyncio.Future[int]]] = []
        self._read_seq = 0
        self._stopping = False
        self._last_snapshot = sm.applied_index
        self.role = Role.FOLLOWER
        self.leader = 0
        self.on_conf_appended: list[Callable[[ConfChange], None]] = []
        """Callbacks run (on the loop) for each membership change written to the local log, before
        the Ready's messages are sent; it may still be truncated later. Must be quick, not raise."""
        self._next_tick = 0.0
        """Loop time of the next ``raw.tick()``; shared by the loop and :meth:`_while_io`."""
        self._held: list[tuple[str, Any, Any]] = []
        """Membership proposals held back while a save is in flight; queued again right after it."""
        self._last_heard: dict[int, float] = {}
        self._leader_contact: float | None = None
        self.on_applied: list[Callable[[], None]] = []
        """Callbacks run (on the loop, in order) after a Ready's snapshot or committed entries were
        applied, i.e. whenever ``sm`` may have advanced (watches subscribe here). They must be quick,
        must not raise, and may remove themselves from the list."""
        self.clock = clock if clock is not None else NodeClock()
        """The node's lease clock (seconds, monotonic unless skewed on purpose)."""
        self.leases = LeaseTimer(checkpoint_interval=self.cfg.lease_checkpoint_interval,
                                 retry=self.cfg.lease_expire_retry)
        """This node's lease countdown (see the module docstring)."""
        self._applied_term = 0
        """Term of the last entry applied (or of the restored snapshot)."""
        self.internal_proposals = 0
        """Lease expiries and checkpoints this node proposed (as leader), for tests and metrics."""
        self.proposals_ok = 0
        """Calls of :meth:`propose` answered with the state machine's response (committed, applied)."""
        self.proposals_failed = 0
        """Calls of :meth:`propose` that raised (refused, overloaded, outcome unknown, stopped)."""
        self.leader_changes = 0
        """Times this node saw a new leader (a leader id other than the last one it knew, 0 aside)."""
        self._last_leader = 0
        self.read_index_failures = 0
        """Calls of :meth:`read_barrier` that raised (timeout, leadership lost, stopped)."""
        self.fsync_seconds: Observer | None = None
        """If set: seconds per WAL save with fsync (the write and the ``fdatasync``, in the thread)."""
        self.apply_seconds: Observer | None = None
        """If set: seconds to apply one batch of committed entries to the state machine."""
        self.read_index_seconds: Observer | None = None
        """If set: seconds from :meth:`read_barrier`'s call to its answer (ReadIndex and the wait for
        the apply), for reads that succeed."""
        self._feed_leases()  # a state machine restored from a snapshot at start-up

    # ---------------------------------------------------------------- API for handlers
    def deliver(self, m: Message) -> None:
        """Queue a message from a peer (called by the transport)."""
        self._inbox.append(("msg", m, None))
        self._wake.set()

    async def propose(self, data: bytes) -> Response:
        """Replicate ``data`` and return the state machine's response once it is applied here.

        Raises :class:`NotLeader` (with the leader hint) or another ``ProposalDropped`` if refused,
        :class:`Overloaded` if too many proposals wait, :class:`OutcomeUnknown` if leadership was lost
        before the entry was applied.
        """
        return await self.propose_nowait(data)

    def propose_nowait(self, data: bytes) -> asyncio.Future[Response]:
        """:meth:`propose` without the coroutine: queue ``data`` and return the future of its response
        (refusals are raised at once). Proposals queued in one turn of the event loop reach the core
        together and leave in one Raft append with one fsync (a batch stream's writes, concurrent
        unary calls). Cancelling the future only drops the answer: the entry may still commit."""
        if self._stopping:
            self.proposals_failed += 1
            raise Stopped("node is shutting down")
        if self.role != Role.LEADER:
            self.proposals_failed += 1
            raise NotLeader(self.leader)
        if len(self._proposals) + self._queued_proposals >= self.cfg.max_pending_proposals:
            self.proposals_failed += 1
            raise Overloaded(f"more than {self.cfg.max_pending_proposals} proposals pending")
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._queued_proposals += 1
        self._inbox.append(("propose", data, fut))
        self._wake.set()
        fut.add_done_callback(self._count_proposal)
        return fut

    def _count_proposal(self, fut: asyncio.Future[Response]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.proposals_failed += 1
        else:
            self.proposals_ok += 1

    def pending_proposals(self) -> int:
        """Proposals queued or appended and not yet answered."""
        return len(self._proposals) + self._queued_proposals

    def leader_ready(self) -> bool:
        """Whether this node leads and has applied an entry of its current term, hence every entry
        of earlier terms (every keep-alive committed before it took over)."""
        return self.role == Role.LEADER and self._applied_term == self.raw.raft.term

    async def propose_conf_change(self, cc: ConfChange) -> Response:
        """Replicate the membership change ``cc`` (thesis 4.1, one at a time) and return once it is
        applied here (hence committed). Raises like :meth:`propose`, plus ``ConfChangeInProgress``
        while another change is unapplied and ``InvalidConfChange`` if it makes no sense."""
        if self._stopping:
            raise Stopped("node is shutting down")
        if self.role != Role.LEADER:
            raise NotLeader(self.leader)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._queued_proposals += 1
        self._inbox.append(("conf", cc, fut))
        self._wake.set()
        return await fut

    def leader_contact_seconds(self) -> float:
        """Seconds since this node last received a message from the leader of the moment: 0 on the
        leader itself, negative if it never heard from one since it started."""
        if self.role == Role.LEADER:
            return 0.0
        if self._leader_contact is None:
            return -1.0
        return max(0.0, asyncio.get_running_loop().time() - self._leader_contact)

    def peer_contact_seconds(self, peer: int) -> float:
        """Seconds since this node last received a message from ``peer`` (0 for itself); negative
        if never since it started."""
        if peer == self.raw.id:
            return 0.0
        t = self._last_heard.get(peer)
        return -1.0 if t is None else max(0.0, asyncio.get_running_loop().time() - t)

    async def read_barrier(self) -> int:
        """Wait until this node's state machine reflects every write committed before the call
        (ReadIndex, thesis 6.4); returns the applied index to read at."""
        return await self.read_barrier_nowait()

    def read_barrier_nowait(self) -> asyncio.Future[int]:
        """:meth:`read_barrier` without the coroutine: the future of the applied index to read at.
        One barrier serves any number of reads that arrived before it was asked for."""
        if self._stopping:
            raise Stopped("node is shutting down")
        hist = self.read_index_seconds
        t0 = time.perf_counter() if hist is not None else 0.0
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._inbox.append(("read", None, fut))
        self._wake.set()
        fut.add_done_callback(lambda f: self._count_read(f, hist, t0))
        return fut

    def _count_read(self, fut: asyncio.Future[int], hist: Observer | None, t0: float) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.read_index_failures += 1
        elif hist is not None:
            hist.observe(time.perf_counter() - t0)

    async def transfer_leader(self, target: int) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox.append(("transfer", target, fut))
        self._wake.set()
        await fut

    def status(self) -> Status:
        return self.raw.status()

    def stop(self) -> None:
        """Ask the loop to finish; pending requests fail with :class:`Stopped`."""
        self._stopping = True
        self._wake.set()

    # ---------------------------------------------------------------- the loop
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._next_tick = loop.time() + self.cfg.tick_interval
        try:
            while not self._stopping:
                if not self._inbox and not self.raw.has_ready():
                    self._wake.clear()
                    delay = self._next_tick - loop.time()
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), delay)
                self._tick_if_due()
                self._drain_inbox()
                if self.raw.has_ready():
                    await self._handle_ready(self.raw.ready())
        finally:
            self._fail_all(Stopped("node is shutting down"))

    def _tick_if_due(self) -> bool:
        """Tick the core once if the tick time has come (never a burst of ticks after a stall);
        True if it ticked."""
        now = asyncio.get_running_loop().time()
        if now < self._next_tick:
            return False
        self.raw.tick()
        self._next_tick += self.cfg.tick_interval
        if self._reads:
            self._expire_reads(now)
        if self.leader_ready() and len(self.leases):
            self._lease_tick()
        if self._next_tick < now:  # fell behind (a stalled loop): do not burst ticks
            self._next_tick = now + self.cfg.tick_interval
        return True

    async def _while_io(self, io: Awaitable[_T]) -> _T:
        """Await ``io`` (a Ready's save, or a snapshot's, in a worker thread) while keeping the core
        running.

        Between the Ready and its ``advance()`` the core is ticked on schedule and fed the inbox, and
        at every tick whatever it may send before persistence goes out (``RawNode.take_messages``,
        whose docstring argues why that equals sending a Ready that carries only those messages). Nothing
        else is taken from the core here: no second Ready while one is in flight, and membership
        proposals are held back until ``io`` is done (see :meth:`_drain_inbox`). Returns ``io``'s
        result.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(io)
        try:
            while not task.done():
                if not self._inbox:
                    self._wake.clear()
                    waiter = loop.create_task(self._wake.wait())
                    try:
                        await asyncio.wait((task, waiter), timeout=max(0.0, self._next_tick - loop.time()),
                                           return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                ticked = self._tick_if_due()
                self._drain_inbox(in_window=True)
                # Send only when a tick came due: that keeps heartbeats (and whatever else is
                # pending) flowing through a long save, while proposals arriving during a short save
                # still leave as one batched append with the next Ready instead of one append per
                # proposal (which measured ~2x the CPU per put at 64 clients).
                if ticked:
                    msgs = self.raw.take_messages()
                    if msgs:
                        self.transport.send(msgs)
        except BaseException:
            # Cancelled (or a callback raised): the worker thread cannot be stopped, so let the
            # save finish before the caller goes on, and keep the original error.
            if not task.done():
                with contextlib.suppress(BaseException):
                    await asyncio.shield(task)
            raise
        finally:
            self._inbox.extendleft(reversed(self._held))
            self._held.clear()
        return task.result()

    def _drain_inbox(self, in_window: bool = False) -> None:
        """Feed queued work to the core. ``in_window``: a Ready's save is in flight, so membership
        proposals are held back (in order, ``_held``) for after it; their entry then reaches
        ``on_conf_appended`` with the next Ready, before any message to a new member is sent."""
        raw = self.raw
        while self._inbox:
            kind, arg, fut = self._inbox.popleft()
            if kind == "conf" and in_window:
                self._held.append((kind, arg, fut))
                continue
            if kind == "msg":
                raw.step(arg)
                now = asyncio.get_running_loop().time()
                self._last_heard[arg.frm] = now
                if arg.frm == raw.raft.lead and arg.term == raw.raft.term:
                    self._leader_contact = now
            elif kind == "propose" or kind == "conf":
                self._queued_proposals -= 1
                if fut.done():
                    continue
                try:
                    term, index = raw.propose(arg) if kind == "propose" else raw.propose_conf_change(arg)
                except ProposalDropped as exc:
                    fut.set_exception(exc)
                    continue
                self._proposals[index] = _Proposal(term, fut)
            elif kind == "read":
                self._read_seq += 1
                ctx = self._read_seq.to_bytes(8, "big")
                try:
                    raw.read_index(ctx)
                except ProposalDropped as exc:
                    fut.set_exception(exc)
                    continue
                self._reads[ctx] = (asyncio.get_running_loop().time() + self.cfg.read_timeout, fut)
            elif kind == "transfer":
                try:
                    raw.transfer_leader(arg)
                    fut.set_result(None)
                except ProposalDropped as exc:
                    fut.set_exception(exc)

    def _lease_tick(self) -> None:
        """Queue the lease timer's due expiries and checkpoint as internal proposals (leader only,
        see the module docstring). Nobody awaits them; a lost one is proposed again by the timer."""
        now = self.clock.now()
        reqs: list[Any] = list(self.leases.expired(now))
        cp = self.leases.checkpoints(now)
        if cp is not None:
            reqs.append(cp)
        if not reqs or self._stopping:
            return
        loop = asyncio.get_running_loop()
        for req in reqs:
            fut: asyncio.Future[Response] = loop.create_future()
            fut.add_done_callback(consume_outcome)
            self._queued_proposals += 1
            self._inbox.append(("propose", encode_command(req), fut))
            self.internal_proposals += 1
        self._wake.set()

    def _feed_leases(self) -> None:
        """Hand the state machine's lease updates to the timer, at the lease clock's now."""
        updates = self.sm.take_lease_updates()
        if updates:
            self.leases.apply_updates(updates, self.clock.now())

    def _expire_reads(self, now: float) -> None:
        for ctx, (deadline, fut) in list(self._reads.items()):
            if now >= deadline:
                del self._reads[ctx]
                if not fut.done():
                    who = self.leader or "unknown"
                    fut.set_exception(ReadTimeout(
                        f"no read index from leader {who} within {self.cfg.read_timeout} s"))

    async def _handle_ready(self, rd: Ready) -> None:
        if self.on_conf_appended:
            for e in rd.entries:
                if e.type == EntryType.CONF_CHANGE:
                    cc = _confchange.decode(e.data)
                    for cb in list(self.on_conf_appended):
                        cb(cc)
        self.transport.send(rd.messages)
        # Committed entries below this Ready's first new entry are durable here already (earlier
        # Readies saved them): apply them, and answer their proposals, before this Ready's save
        # instead of after it (etcd applies concurrently with the append for the same reason). The
        # rest (entries that commit in the same Ready that brings them, on a follower) and anything
        # after a received snapshot waits for the save.
        committed = rd.committed_entries
        if rd.snapshot is None and committed:
            durable_below = rd.entries[0].index if rd.entries else committed[-1].index + 1
            split = len(committed)
            while split and committed[split - 1].index >= durable_below:
                split -= 1
            early, committed = committed[:split], committed[split:]
            if early:
                self._apply(early)
                for notify in list(self.on_applied):
                    notify()
        if rd.hard_state is not None or rd.entries or rd.snapshot is not None:
            if rd.must_sync or rd.entries or rd.snapshot is not None:
                await self._while_io(asyncio.to_thread(self._save, rd.hard_state, rd.entries,
                                                       rd.snapshot, rd.must_sync))
            else:  # only the commit index moved: one small unsynced write, not worth a thread hop
                self.storage.save(rd.hard_state, (), None, sync=False)
        self.transport.send(rd.persisted_messages)
        if rd.snapshot is not None:
            self.sm.restore(rd.snapshot.data)
            self._applied_term = rd.snapshot.metadata.term
            self._feed_leases()
        self._apply(committed)
        for rs in rd.read_states:
            pending = self._reads.pop(rs.context, None)
            if pending is not None and not pending[1].done():
                self._read_waits.append((rs.index, pending[1]))
        self.raw.advance(rd)
        applied = self.sm.applied_index
        if rd.snapshot is not None or committed:
            for notify in list(self.on_applied):
                notify()
        if self._read_waits:
            still = []
            for index, fut in self._read_waits:
                if applied >= index:
                    if not fut.done():
                        fut.set_result(applied)
                else:
                    still.append((index, fut))
            self._read_waits = still
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state.role, rd.soft_state.leader)
        if applied - self._last_snapshot >= self.cfg.snapshot_entries:
            await self._snapshot()

    def _save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None,
              sync: bool) -> None:
        """``storage.save`` (in a worker thread), timed into :attr:`fsync_seconds` when it syncs."""
        hist = self.fsync_seconds
        if hist is None or not sync:
            self.storage.save(hard_state, entries, snapshot, sync=sync)
            return
        t0 = time.perf_counter()
        self.storage.save(hard_state, entries, snapshot, sync=sync)
        hist.observe(time.perf_counter() - t0)

    def _apply(self, entries: Sequence[Entry]) -> None:
        """Apply committed ``entries`` to the state machine in order (skipping any it already has)
        and settle the proposals waiting for them: the response if the entry is the one proposed
        (same term), else OutcomeUnknown (another leader's entry replaced it)."""
        hist = self.apply_seconds
        t0 = time.perf_counter() if hist is not None and entries else 0.0
        for e in entries:
            if e.index <= self.sm.applied_index:
                continue
            if e.type == EntryType.CONF_CHANGE:
                cc = _confchange.decode(e.data)
                resp = self.sm.apply_membership(e.index, cc.node_id, removed=cc.type == ConfChangeType.REMOVE,
                                                context=cc.context)
                if self.on_conf_change is not None:
                    self.on_conf_change(cc)
            else:
                resp = self.sm.apply(e.index, e.data)
                self._feed_leases()
            self._applied_term = e.term
            p = self._proposals.pop(e.index, None)
            if p is not None and not p.future.done():
                if p.term == e.term:
                    p.future.set_result(resp)
                else:
                    p.future.set_exception(OutcomeUnknown(
                        f"entry {e.index} was replaced by another leader's; the proposal was lost"))
        if hist is not None and entries:
            hist.observe(time.perf_counter() - t0)

    def _on_soft_state(self, role: Role, leader: int) -> None:
        was_leader = self.role == Role.LEADER
        self.role, self.leader = role, leader
        if leader and leader != self._last_leader:
            self.leader_changes += 1
            self._last_leader = leader
        if role == Role.LEADER and not was_leader:
            self.leases.became_leader(self.clock.now())
        log.info("role change", extra={"node": self.raw.id, "term": self.raw.status().term,
                                       "role": role.name, "leader": leader})
        if was_leader and role != Role.LEADER:
            for p in self._proposals.values():
                if not p.future.done():
                    p.future.set_exception(OutcomeUnknown(
                        f"leadership lost before the entry was applied (leader now {leader or 'unknown'})"))
            self._proposals.clear()
            for _deadline, fut in self._reads.values():
                if not fut.done():
                    fut.set_exception(NotLeader(leader, "leadership lost during a read"))
            self._reads.clear()

    async def _snapshot(self) -> None:
        r = self.raw.raft
        if r.pending_snapshot is not None or r.log.applied != self.sm.applied_index:
            return
        snap = self.raw.create_snapshot(self.sm.snapshot(), keep_entries=self.cfg.snapshot_keep)
        # Like a Ready's save, the snapshot's write and fsyncs run while the core keeps ticking and
        # sending (no Ready is in flight here, and the core keeps its own log in memory).
        await self._while_io(asyncio.to_thread(self.storage.save_snapshot, snap))
        self._last_snapshot = snap.metadata.index
        log.info("snapshot", extra={"node": self.raw.id, "index": snap.metadata.index})

    def _fail_all(self, exc: Exception) -> None:
        for p in self._proposals.values():
            if not p.future.done():
                p.future.set_exception(exc)
        self._proposals.clear()
        while self._inbox:
            _kind, _arg, fut = self._inbox.popleft()
            if fut is not None and not fut.done():
                fut.set_exception(exc)
        for fut in [*(f for _, f in self._reads.values()), *(f for _, f in self._read_waits)]:
            if not fut.done():
                fut.set_exception(exc)
        self._reads.clear()
        self._read_waits = []


def consume_outcome(fut: asyncio.Future[Any]) -> None:
    """Retrieve an internal proposal's outcome so a failure is not reported as never retrieved."""
    if not fut.cancelled():
        fut.exception()


def seeded_rng(node_id: int) -> random.Random:
    """The core's randomness (election timeouts): seeded from the OS, distinct per process."""
    return random.Random(random.SystemRandom().getrandbits(64) ^ node_id)
