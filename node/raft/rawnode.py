"""The host-facing API of the Raft core: feed it input, take a :class:`Ready`, do the I/O, ``advance()``.

A host loop looks like this (the order is what makes it safe, thesis 10.2.1)::

    node = RawNode(RaftConfig(id=1), random.Random(seed), storage_state..., conf_state=ConfState((1, 2, 3)))
    while running:
        node.tick() every tick interval; node.step(msg) for each peer message; node.propose(data) ...
        if node.has_ready():
            rd = node.ready()
            storage.save(rd.hard_state, rd.entries, rd.snapshot)   # one fsync
            send(rd.messages); send(rd.persisted_messages)        # the latter only after the fsync
            apply(rd.snapshot, rd.committed_entries); serve(rd.read_states)
            node.advance(rd)

Membership changes take effect in the core as soon as their entry is in the log (thesis 4.1); the host
applies committed ones to its own view of the cluster (for example, peer addresses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import confchange
from .config import RaftConfig
from .errors import InvariantViolation
from .progress import ProgressState
from .raft import CampaignKind, Raft
from .types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    Ready,
    Role,
    Snapshot,
    SoftState,
)

if TYPE_CHECKING:  # the type only: the host always passes a seeded instance
    import random as _random_mod


@dataclass(frozen=True, slots=True)
class PeerStatus:
    match: int
    next: int
    state: str
    learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A read-only view for status pages and tests."""

    id: int
    term: int
    vote: int
    leader: int
    role: Role
    commit: int
    applied: int
    last_index: int
    first_index: int
    conf_state: ConfState
    peers: dict[int, PeerStatus]
    lead_transferee: int


