"""The Raft protocol rules: a pure state machine with no I/O, no clock and no global randomness.

Time arrives as :meth:`Raft.tick`, peers' messages as :meth:`Raft.step`, requests as method calls; output
is appended to ``msgs`` (safe to send at once) and ``msgs_after_persist`` (send only after the hard state
and entries produced by the same step are durable), which :class:`coterie.node.raft.rawnode.RawNode`
packs into a Ready. Sections cited are from Ongaro & Ousterhout, "In Search of an Understandable Consensus
Algorithm" (paper) and Ongaro's PhD thesis "Consensus: Bridging Theory and Practice" (thesis).

Implemented: leader election with randomized timeouts (5.2), PreVote (thesis 9.6), CheckQuorum and the
leader lease for votes (thesis 6.2, 9.6), log replication with fast backtracking and flow control (5.3),
the commit rule for current-term entries only (5.4.2), a no-op on election (thesis 6.4), ReadIndex reads
batched into shared heartbeat rounds (thesis 6.4), leadership transfer (thesis 3.10), single-server
membership changes with learners (thesis 4.1, 4.2.1), snapshots sent in chunks (thesis 5.1.1).

Invariants the simulation checks on every step: at most one leader per term; a leader never overwrites
its log; the leader counts itself towards a commit only for entries it has persisted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

from . import confchange
from .config import RaftConfig
from .errors import (
    ConfChangeInProgress,
    InvalidConfChange,
    InvariantViolation,
    NotLeader,
    NotMember,
    ProposalDropped,
    TransferInProgress,
)
from .log import RaftLog
from .progress import Progress, ProgressState, VoteResult, quorum_index, vote_result
from .types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
    SnapshotMetadata,
    SoftState,
)

if TYPE_CHECKING:  # the type only: the host always passes a seeded instance
    import random as _random_mod

MT = MessageType

# Messages that do not depend on this node's unpersisted state: a leader's appends and heartbeats carry
# only entries and a commit index that a quorum already persisted; PreVote changes nothing. A heartbeat
# response promises nothing durable either (as in etcd raft): it tells the leader "in your term, I had
# seen no later one" (CheckQuorum activity, a ReadIndex ack), which stays true if this node loses an
# unsynced term change, and sending it at once keeps CheckQuorum independent of the follower's disk.
# Everything else (votes, append acknowledgements, ...) is held until the Ready that produced it is
# durable.
_SEND_NOW = frozenset({MT.APP, MT.HEARTBEAT, MT.HEARTBEAT_RESP, MT.SNAP, MT.TIMEOUT_NOW, MT.PRE_VOTE,
                       MT.READ_INDEX, MT.READ_INDEX_RESP})


class CampaignKind(IntEnum):
    PRE_ELECTION = 0
    ELECTION = 1
    TRANSFER = 2


@dataclass(slots=True)
class _ReadRound:
    """One ReadIndex heartbeat round: requests answered together once a quorum acks ``seq``."""

    seq: int
    index: int
    requests: list[tuple[bytes, int]] = field(default_factory=list)


class Raft:
    """One node's Raft state. Not thread-safe: exactly one owner calls into it."""

    def __init__(
        self,
        config: RaftConfig,
        rng: _random_mod.Random,
        hard_state: HardState,
        snapshot: Snapshot | None,
        entries: list[Entry],
    ) -> None:
        config.validate()
        self.cfg = config
        self.id = config.id
        self.rng = rng
        meta = snapshot.metadata if snapshot is not None else None
        self.log = RaftLog(meta or SnapshotMetadata(), entries, hard_state.commit)
        self.snapshot: Snapshot | None = snapshot if snapshot and not snapshot.is_empty else None
        """The newest snapshot this node holds, sent to followers that need compacted entries."""
        self.pending_snapshot: Snapshot | None = None
        """A snapshot received from the leader, to be persisted and applied by the host."""
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.lead = NONE
        self.role = Role.FOLLOWER
        # Membership (thesis 4.1): a server uses the latest configuration in its log, committed or not.
        # _base_conf is the configuration at the log's offset (from the snapshot); _conf_log records
        # (index, term, configuration after it) for every membership entry after the offset.
        self._base_conf = meta.conf_state if meta is not None else ConfState()
        self._conf_log: list[tuple[int, int, ConfState]] = []
        self.conf = self._base_conf
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[Message] = []
        self.msgs_after_persist: list[Message] = []
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.removed = False
        self.bcast_pending = False
        # ReadIndex state (leader only).
        self._read_seq = 0
        self._read_acks: dict[int, int] = {}
        self._read_rounds: list[_ReadRound] = []
        self._read_queue: list[tuple[bytes, int]] = []
        self._reads_before_commit: list[tuple[bytes, int]] = []
        # InstallSnapshot chunks being received: (index, term, data so far).
        self._incoming: tuple[int, int, bytearray] | None = None
        self._tick: Callable[[], None] = self._tick_election
        self._step_role: Callable[[Message], None] = self._step_follower
        self._reset_progress()
        self._rebuild_conf()
        self.become_follower(self.term, NONE)

    # ================================================================ helpers
    @property
    def voters(self) -> tuple[int, ...]:
        return self.conf.voters

    def promotable(self) -> bool:
        """May this node campaign? Only voters, and not while a received snapshot is unpersisted."""
        return self.id in self.conf.voters and self.pending_snapshot is None and not self.removed

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def send(self, m: Message) -> None:
        if m.type in _SEND_NOW:
            self.msgs.append(m)
        else:
            self.msgs_after_persist.append(m)

    def _msg(self, typ: MessageType, to: int, **kw: object) -> None:
        kw.setdefault("term", self.term)
        self.send(Message(typ, to, self.id, **kw))  # type: ignore[arg-type]

    def _reset_progress(self) -> None:
        last = self.log.last_index()
        self.prs = {}
        for v in self.conf.voters:
            self.prs[v] = Progress(last + 1, self.cfg.max_inflight_msgs)
        for v in self.conf.learners:
            self.prs[v] = Progress(last + 1, self.cfg.max_inflight_msgs, is_learner=True)
        me = self.prs.get(self.id)
        if me is not None:
            me.match = self.log.stabled
            me.recent_active = True

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.cfg.election_tick + self.rng.randrange(
            self.cfg.election_tick
        )
        self.votes = {}
        self.lead_transferee = NONE
        self._reset_progress()
        self._read_seq = 0
        self._read_acks = {}
        self._read_rounds = []
        self._read_queue = []
        self._reads_before_commit = []

    # ================================================================ role changes
    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER
        self._tick = self._tick_election
        self._step_role = self._step_follower

    def become_pre_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InvariantViolation("leader cannot become pre-candidate")
        # PreVote changes neither term nor vote (thesis 9.6).
        self.votes = {}
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE
        self._tick = self._tick_election
        self._step_role = self._step_candidate

    def become_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InvariantViolation("leader cannot become candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._tick = self._tick_election
        self._step_role = self._step_candidate

    def become_leader(self) -> None:
        if self.role == Role.FOLLOWER:
            raise InvariantViolation("follower cannot become leader without an election")
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        self._tick = self._tick_heartbeat
        self._step_role = self._step_leader
        for pr in self.prs.values():
            pr.recent_active = True
        me = self.prs.get(self.id)
        if me is not None:
            me.become_replicate()
            me.match = self.log.stabled
            me.next = self.log.last_index() + 1
        # A no-op in the new term lets the leader learn its commit index (thesis 6.4, paper 8). No
        # membership change until it is applied: a leader must commit an entry of its own term before
        # changing the configuration (the single-server change fix, raft-dev 2015).
        self.pending_conf_index = self._append(EntryType.NORMAL, b"")

    # ================================================================ ticks
    def tick(self) -> None:
        self._tick()

    def _past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self._past_election_timeout():
            self.election_elapsed = 0
            self.hup(CampaignKind.PRE_ELECTION if self.cfg.pre_vote else CampaignKind.ELECTION)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                if not self._quorum_active():
                    self.become_follower(self.term, NONE)
                    return
                for pid, pr in self.prs.items():
                    if pid != self.id:
                        pr.recent_active = False
            if self.lead_transferee != NONE:
                self.lead_transferee = NONE  # transfer did not finish within an election timeout
        if self.role != Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = {v: (1 if (v == self.id or self.prs[v].recent_active) else 0) for v in self.voters}
        return quorum_index(self.voters, active) == 1

    # ================================================================ elections
    def hup(self, kind: CampaignKind) -> None:
        """Start an election (5.2) if this node may."""
        if self.role == Role.LEADER or not self.promotable():
            return
        self._campaign(kind)

    def _campaign(self, kind: CampaignKind) -> None:
        if kind == CampaignKind.PRE_ELECTION:
            self.become_pre_candidate()
            vote_type, term = MT.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MT.VOTE, self.term
        if self._poll(self.id, True) == VoteResult.WON:
            # A single-voter cluster wins on its own vote, but a real vote counts only once the new
            # term and vote are durable: the win is completed in on_persisted().
            if kind == CampaignKind.PRE_ELECTION:
                self._campaign(CampaignKind.ELECTION)
            return
        for v in self.voters:
            if v == self.id:
                continue
            self._msg(vote_type, v, term=term, index=self.log.last_index(),
                      log_term=self.log.last_term(), transfer=(kind == CampaignKind.TRANSFER))

    def _poll(self, frm: int, granted: bool) -> VoteResult:
        self.votes.setdefault(frm, granted)
        return self._vote_result()

    def _vote_result(self) -> VoteResult:
        """Tally votes; a separate method so tests can inject a broken tally."""
        return vote_result(self.voters, self.votes)

    # ================================================================ step
    def step(self, m: Message) -> None:
        """Handle a message from a peer. Term rules first (Figure 2, "All Servers"), then role rules."""
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                in_lease = (self.cfg.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.cfg.election_tick)
                if in_lease and not m.transfer:
                    # Leader lease (thesis 4.2.3, 9.6): we heard from a leader recently; ignore.
                    return
            if m.type == MT.PRE_VOTE:
                pass  # never change term on a PreVote
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                pass  # the future term we asked for; counted below
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader (e.g. partitioned away) learns the new term and steps down; without
                # this, with CheckQuorum it would never hear a higher term.
                self._msg(MT.APP_RESP, m.frm)
            elif m.type == MT.PRE_VOTE:
                self._msg(MT.PRE_VOTE_RESP, m.frm, reject=True)
            return

        if m.type in (MT.VOTE, MT.PRE_VOTE):
            can_vote = (
                self.vote == m.frm
                or (self.vote == NONE and self.lead == NONE)
                or (m.type == MT.PRE_VOTE and m.term > self.term)
            )
            if can_vote and self._log_ok_for_vote(m):
                resp = MT.VOTE_RESP if m.type == MT.VOTE else MT.PRE_VOTE_RESP
                # A granted PreVote answers in the asked-for term, so the candidate counts it.
                self._msg(resp, m.frm, term=m.term)
                if m.type == MT.VOTE:
                    self.election_elapsed = 0
                    self.vote = m.frm
            else:
                resp = MT.VOTE_RESP if m.type == MT.VOTE else MT.PRE_VOTE_RESP
                self._msg(resp, m.frm, reject=True)
            return
        self._step_role(m)

    def _log_ok_for_vote(self, m: Message) -> bool:
        """Election restriction (5.4.1); a separate method so tests can inject a bug."""
        return self.log.is_up_to_date(m.index, m.log_term)

    # ---------------------------------------------------------------- leader
    def _step_leader(self, m: Message) -> None:
        if m.type == MT.READ_INDEX:
            self._handle_read_request(m.context, m.frm)
            return
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        if m.type == MT.APP_RESP:
            pr.recent_active = True
            self._handle_append_response(m, pr)
        elif m.type == MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.state == ProgressState.SNAPSHOT:
                self._send_snapshot_chunk(m.frm, pr)
            elif pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.read_seq:
                self._ack_read(m.frm, m.read_seq)
        elif m.type == MT.SNAP_RESP:
            pr.recent_active = True
            if (pr.state == ProgressState.SNAPSHOT and m.index == pr.pending_snapshot
                    and (m.reject or m.snap_offset > pr.snap_offset)):
                pr.snap_offset = m.snap_offset
                self._send_snapshot_chunk(m.frm, pr)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            if old_paused and not pr.is_paused():
                self._send_append(m.frm)
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif old_paused:
            self._send_append(m.frm)
        # Keep streaming while the window allows.
        while pr.next <= self.log.last_index() and not pr.is_paused():
            if not self._send_append(m.frm):
                break
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._msg(MT.TIMEOUT_NOW, m.frm)

    def _commit_ok(self, index: int) -> bool:
        """Only entries of the current term are committed by counting replicas (5.4.2, Figure 8)."""
        return self.log.term(index) == self.term

    def _maybe_commit(self) -> bool:
        match = {v: pr.match for v, pr in self.prs.items() if not pr.is_learner}
        idx = quorum_index(self.voters, match)
        if idx > self.log.committed and self._commit_ok(idx):
            first_in_term = self.log.term(self.log.committed) != self.term
            self.log.commit_to(idx)
            if first_in_term:
                self._release_reads_before_commit()
            self._maybe_step_down_removed()
            return True
        return False

    def _append(self, typ: EntryType, data: bytes) -> int:
        idx = self.log.last_index() + 1
        e = Entry(self.term, idx, typ, data)
        self.log.append([e])
        me = self.prs.get(self.id)
        if me is not None:
            me.next = idx + 1
        if typ == EntryType.CONF_CHANGE:
            self._conf_appended([e])
        # The leader's own ack arrives in on_persisted(), after the host's fsync (thesis 10.2.1).
        return idx

    def _send_append(self, to: int) -> bool:
        """Send entries (or a snapshot) to ``to`` if its progress allows; returns whether sent."""
        pr = self.prs.get(to)
        if self.role != Role.LEADER or pr is None or pr.is_paused():
            return False  # (a leader that just stepped down, e.g. removed, sends nothing more)
        prev = pr.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None:
            if self.snapshot is None:
                raise InvariantViolation(f"entries before {pr.next} compacted but no snapshot held")
            pr.become_snapshot(self.snapshot)
            self._send_snapshot_chunk(to, pr)
            return True
        last = self.log.last_index()
        ents = self.log.slice(pr.next, last + 1, self.cfg.max_size_per_msg) if pr.next <= last else []
        self._msg(MT.APP, to, index=prev, log_term=prev_term, entries=tuple(ents),
                  commit=self.log.committed)
        if ents:
            if pr.state == ProgressState.REPLICATE:
                pr.optimistic_update(ents[-1].index)
                pr.inflights.add(ents[-1].index)
            elif pr.state == ProgressState.PROBE:
                pr.probe_sent = True
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot_chunk(self, to: int, pr: Progress) -> None:
        snap = pr.snapshot
        if snap is None:
            return
        off = pr.snap_offset
        chunk = snap.data[off : off + self.cfg.snapshot_chunk_size]
        done = off + len(chunk) >= len(snap.data)
        self._msg(MT.SNAP, to, snapshot=snap.metadata, snap_offset=off, snap_data=chunk,
                  snap_done=done)

    def _bcast_append(self) -> None:
        for pid in self.prs:
            if pid != self.id:
                self._send_append(pid)

    def _bcast_heartbeat(self) -> None:
        for pid, pr in self.prs.items():
            if pid == self.id:
                continue
            self._msg(MT.HEARTBEAT, pid, commit=min(pr.match, self.log.committed),
                      read_seq=self._read_seq)

    def on_persisted(self, hard_state: HardState | None) -> None:
        """Called by the host once a Ready is durable (``hard_state``: the one it persisted, if any).

        A candidate's own vote counts towards winning only once its term and vote are on disk; with more
        voters that holds because the vote requests go out after the fsync, and a single voter wins here.
        The leader counts its own log only up to what it has persisted (thesis 10.2.1).
        """
        if self.role == Role.CANDIDATE:
            if (hard_state is not None and hard_state.term == self.term and hard_state.vote == self.id
                    and self._vote_result() == VoteResult.WON):
                self.become_leader()
                self._bcast_append()
            return
        if self.role != Role.LEADER:
            return
        me = self.prs.get(self.id)
        if me is not None and me.maybe_update(self.log.stabled) and self._maybe_commit():
            self._bcast_append()

    # ---------------------------------------------------------------- ReadIndex (thesis 6.4)
    def read_index(self, context: bytes) -> None:
        """Request a linearizable read point; answered later as a :class:`ReadState`."""
        if self.role == Role.LEADER:
            self._handle_read_request(context, self.id)
        elif self.lead != NONE:
            self._msg(MT.READ_INDEX, self.lead, context=context)
        else:
            raise NotLeader(NONE, "no leader to serve a linearizable read")

    def _handle_read_request(self, context: bytes, frm: int) -> None:
        pending = (len(self._read_queue) + len(self._reads_before_commit)
                   + sum(len(r.requests) for r in self._read_rounds))
        if pending >= self.cfg.max_pending_reads:
            if frm == self.id:
                raise ProposalDropped(self.id, f"more than {self.cfg.max_pending_reads} reads pending")
            self._msg(MT.READ_INDEX_RESP, frm, context=context, reject=True)
            return
        if self.log.term(self.log.committed) != self.term:
            # Until an entry of this term commits, our commit index may be stale (thesis 6.4 step 1).
            self._reads_before_commit.append((context, frm))
            return
        if len(self.voters) == 1:
            self._answer_read(context, frm, self.log.committed)
            return
        self._read_queue.append((context, frm))
        if not self._read_rounds:
            self._start_read_round()

    def _release_reads_before_commit(self) -> None:
        waiting, self._reads_before_commit = self._reads_before_commit, []
        for ctx, frm in waiting:
            self._handle_read_request(ctx, frm)

    def _start_read_round(self) -> None:
        if not self._read_queue:
            return
        self._read_seq += 1
        rnd = _ReadRound(self._read_seq, self.log.committed, self._read_queue)
        self._read_queue = []
        self._read_rounds.append(rnd)
        self._read_acks[self.id] = self._read_seq
        self._bcast_heartbeat()

    def _ack_read(self, frm: int, seq: int) -> None:
        if seq > self._read_acks.get(frm, 0):
            self._read_acks[frm] = seq
        if not self._read_rounds:
            return
        confirmed = quorum_index(self.voters, self._read_acks)
        done = [r for r in self._read_rounds if r.seq <= confirmed]
        if not done:
            return
        self._read_rounds = [r for r in self._read_rounds if r.seq > confirmed]
        for r in done:
            for ctx, who in r.requests:
                self._answer_read(ctx, who, r.index)
        if not self._read_rounds:
            self._start_read_round()

    def _answer_read(self, context: bytes, frm: int, index: int) -> None:
        if frm == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            self._msg(MT.READ_INDEX_RESP, frm, index=index, context=context)

    # ---------------------------------------------------------------- candidate
    def _step_candidate(self, m: Message) -> None:
        my_resp = MT.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type == MT.APP:
            self.become_follower(m.term, m.frm)
            self._handle_append(m)
        elif m.type == MT.HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif m.type == MT.SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif m.type == my_resp:
            res = self._poll(m.frm, not m.reject)
            if res == VoteResult.WON:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(CampaignKind.ELECTION)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif res == VoteResult.LOST:
                self.become_follower(self.term, NONE)
        elif m.type == MT.TIMEOUT_NOW:
            pass  # only followers act on it

    # ---------------------------------------------------------------- follower
    def _step_follower(self, m: Message) -> None:
        if m.type == MT.APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif m.type == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif m.type == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif m.type == MT.TIMEOUT_NOW:
            # Leadership transfer: campaign now, skipping PreVote and the voters' lease (thesis 3.10);
            # hup() still refuses while a committed membership change is unapplied.
            self.hup(CampaignKind.TRANSFER)
        elif m.type == MT.READ_INDEX_RESP and not m.reject:
            self.read_states.append(ReadState(m.index, m.context))

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._msg(MT.APP_RESP, m.frm, index=self.log.committed)
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._conf_appended(m.entries)
            self._msg(MT.APP_RESP, m.frm, index=last_new)
            return
        hint_index, hint_term = self.log.find_conflict_by_term(
            min(m.index, self.log.last_index()), m.log_term
        )
        self._msg(MT.APP_RESP, m.frm, index=m.index, reject=True, reject_hint=hint_index,
                  log_term=hint_term)

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._msg(MT.HEARTBEAT_RESP, m.frm, read_seq=m.read_seq)

    def _handle_snapshot(self, m: Message) -> None:
        meta = m.snapshot
        if meta is None:
            return
        if meta.index <= self.log.committed:
            self._incoming = None
            self._msg(MT.APP_RESP, m.frm, index=self.log.committed)
            return
        inc = self._incoming
        if m.snap_offset == 0:
            inc = self._incoming = (meta.index, meta.term, bytearray())
        if inc is None or inc[0] != meta.index or inc[1] != meta.term or len(inc[2]) != m.snap_offset:
            have = len(inc[2]) if inc is not None and inc[:2] == (meta.index, meta.term) else 0
            self._msg(MT.SNAP_RESP, m.frm, index=meta.index, snap_offset=have, reject=True)
            return
        inc[2].extend(m.snap_data)
        if not m.snap_done:
            self._msg(MT.SNAP_RESP, m.frm, index=meta.index, snap_offset=len(inc[2]))
            return
        self._incoming = None
        if self._restore(Snapshot(meta, bytes(inc[2]))):
            self._msg(MT.APP_RESP, m.frm, index=self.log.last_index())
        else:
            self._msg(MT.APP_RESP, m.frm, index=self.log.committed)

    def _restore(self, snap: Snapshot) -> bool:
        """Install a leader's snapshot (thesis 5.1.1); False if it brings nothing new."""
        meta = snap.metadata
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # We already hold the entry the snapshot ends at: keep the log, just learn the commit.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(meta)
        self._base_conf = meta.conf_state
        self._rebuild_conf()
        self._reset_progress()
        self.snapshot = snap
        self.pending_snapshot = snap
        return True

    # ================================================================ requests from the host
    def propose(self, data: bytes, typ: EntryType = EntryType.NORMAL) -> tuple[int, int]:
        """Append a client command; returns its (term, index). Fails fast if it cannot commit."""
        if self.role != Role.LEADER:
            raise NotLeader(self.lead)
        if self.id not in self.prs:
            raise NotMember(NONE, "this leader was removed from the cluster")
        if self.lead_transferee != NONE:
            raise TransferInProgress(self.id, f"handing over to {self.lead_transferee}")
        if typ == EntryType.CONF_CHANGE:
            if self.pending_conf_index > self.log.applied:
                raise ConfChangeInProgress(self.id)
            self._check_conf_change(confchange.decode(data))
        idx = self._append(typ, data)
        if typ == EntryType.CONF_CHANGE:
            self.pending_conf_index = idx
        # Appends go out when the host next asks for a Ready (flush_appends), so proposals made
        # together travel in one message per follower. Committed once a quorum has the entry,
        # counting ourselves only after our own fsync (on_persisted).
        self.bcast_pending = True
        return self.term, idx

    def flush_appends(self) -> None:
        """Send the appends that proposals since the last Ready made necessary."""
        if self.bcast_pending:
            self.bcast_pending = False
            if self.role == Role.LEADER:
                self._bcast_append()

    def _check_conf_change(self, cc: ConfChange) -> None:
        member = cc.node_id in self.conf.voters or cc.node_id in self.conf.learners
        if cc.type == ConfChangeType.REMOVE and not member:
            raise InvalidConfChange(self.id, f"node {cc.node_id} is not a member")
        if cc.type == ConfChangeType.REMOVE and self.conf.voters == (cc.node_id,):
            raise InvalidConfChange(self.id, "cannot remove the last voter")
        if cc.type == ConfChangeType.ADD_VOTER and cc.node_id in self.conf.voters:
            raise InvalidConfChange(self.id, f"node {cc.node_id} is already a voter")
        if cc.type == ConfChangeType.ADD_LEARNER and member:
            raise InvalidConfChange(self.id, f"node {cc.node_id} is already a member")

    def transfer_leader(self, target: int) -> None:
        """Hand leadership to ``target`` (thesis 3.10); proposals are refused until done or aborted."""
        if self.role != Role.LEADER:
            raise NotLeader(self.lead)
        if target == self.id or target not in self.conf.voters:
            raise InvalidConfChange(self.id, f"cannot transfer leadership to {target}")
        if self.lead_transferee == target:
            return
        self.lead_transferee = target
        self.election_elapsed = 0
        pr = self.prs[target]
        if pr.match == self.log.last_index():
            self._msg(MT.TIMEOUT_NOW, target)
        else:
            self._send_append(target)

    # ---------------------------------------------------------------- membership (thesis 4.1)
    def _rebuild_conf(self) -> None:
        """Recompute the configuration from the snapshot's and every membership entry in the log."""
        conf = self._base_conf
        hist: list[tuple[int, int, ConfState]] = []
        for e in self.log.entries:
            if e.type == EntryType.CONF_CHANGE:
                conf = confchange.apply(conf, confchange.decode(e.data))
                hist.append((e.index, e.term, conf))
        self._conf_log = hist
        self._set_conf(conf)

    def _conf_appended(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """Entries were appended: adopt new membership entries, or drop truncated ones."""
        stale = bool(self._conf_log) and not self.log.match_term(self._conf_log[-1][0],
                                                                 self._conf_log[-1][1])
        if stale or any(e.type == EntryType.CONF_CHANGE for e in entries):
            self._rebuild_conf()

    def conf_at(self, index: int) -> ConfState:
        """The configuration in force at ``index`` (at or after the log's offset)."""
        conf = self._base_conf
        for idx, _term, c in self._conf_log:
            if idx > index:
                break
            conf = c
        return conf

    def _set_conf(self, conf: ConfState) -> None:
        """Adopt ``conf`` and bring the progress tracker in line with it."""
        if conf == self.conf and all(v in self.prs for v in (*conf.voters, *conf.learners)):
            return
        self.conf = conf
        last = self.log.last_index()
        for v in conf.voters:
            pr = self.prs.get(v)
            if pr is None:
                pr = self.prs[v] = Progress(last + 1, self.cfg.max_inflight_msgs)
                pr.recent_active = True
            pr.is_learner = False
        for v in conf.learners:
            pr = self.prs.get(v)
            if pr is None:
                pr = self.prs[v] = Progress(last + 1, self.cfg.max_inflight_msgs)
                pr.recent_active = True
            pr.is_learner = True
        for v in list(self.prs):
            if v not in conf.voters and v not in conf.learners:
                del self.prs[v]
                self._read_acks.pop(v, None)
        if self.role != Role.LEADER:
            return
        if self.lead_transferee not in conf.voters:
            self.lead_transferee = NONE
        self._maybe_commit()
        self.bcast_pending = True
        # The quorum may have changed, so pending read rounds may now be confirmed.
        if self._read_rounds:
            self._ack_read(self.id, self._read_seq)

    def _maybe_step_down_removed(self) -> None:
        """A leader outside the configuration steps down once that configuration is committed
        (thesis 4.2.2), handing over to the most up-to-date voter so nobody waits for a timeout."""
        if self.role != Role.LEADER or self.id in self.conf.voters or not self._conf_log:
            return
        if self.log.committed < self._conf_log[-1][0]:
            return
        best = max(self.conf.voters, key=lambda v: self.prs[v].match, default=NONE)
        if best != NONE and self.prs[best].match == self.log.last_index():
            self._msg(MT.TIMEOUT_NOW, best)
        self.become_follower(self.term, NONE)

    def create_snapshot(self, index: int, data: bytes, keep_entries: int) -> Snapshot:
        """Record the host's state machine image at ``index`` (== applied) and compact the log."""
        if index != self.log.applied:
            raise InvariantViolation(f"snapshot at {index} but applied is {self.log.applied}")
        if self.pending_snapshot is not None or index < self.log.offset:
            raise InvariantViolation("cannot snapshot while a snapshot from the leader is pending")
        term = self.log.term(index)
        if term is None:
            raise InvariantViolation(f"snapshot index {index} already compacted")
        snap = Snapshot(SnapshotMetadata(index, term, self.conf_at(index)), data)
        self.snapshot = snap
        new_offset = min(index - keep_entries, self.log.stabled)
        if new_offset > self.log.offset:
            self._base_conf = self.conf_at(new_offset)
            self._conf_log = [c for c in self._conf_log if c[0] > new_offset]
            self.log.compact_to(new_offset)
        return snap