class RawNode:
    """Wraps :class:`Raft` with Ready/advance bookkeeping (etcd raft's RawNode)."""

    def __init__(
        self,
        config: RaftConfig,
        rng: _random_mod.Random,
        *,
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: list[Entry] | None = None,
        conf_state: ConfState | None = None,
    ) -> None:
        """Start from durable state (all empty for a brand-new node).

        ``conf_state`` bootstraps a brand-new cluster: when storage is empty, the node writes one
        committed membership entry per initial member at term 1 (indices 1..n), identical on every
        initial member, so nodes that join later learn the full membership history from the log. A node
        joining an existing cluster passes no ``conf_state`` and learns membership from the leader.
        It is ignored once storage holds a hard state or a snapshot. A crash during the very first
        save may leave a prefix of the bootstrap entries without the hard state (storage writes entries
        before the hard state); such a node bootstraps again, as if storage were empty, instead of
        starting at term 0 with a partial membership, which could let it lead term 1 without entries
        that every other initial member holds as committed.
        """
        hs = hard_state or HardState()
        ents = list(entries or [])
        boot: list[Entry] = []
        if conf_state is not None:
            changes = [ConfChange(ConfChangeType.ADD_VOTER, v) for v in sorted(conf_state.voters)]
            changes += [ConfChange(ConfChangeType.ADD_LEARNER, v) for v in sorted(conf_state.learners)]
            boot = [Entry(1, i + 1, EntryType.CONF_CHANGE, confchange.encode(cc))
                    for i, cc in enumerate(changes)]
        bootstrap = conf_state is not None and hs == HardState() and ents == boot[:len(ents)] and (
            snapshot is None or snapshot.is_empty)
        if bootstrap:
            ents = boot
            hs = HardState(term=1, vote=0, commit=len(ents))
        self.raft = Raft(config, rng, hs, snapshot, ents)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._synced_hard = self._prev_hard
        if bootstrap:
            # Nothing of the bootstrap is durable yet: the first Ready persists it.
            self.raft.log.stabled = 0
            self._prev_hard = self._synced_hard = HardState()

    # ---------------------------------------------------------------- input
    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (used by tests and by an operator forcing a campaign)."""
        self.raft.hup(CampaignKind.PRE_ELECTION if self.raft.cfg.pre_vote else CampaignKind.ELECTION)

    def step(self, m: Message) -> None:
        if m.to != self.raft.id:
            raise InvariantViolation(f"message for {m.to} delivered to {self.raft.id}")
        self.raft.step(m)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command; returns (term, index). Raises a ProposalDropped subclass if refused."""
        return self.raft.propose(data)

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        return self.raft.propose(confchange.encode(cc), EntryType.CONF_CHANGE)

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; it arrives as a ReadState with the same ``context``."""
        self.raft.read_index(context)

    def transfer_leader(self, target: int) -> None:
        self.raft.transfer_leader(target)

    def create_snapshot(self, data: bytes, keep_entries: int = 0) -> Snapshot:
        """Snapshot the state machine at the applied index and compact the in-memory log.

        The host must persist the snapshot before dropping the entries it covers from storage.
        """
        return self.raft.create_snapshot(self.raft.log.applied, data, keep_entries)

    # ---------------------------------------------------------------- output
    def has_ready(self) -> bool:
        r = self.raft
        r.flush_appends()
        return bool(
            r.msgs
            or r.msgs_after_persist
            or r.read_states
            or r.pending_snapshot is not None
            or r.log.stabled < r.log.last_index()
            or r.log.applying < r.log.committed
            or r.soft_state() != self._prev_soft
            or r.hard_state() != self._prev_hard
        )

    def take_messages(self) -> list[Message]:
        """Take the messages that may be sent now, before any pending persistence (the ``messages``
        part of a Ready), leaving everything else for the next :meth:`ready`.

        For a host that keeps running while a Ready's save is in flight (etcd's ``node.run`` does the
        same): between ``ready()`` and ``advance()`` it may ``tick()``, ``step()``, ``propose()``,
        ``read_index()`` and ``transfer_leader()``, and send what this returns at once. Like
        :meth:`has_ready` it first flushes the appends that proposals made necessary.

        Invariants that make this safe:

        - it returns and clears ``raft.msgs`` only: messages of the ``_SEND_NOW`` kinds (a leader's
          appends and heartbeats, snapshot chunks, TimeoutNow, PreVote requests, ReadIndex requests and
          answers), which depend on no unpersisted state of this node. ``msgs_after_persist`` (votes,
          append acknowledgements, ...), ``read_states``, entries, the hard state, a received snapshot
          and committed entries all stay for the next ``ready()``, so they are persisted and released
          exactly as before;
        - hence calling it is equivalent to a Ready that carries only these messages: in the normal
          flow ``Ready.messages`` are sent before the Ready's save too, and a Ready taken right now
          would hold the same messages with the same meaning. A message taken while an earlier Ready's
          save is in flight refers to log entries that may not be durable here yet; so may any
          ``Ready.messages`` (a leader sends entries before its own fsync and counts itself only
          after it, thesis 10.2.1);
        - ``advance(rd)`` of the Ready in flight stays correct when the core changed meanwhile: it
          marks stable only the entries of ``rd`` still in the log with the same term
          (``stable_to``), counts the leader's own match from that, completes a single voter's
          election only if ``rd.hard_state`` holds the current term and vote, and moves ``applied``
          only forward. The simulation checks this (``tests/sim/cluster.py``, ``early_send``).
        """
        r = self.raft
        r.flush_appends()
        msgs, r.msgs = r.msgs, []
        return msgs

    def ready(self) -> Ready:
        """Collect pending work. Call :meth:`advance` with it once done, before the next ``ready()``.

        Between ``ready()`` and ``advance()`` the host may keep feeding the core (tick, step,
        propose, read_index, transfer_leader) and send :meth:`take_messages`; it must not call
        ``ready()`` again nor ``create_snapshot()`` until it has advanced.
        """
        r = self.raft
        r.flush_appends()
        soft = r.soft_state()
        hard = r.hard_state()
        committed: list[Entry] = r.log.next_committed(r.cfg.max_committed_size_per_ready)
        entries = tuple(r.log.unstable_entries())
        synced = self._synced_hard
        must_sync = (bool(entries) or r.pending_snapshot is not None
                     or hard.term != synced.term or hard.vote != synced.vote)
        # A commit-only change may have been written without an fsync; any Ready that syncs carries
        # the hard state again if it differs from the last synced one, so it never stays volatile.
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard != self._prev_hard or (must_sync and hard != synced) else None,
            entries=entries,
            snapshot=r.pending_snapshot,
            messages=tuple(r.msgs),
            persisted_messages=tuple(r.msgs_after_persist),
            committed_entries=tuple(committed),
            read_states=tuple(r.read_states),
            must_sync=must_sync,
        )
        r.msgs = []
        r.msgs_after_persist = []
        r.read_states = []
        self._prev_soft = soft
        if committed:
            r.log.applying = committed[-1].index
        return rd

    def advance(self, rd: Ready) -> None:
        """The host has persisted, sent and applied ``rd``."""
        r = self.raft
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
            if rd.must_sync:
                self._synced_hard = rd.hard_state
        if rd.snapshot is not None:
            if r.pending_snapshot is rd.snapshot:
                r.pending_snapshot = None
            r.log.applied = max(r.log.applied, rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            r.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            for e in rd.committed_entries:
                # Membership took effect when the entry was appended (thesis 4.1); once applied,
                # a node that removed itself knows for certain it is out.
                if e.type == EntryType.CONF_CHANGE:
                    cc = confchange.decode(e.data)
                    if cc.type == ConfChangeType.REMOVE and cc.node_id == r.id:
                        r.removed = True
            r.log.applied_to(rd.committed_entries[-1].index)
        if rd.must_sync:
            r.on_persisted(rd.hard_state)

    # ---------------------------------------------------------------- inspection
    def status(self) -> Status:
        r = self.raft
        peers = {}
        if r.role == Role.LEADER:
            peers = {
                pid: PeerStatus(pr.match, pr.next, ProgressState(pr.state).name, pr.is_learner,
                                pr.recent_active)
                for pid, pr in r.prs.items()
            }
        return Status(
            id=r.id, term=r.term, vote=r.vote, leader=r.lead, role=r.role, commit=r.log.committed,
            applied=r.log.applied, last_index=r.log.last_index(), first_index=r.log.first_index(),
            conf_state=r.conf, peers=peers, lead_transferee=r.lead_transferee,
        )

    @property
    def id(self) -> int:
        return self.raft.id

    @property
    def soft_state(self) -> SoftState:
        return self.raft.soft_state()
