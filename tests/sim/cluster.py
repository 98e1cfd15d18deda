"""A deterministic, seeded simulation of a Raft cluster driven by the pure core.

Everything that is random comes from one ``random.Random(seed)``, so a failing seed replays exactly.
The simulation models:

- a network that drops, duplicates, delays and reorders messages, with partitions that may be one-way;
- disks with a write-then-fsync window: a node crashing inside the window keeps only a random prefix
  of the records it wrote (the same order the real WAL writes them), i.e. it loses unsynced writes;
- crashes and restarts from disk, log compaction through host snapshots, leadership transfers and
  membership changes (remove a voter, add a fresh learner, promote it);
- clients running a register workload (read / write / compare-and-set on a few keys) whose history is
  checked for linearizability at the end.

After every event the Raft safety properties are checked (paper Figure 3): Election Safety, Log Matching,
Leader Completeness, State Machine Safety, and that committed entries are never lost. A violation raises
:class:`SafetyViolation` with the seed and the recent event trace.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack

from coterie.node.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProposalDropped,
    RaftConfig,
    RawNode,
    Ready,
    Role,
    Snapshot,
    confchange,
)
from coterie.node.raft.log import RaftLog
from coterie.node.raft.raft import Raft

from .linearizability import Op, RegisterModel, check


@dataclass
class Call:
    """A client operation while it is in flight (converted to a checker :class:`Op` at the end)."""

    client: int
    key: str
    kind: str
    invoke: float
    value: int | None = None
    expected: int | None = None
    complete: float | None = None
    ok: bool | None = None
    output: Any = None

TICK = 10
"""Simulated time units per Raft tick."""


def to_op(c: Call) -> Op:
    return Op(client=c.client, key=c.key, kind=c.kind, value=c.value, expected=c.expected,
              invoke=c.invoke, complete=c.complete, ok=c.ok, output=c.output)


class SafetyViolation(AssertionError):
    """A Raft safety property or linearizability was violated."""


# ====================================================================== options
@dataclass
class SimOptions:
    nodes: int = 3
    ticks: int = 300
    """Ticks of chaos before the final heal-and-converge phase."""
    clients: int = 4
    keys: int = 2
    drop: float = 0.02
    duplicate: float = 0.02
    max_delay: int = 25
    """Max message delay in time units (a tick is 10)."""
    long_delay: float = 0.01
    """Probability that a message is held back for up to ``long_delay_ticks`` (a stalled connection)."""
    long_delay_ticks: int = 40
    kill_new_leader: float = 0.0
    """Probability that a newly elected leader crashes moments later and restarts (leader flapping:
    the Figure 8 pattern of partially replicated entries from several terms)."""
    fault_every: tuple[int, int] = (15, 40)
    """Ticks between nemesis events."""
    crash: bool = True
    partition: bool = True
    membership: bool = True
    transfer: bool = True
    fsync_delay: tuple[int, int] = (1, 6)
    """Time units between a write and its fsync returning: the window in which a crash loses data."""
    slow_fsync: float = 0.1
    """Probability that a save takes ``slow_fsync_ticks`` ticks at most instead (a stalled disk)."""
    slow_fsync_ticks: int = 12
    early_send: float = 0.7
    """Probability (per node start) that the host keeps working while a Ready's save is in flight, as
    the real driver does: it ticks, steps, takes proposals and reads, and sends
    ``RawNode.take_messages()`` at once; non-synced saves then take time too. Otherwise it still
    ticks and steps in the window but sends nothing until ``advance()``."""
    max_size_per_msg: int = 256
    """Small, so lagging followers catch up over several messages (more interleavings)."""
    profile: str = "mixed"
    """``mixed`` draws one of :data:`PROFILES` per seed; or name one; ``fixed`` uses the fields as given."""
    snapshot_every: tuple[int, int] = (8, 40)
    """Applied entries between host snapshots (drawn per node)."""
    election_tick: int = 10
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_chunk: int = 64
    grow_to: int = 0
    """Membership changes may grow the cluster to this many voters (0: ``nodes``)."""
    bugs: frozenset[str] = frozenset()
    """Deliberate bugs to inject (tests of the checkers): see :data:`BUGS`."""


PROFILES: dict[str, dict[str, Any]] = {
    "calm": {"drop": 0.0, "duplicate": 0.0, "fault_every": (30, 60)},
    "lossy": {"drop": 0.15, "duplicate": 0.1, "max_delay": 60},
    "crashy": {"fault_every": (3, 10), "fsync_delay": (3, 25), "partition": False},
    "partitions": {"fault_every": (4, 12), "crash": False},
    "plain-raft": {"pre_vote": False, "check_quorum": False, "election_tick": 4, "long_delay": 0.05,
                   "fault_every": (4, 12)},
    "flapping": {"kill_new_leader": 0.6, "max_size_per_msg": 40, "fault_every": (10, 30),
                 "crash": False},
    "storm": {"fault_every": (2, 6), "fsync_delay": (2, 20), "max_size_per_msg": 48,
              "drop": 0.05, "long_delay": 0.05},
    "slow-disk": {"slow_fsync": 0.4, "slow_fsync_ticks": 15, "early_send": 1.0, "fault_every": (5, 20)},
}
"""Overrides drawn per seed by the ``mixed`` profile, so the same run covers calm and hostile worlds."""

BUGS = {
    "stale_votes": "count vote responses from an earlier term",
    "vote_any_log": "grant votes without the election restriction (5.4.1)",
    "ack_before_fsync": "send acknowledgements and votes before the fsync returns",
    "read_local": "serve reads from local state without ReadIndex",
    "early_acks": "while a save is in flight, also send the messages that wait for persistence",
    "stable_any_term": "advance() marks a Ready's entries stable even if the log changed meanwhile",
}


# ====================================================================== disk
@dataclass
class SimDisk:
    """What survives a crash: the fsynced state, as the real WAL would replay it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def write(self, rd: Ready, keep: int | None = None) -> None:
        """Apply a Ready's records in WAL order (snapshot, entries, hard state); keep only a prefix."""
        records: list[Any] = []
        if rd.snapshot is not None:
            records.append(rd.snapshot)
        records.extend(rd.entries)
        if rd.hard_state is not None:
            records.append(rd.hard_state)
        if keep is not None:
            records = records[:keep]
        for rec in records:
            if isinstance(rec, Snapshot):
                # A snapshot from the leader replaces the whole log, as in the real storage.
                self.snapshot = rec
                self.entries = []
            elif isinstance(rec, Entry):
                base = self.snapshot.metadata.index if self.snapshot else 0
                first = self.entries[0].index if self.entries else base + 1
                if rec.index <= base:
                    continue
                del self.entries[rec.index - first :]
                if (self.entries and self.entries[-1].index != rec.index - 1) or (
                    not self.entries and rec.index != base + 1
                ):
                    raise SafetyViolation(f"disk gap: entry {rec.index} after {self.last_index()}")
                self.entries.append(rec)
            else:
                self.hard_state = rec

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.metadata.index if self.snapshot else 0

    def compact(self, snap: Snapshot) -> None:
        """A host snapshot, written atomically, then older entries dropped."""
        self.snapshot = snap
        self.entries = [e for e in self.entries if e.index > snap.metadata.index]


# ====================================================================== state machine
def encode_cmd(op_id: int, kind: str, key: str, value: int | None, expected: int | None) -> bytes:
    return msgpack.packb([op_id, kind, key, value, expected])


class Register:
    """The replicated state machine of the simulation: registers keyed by name, and (like the real
    node's member book) the ids that applied membership changes removed."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.results: dict[int, Any] = {}
        self.removed: set[int] = set()

    def apply_conf(self, data: bytes) -> None:
        cc = confchange.decode(data)
        if cc.type == ConfChangeType.REMOVE:
            self.removed.add(cc.node_id)
        else:
            self.removed.discard(cc.node_id)

    def apply(self, data: bytes) -> None:
        op_id, kind, key, value, expected = msgpack.unpackb(data)
        if kind == "w":
            self.values[key] = value
            self.results[op_id] = True
        elif kind == "cas":
            ok = self.values.get(key) == expected
            if ok:
                self.values[key] = value
            self.results[op_id] = ok

    def dump(self) -> bytes:
        return msgpack.packb([self.values, list(self.results.items()), sorted(self.removed)])

    @classmethod
    def load(cls, data: bytes) -> Register:
        r = cls()
        if data:
            values, results, removed = msgpack.unpackb(data, strict_map_key=False)
            r.values = dict(values)
            r.results = dict((k, v) for k, v in results)
            r.removed = set(removed)
        return r


# ====================================================================== node
class SimNode:
    def __init__(self, nid: int, sim: Simulation, initial: ConfState | None) -> None:
        self.id = nid
        self.sim = sim
        self.disk = SimDisk()
        self.initial = initial
        self.alive = False
        self.raw: RawNode
        self.sm = Register()
        self.applied = 0
        self.inflight: Ready | None = None
        """A Ready whose records are written but not yet fsynced."""
        self.read_waits: list[tuple[int, int]] = []
        self.snapshot_every = sim.rng.randint(*sim.opts.snapshot_every)
        self.last_snap = 0
        self.early_send = False
        self.decommissioned = False
        """Stopped for good: a peer refused its traffic because an applied change removed it (the real
        node then shuts down). A node removed while it could not hear of it never learns it from
        Raft (the leader no longer contacts it) and, without PreVote and CheckQuorum, would force
        the members to step down every election timeout (thesis 4.2.3)."""
        self.start()

    def start(self) -> None:
        d = self.disk
        cfg = RaftConfig(
            id=self.id,
            election_tick=self.sim.opts.election_tick,
            pre_vote=self.sim.opts.pre_vote,
            check_quorum=self.sim.opts.check_quorum,
            snapshot_chunk_size=self.sim.opts.snapshot_chunk,
            max_size_per_msg=self.sim.opts.max_size_per_msg,
        )
        self.raw = RawNode(cfg, random.Random(self.sim.rng.random()), hard_state=d.hard_state,
                           snapshot=d.snapshot, entries=list(d.entries), conf_state=self.initial)
        self.sm = Register.load(d.snapshot.data) if d.snapshot else Register()
        self.applied = d.snapshot.metadata.index if d.snapshot else 0
        self.last_snap = self.applied
        self.inflight = None
        self.read_waits = []
        self.early_send = self.sim.rng.random() < self.sim.opts.early_send
        self.alive = True
        self.sim.check_restart(self)

    def crash(self) -> None:
        """Lose everything not fsynced: an in-flight write keeps a random prefix of its records."""
        if self.inflight is not None and self.inflight.must_sync:
            rd = self.inflight
            n = (rd.snapshot is not None) + len(rd.entries) + (rd.hard_state is not None)
            self.disk.write(rd, keep=self.sim.rng.randint(0, n))
        self.inflight = None
        self.alive = False

    # ------------------------------------------------------------ ready handling
    def pump(self) -> None:
        """Start persisting the next Ready, if any and none is in flight. While one is in flight, an
        ``early_send`` host sends the core's send-now messages at once (``RawNode.take_messages``)."""
        if not self.alive:
            return
        if self.inflight is not None:
            if self.early_send:
                for m in self.raw.take_messages():
                    self.sim.net.send(m)
                if "early_acks" in self.sim.opts.bugs:
                    r = self.raw.raft
                    early, r.msgs_after_persist = r.msgs_after_persist, []
                    for m in early:
                        self.sim.net.send(m)
            return
        if not self.raw.has_ready():
            return
        rd = self.raw.ready()
        self.sim.observe_ready(self, rd)
        for m in rd.messages:
            self.sim.net.send(m)
        if "ack_before_fsync" in self.sim.opts.bugs:
            for m in rd.persisted_messages:
                self.sim.net.send(m)
        self.inflight = rd
        o = self.sim.opts
        if rd.must_sync or self.early_send:
            # The save window: ticks, messages and clients keep reaching the core until "fsync".
            if self.sim.rng.random() < o.slow_fsync:
                delay = self.sim.rng.randint(1, TICK * o.slow_fsync_ticks)
            else:
                delay = self.sim.rng.randint(*o.fsync_delay)
            self.sim.schedule(delay, self.id, "fsync", rd)
        else:
            self.finish(rd)

    def finish(self, rd: Ready) -> None:
        if not self.alive or self.inflight is not rd:
            return
        if rd.must_sync:
            self.disk.write(rd)
        # else: only the commit index moved; it is written without an fsync, which the simulation
        # models harshly as never reaching the disk.
        self.inflight = None
        if "ack_before_fsync" not in self.sim.opts.bugs:
            for m in rd.persisted_messages:
                self.sim.net.send(m)
        if rd.snapshot is not None:
            self.sm = Register.load(rd.snapshot.data)
            self.applied = rd.snapshot.metadata.index
        for e in rd.committed_entries:
            if e.index <= self.applied:
                continue
            if e.index != self.applied + 1:
                raise SafetyViolation(f"node {self.id} applies {e.index} after {self.applied}")
            self.sim.observe_apply(self, e)
            if e.type == EntryType.NORMAL and e.data:
                self.sm.apply(e.data)
            elif e.type == EntryType.CONF_CHANGE:
                self.sm.apply_conf(e.data)
            self.applied = e.index
        for rs in rd.read_states:
            self.read_waits.append((rs.index, int.from_bytes(rs.context, "big")))
        self.raw.advance(rd)
        self.sim.check_membership(self, rd)
        self.serve_reads()
        self.sim.client_observe_applied(self)
        r = self.raw.raft
        if (self.applied - self.last_snap >= self.snapshot_every and r.log.applied == self.applied
                and r.pending_snapshot is None):
            snap = self.raw.create_snapshot(self.sm.dump(), keep_entries=self.sim.rng.randint(0, 5))
            self.disk.compact(snap)
            self.last_snap = self.applied
        self.pump()

    def serve_reads(self) -> None:
        still = []
        for index, op_id in self.read_waits:
            if self.applied >= index:
                self.sim.client_read_done(self, op_id)
            else:
                still.append((index, op_id))
        self.read_waits = still


# ====================================================================== network
class Network:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.cut: set[tuple[int, int]] = set()
        self.sent = 0
        self.delivered = 0

    def send(self, m: Message) -> None:
        sim = self.sim
        self.sent += 1
        if (m.frm, m.to) in self.cut or sim.rng.random() < sim.opts.drop:
            return
        copies = 2 if sim.rng.random() < sim.opts.duplicate else 1
        for _ in range(copies):
            if sim.rng.random() < sim.opts.long_delay:
                delay = sim.rng.randint(1, TICK * sim.opts.long_delay_ticks)
            else:
                delay = sim.rng.randint(1, sim.opts.max_delay)
            sim.schedule(delay, m.to, "msg", m)

    def partition(self, groups: list[set[int]], one_way: bool = False) -> None:
        self.cut = set()
        for a in groups:
            for b in groups:
                if a is b:
                    continue
                for x in a:
                    for y in b:
                        if not one_way or groups.index(a) < groups.index(b):
                            self.cut.add((x, y))

    def heal(self) -> None:
        self.cut = set()


# ====================================================================== clients
@dataclass
class PendingOp:
    op: Call
    node: int
    deadline: int
    index: int = 0
    term: int = 0


# ====================================================================== simulation
class Simulation:
    def __init__(self, seed: int, opts: SimOptions | None = None) -> None:
        self.seed = seed
        self.opts = opts or SimOptions()
        self.rng = random.Random(seed)
        profile = self.opts.profile
        if profile == "mixed":
            profile = self.rng.choice(["default", *PROFILES])
        for k, v in PROFILES.get(profile, {}).items():
            setattr(self.opts, k, v)
        self.profile = profile
        self.now = 0
        self.events: list[tuple[int, int, int, str, Any]] = []
        self._seq = 0
        self.nodes: dict[int, SimNode] = {}
        self.trace: deque[str] = deque(maxlen=60)
        self.net = Network(self)
        ids = list(range(1, self.opts.nodes + 1))
        self.next_id = self.opts.nodes + 1
        initial = ConfState(tuple(ids))
        # Safety bookkeeping.
        self.leaders: dict[int, int] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        self.applied_log: dict[int, tuple[int, bytes]] = {}
        self.entry_prev: dict[tuple[int, int], tuple[bytes, int | None]] = {}
        self.conf_at: dict[int, ConfState] = {}
        # Workload.
        self.history: list[Call] = []
        self.pending: dict[int, PendingOp] = {}
        self.client_busy: dict[int, int] = {}
        self.next_op = 1
        self.write_value = 0
        self.stats = {"ops": 0, "ok": 0, "failed": 0, "unknown": 0, "elections": 0,
                      "crashes": 0, "snapshots_sent": 0, "conf_changes": 0, "transfers": 0}
        self.clients_active = True
        self.chaos = True
        for i in ids:
            self.nodes[i] = SimNode(i, self, initial)

    # ------------------------------------------------------------ scheduling
    def schedule(self, delay: int, target: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self.events, (self.now + delay, self._seq, target, kind, payload))

    def log(self, s: str) -> None:
        self.trace.append(f"t={self.now} {s}")

    def fail(self, what: str) -> None:
        trace = "\n  ".join(self.trace)
        raise SafetyViolation(f"seed {self.seed}: {what}\nrecent events:\n  {trace}")

    # ------------------------------------------------------------ safety checks
    def observe_ready(self, node: SimNode, rd: Ready) -> None:
        r = node.raw.raft
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            self.stats["elections"] += 1
            self.check_leader(node)
            if self.chaos and self.rng.random() < self.opts.kill_new_leader:
                self.schedule(self.rng.randint(1, 4 * TICK), node.id, "crash", None)
        for e in rd.entries:
            prev = r.log.term(e.index - 1)
            key = (e.index, e.term)
            seen = self.entry_prev.get(key)
            if seen is None:
                self.entry_prev[key] = (e.data, prev)
            elif seen[0] != e.data or (prev is not None and seen[1] is not None and seen[1] != prev):
                self.fail(f"Log Matching: node {node.id} has a different entry at {key}")
        self.check_commit(node)

    def check_leader(self, node: SimNode) -> None:
        r = node.raw.raft
        prev = self.leaders.get(r.term)
        if prev is not None and prev != node.id:
            self.fail(f"Election Safety: nodes {prev} and {node.id} both lead term {r.term}")
        self.leaders[r.term] = node.id
        self.log(f"n{node.id} leads term {r.term}")
        # Leader Completeness: every committed entry is in the new leader's log.
        log = r.log
        for idx, (term, _data) in self.committed.items():
            if idx <= log.offset:
                continue
            if log.term(idx) != term:
                self.fail(f"Leader Completeness: leader {node.id} (term {r.term}) lacks committed "
                          f"entry {idx}/{term}")

    def check_commit(self, node: SimNode) -> None:
        log = node.raw.raft.log
        lo = max(log.offset + 1, 1)
        for idx in range(max(lo, log.committed - 8), log.committed + 1):
            t = log.term(idx)
            if t is None:
                continue
            e = log.entries[idx - log.offset - 1]
            seen = self.committed.get(idx)
            if seen is None:
                self.committed[idx] = (e.term, e.data)
            elif seen != (e.term, e.data):
                self.fail(f"State Machine Safety: node {node.id} commits {idx}/{e.term}, "
                          f"another committed {idx}/{seen[0]}")

    def observe_apply(self, node: SimNode, e: Entry) -> None:
        seen = self.applied_log.get(e.index)
        if seen is None:
            self.applied_log[e.index] = (e.term, e.data)
        elif seen != (e.term, e.data):
            self.fail(f"State Machine Safety: node {node.id} applies {e.index}/{e.term}, "
                      f"another applied {e.index}/{seen[0]}")
        c = self.committed.get(e.index)
        if c is not None and c != (e.term, e.data):
            self.fail(f"node {node.id} applies {e.index}/{e.term} but {c[0]} was committed there")
        self.committed.setdefault(e.index, (e.term, e.data))

    def check_membership(self, node: SimNode, rd: Ready) -> None:
        """Every node has the same membership at the same applied index (and its incrementally kept
        configuration equals one recomputed from its log)."""
        r = node.raw.raft
        changes = [e.index for e in rd.committed_entries if e.type == EntryType.CONF_CHANGE]
        idx = r.log.applied
        if not changes or idx < r.log.offset or r.pending_snapshot is not None:
            return
        conf = r.conf_at(idx)
        seen = self.conf_at.setdefault(idx, conf)
        if seen != conf:
            self.fail(f"membership diverged: node {node.id} has {conf} at {idx}, another {seen}")
        latest = r.conf
        r._rebuild_conf()
        if r.conf != latest:
            self.fail(f"node {node.id}: kept configuration {latest} != recomputed {r.conf}")

    def check_restart(self, node: SimNode) -> None:
        """Durability: every committed entry this node had persisted and not compacted is still there."""
        log = node.raw.raft.log
        for idx in range(log.first_index(), min(log.committed, log.last_index()) + 1):
            c = self.committed.get(idx)
            if c is not None and log.term(idx) != c[0]:
                self.fail(f"node {node.id} restarted with {idx}/{log.term(idx)}, committed {c[0]}")

    # ------------------------------------------------------------ bugs
    @contextmanager
    def _bugs(self) -> Iterator[None]:
        saved: list[tuple[Any, str, Any]] = []
        if "stable_any_term" in self.opts.bugs:
            saved.append((RaftLog, "stable_to", RaftLog.stable_to))

            # The replacement keeps the method's signature (parameter names included): `self` is the log.
            def stable_to(self: RaftLog, index: int, term: int) -> None:
                self.stabled = max(self.stabled, min(index, self.last_index()))

            RaftLog.stable_to = stable_to  # type: ignore[method-assign]
        if "vote_any_log" in self.opts.bugs:
            saved.append((Raft, "_log_ok_for_vote", Raft._log_ok_for_vote))
            Raft._log_ok_for_vote = lambda self, m: True  # type: ignore[method-assign]
        if "stale_votes" in self.opts.bugs:
            real_step = Raft.step

            def step(self: Raft, m: Message) -> None:  # `self` is the Raft, as in Raft.step
                if m.type == MessageType.VOTE_RESP and m.term < self.term and self.role == Role.CANDIDATE:
                    m = dataclasses.replace(m, term=self.term)
                real_step(self, m)

            saved.append((Raft, "step", real_step))
            Raft.step = step  # type: ignore[method-assign]
        try:
            yield
        finally:
            for cls, name, fn in saved:
                setattr(cls, name, fn)

    # ------------------------------------------------------------ workload
    def leader_guess(self) -> int:
        alive = [n for n in self.nodes.values() if n.alive]
        leaders = [n.id for n in alive if n.raw.raft.role == Role.LEADER]
        if leaders and self.rng.random() < 0.8:
            return self.rng.choice(leaders)
        return self.rng.choice(alive).id if alive else 0

    def client_step(self, client: int) -> None:
        if client in self.client_busy:
            return
        target = self.leader_guess()
        node = self.nodes.get(target)
        if node is None or not node.alive:
            return
        key = f"k{self.rng.randrange(self.opts.keys)}"
        op_id = self.next_op
        self.next_op += 1
        roll = self.rng.random()
        deadline = self.now + TICK * self.opts.election_tick * 3
        if roll < 0.4:
            op = Call(client=client, key=key, kind="read", invoke=float(self.now))
            if "read_local" in self.opts.bugs:
                op.output = node.sm.values.get(key)
                op.complete = float(self.now)
                op.ok = True
                self.history.append(op)
                self.stats["ops"] += 1
                self.stats["ok"] += 1
                return
            try:
                node.raw.read_index(op_id.to_bytes(8, "big"))
            except ProposalDropped:
                self.stats["failed"] += 1
                return
            self.pending[op_id] = PendingOp(op, target, deadline)
        else:
            self.write_value += 1
            if roll < 0.75:
                op = Call(client=client, key=key, kind="write", value=self.write_value,
                        invoke=float(self.now))
                data = encode_cmd(op_id, "w", key, self.write_value, None)
            else:
                expected = self.rng.choice([None, *range(max(1, self.write_value - 4),
                                                          self.write_value)])
                op = Call(client=client, key=key, kind="cas", value=self.write_value,
                        expected=expected, invoke=float(self.now))
                data = encode_cmd(op_id, "cas", key, self.write_value, expected)
            try:
                term, index = node.raw.propose(data)
            except ProposalDropped:
                self.stats["failed"] += 1
                return
            self.pending[op_id] = PendingOp(op, target, deadline, index, term)
        self.client_busy[client] = op_id
        self.stats["ops"] += 1
        node.pump()

    def _complete(self, op_id: int, output: Any) -> None:
        p = self.pending.pop(op_id)
        p.op.complete = float(self.now)
        p.op.ok = True
        p.op.output = output
        self.history.append(p.op)
        self.client_busy.pop(p.op.client, None)
        self.stats["ok"] += 1

    def client_observe_applied(self, node: SimNode) -> None:
        for op_id, p in list(self.pending.items()):
            if p.node != node.id or p.op.kind == "read" or node.applied < p.index:
                continue
            if op_id in node.sm.results:
                self._complete(op_id, node.sm.results[op_id])

    def client_read_done(self, node: SimNode, op_id: int) -> None:
        p = self.pending.get(op_id)
        if p is not None and p.node == node.id:
            self._complete(op_id, node.sm.values.get(p.op.key))

    def expire_ops(self) -> None:
        for op_id, p in list(self.pending.items()):
            node = self.nodes.get(p.node)
            if self.now >= p.deadline or node is None or not node.alive:
                del self.pending[op_id]
                self.client_busy.pop(p.op.client, None)
                self.stats["unknown"] += 1
                if p.op.kind != "read":
                    p.op.complete = None  # unknown outcome: may or may not have taken effect
                    self.history.append(p.op)

    # ------------------------------------------------------------ nemesis
    def voters(self) -> tuple[int, ...]:
        leaders = [n for n in self.nodes.values() if n.alive and n.raw.raft.role == Role.LEADER]
        if leaders:
            return max(leaders, key=lambda n: n.raw.raft.term).raw.raft.conf.voters
        return tuple(self.nodes)

    def nemesis(self) -> None:
        o = self.opts
        choices: list[str] = ["heal", "heal"]
        if o.partition and len(self.nodes) > 1:
            choices += ["halves", "isolate", "oneway"]
        if o.crash:
            choices += ["crash", "restart", "restart"]
        if o.transfer:
            choices += ["transfer"]
        if o.membership:
            choices += ["member"]
        what = self.rng.choice(choices)
        ids = sorted(self.nodes)
        if what == "heal":
            self.net.heal()
            self.log("heal")
        elif what == "halves":
            self.rng.shuffle(ids)
            k = self.rng.randint(1, len(ids) // 2)
            self.net.partition([set(ids[:k]), set(ids[k:])])
            self.log(f"partition {ids[:k]} | {ids[k:]}")
        elif what == "isolate":
            x = self.rng.choice(ids)
            self.net.partition([{x}, set(ids) - {x}])
            self.log(f"isolate {x}")
        elif what == "oneway":
            self.rng.shuffle(ids)
            k = self.rng.randint(1, len(ids) - 1)
            self.net.partition([set(ids[:k]), set(ids[k:])], one_way=True)
            self.log(f"one-way cut {ids[:k]} -> {ids[k:]}")
        elif what == "crash":
            alive = [n for n in self.nodes.values() if n.alive]
            if alive:
                n = self.rng.choice(alive)
                n.crash()
                self.stats["crashes"] += 1
                self.log(f"crash n{n.id}")
        elif what == "restart":
            dead = [n for n in self.nodes.values() if not n.alive]
            if dead:
                n = self.rng.choice(dead)
                n.start()
                self.log(f"restart n{n.id}")
        elif what == "transfer":
            leaders = [n for n in self.nodes.values() if n.alive and n.raw.raft.role == Role.LEADER]
            if leaders:
                ld = self.rng.choice(leaders)
                others = [v for v in ld.raw.raft.conf.voters if v != ld.id]
                if others:
                    to = self.rng.choice(others)
                    try:
                        ld.raw.transfer_leader(to)
                        self.stats["transfers"] += 1
                        self.log(f"transfer n{ld.id} -> n{to}")
                    except ProposalDropped:
                        pass
                    ld.pump()
        elif what == "member":
            self.membership_change()

    def membership_change(self) -> None:
        leaders = [n for n in self.nodes.values() if n.alive and n.raw.raft.role == Role.LEADER]
        if not leaders:
            return
        ld = max(leaders, key=lambda n: n.raw.raft.term)
        conf = ld.raw.raft.conf
        cc: ConfChange | None = None
        if conf.learners:
            cc = ConfChange(ConfChangeType.ADD_VOTER, conf.learners[0])
        elif len(conf.voters) > 2 and self.rng.random() < 0.5:
            cc = ConfChange(ConfChangeType.REMOVE, self.rng.choice(conf.voters))
        elif len(conf.voters) < (self.opts.grow_to or self.opts.nodes):
            nid = self.next_id
            self.next_id += 1
            # A fresh node starts empty with no membership: it learns it from the leader's snapshot/log.
            self.nodes[nid] = SimNode(nid, self, None)
            cc = ConfChange(ConfChangeType.ADD_LEARNER, nid)
        if cc is None:
            return
        try:
            ld.raw.propose_conf_change(cc)
            self.stats["conf_changes"] += 1
            self.log(f"n{ld.id} proposes {cc.type.name} n{cc.node_id}")
        except ProposalDropped as exc:
            self.log(f"conf change refused: {exc}")
        ld.pump()

    # ------------------------------------------------------------ main loop
    def deliver(self, target: int, kind: str, payload: Any) -> None:
        node = self.nodes.get(target)
        if node is None:
            return
        if kind == "restart":
            if not node.alive and not node.raw.raft.removed and not node.decommissioned:
                node.start()
                self.log(f"restart n{node.id}")
            return
        if not node.alive:
            return
        if kind == "msg":
            m: Message = payload
            if (m.frm, m.to) in self.net.cut:
                return
            if m.frm in node.sm.removed:
                # As the real peer transport (node/server/peer.py): traffic from a member that an
                # applied change removed is refused, and the refusal tells the sender, which stops.
                self.schedule(self.rng.randint(1, self.opts.max_delay), m.frm, "refused", node.id)
                return
            if m.type.name == "SNAP" and m.snap_offset == 0:
                self.stats["snapshots_sent"] += 1
            node.raw.step(m)
            self.net.delivered += 1
        elif kind == "fsync":
            node.finish(payload)
            return
        elif kind == "refused":
            if not node.decommissioned:
                node.decommissioned = True
                node.crash()
                self.log(f"n{node.id} refused as removed by n{payload}, stopped for good")
            return
        elif kind == "tick":
            node.raw.tick()
        elif kind == "crash":
            node.crash()
            self.stats["crashes"] += 1
            self.log(f"crash leader n{node.id}")
            self.schedule(self.rng.randint(TICK, 8 * TICK), node.id, "restart", None)
            return
        node.pump()

    def run_until(self, end: int, chaos: bool) -> None:
        next_fault = self.now + TICK * self.rng.randint(*self.opts.fault_every)
        while self.now < end:
            # One tick: every node ticks (with jitter), clients act, then events until the next tick.
            tick_end = self.now + TICK
            for n in list(self.nodes.values()):
                if n.alive:
                    self.schedule(self.rng.randint(0, TICK - 1), n.id, "tick", None)
            for c in range(self.opts.clients if self.clients_active else 0):
                if self.rng.random() < 0.5:
                    self.client_step(c)
            while self.events and self.events[0][0] < tick_end:
                t, _, target, kind, payload = heapq.heappop(self.events)
                self.now = max(self.now, t)
                self.deliver(target, kind, payload)
            self.now = tick_end
            self.expire_ops()
            if chaos and self.now >= next_fault:
                self.nemesis()
                next_fault = self.now + TICK * self.rng.randint(*self.opts.fault_every)
            self.retire_removed()

    def retire_removed(self) -> None:
        """Stop nodes whose removal they have applied (their process would exit)."""
        for n in self.nodes.values():
            if n.alive and n.raw.raft.removed and n.raw.raft.role != Role.LEADER:
                n.crash()
                self.log(f"n{n.id} removed, stopped")

    def heal_all(self) -> None:
        self.chaos = False
        self.net.heal()
        for n in self.nodes.values():
            if not n.alive and not n.raw.raft.removed and not n.decommissioned:
                n.start()
        self.log("final heal")

    def run(self) -> SimResult:
        with self._bugs():
            self.run_until(TICK * self.opts.ticks, chaos=True)
            self.heal_all()
            # After healing the network behaves like TCP between live nodes: no loss, small delays.
            saved = (self.opts.drop, self.opts.duplicate, self.opts.max_delay, self.opts.long_delay)
            self.opts.drop, self.opts.duplicate, self.opts.max_delay, self.opts.long_delay = (
                0.0, 0.0, 3, 0.0)
            self.run_until(self.now + TICK * self.opts.election_tick * 6, chaos=False)
            # Quiesce: clients stop, and within a bounded time every member must catch up.
            self.clients_active = False
            for _ in range(self.opts.election_tick * 20):
                self.run_until(self.now + TICK, chaos=False)
                if self.converged():
                    break
            self.opts.drop, self.opts.duplicate, self.opts.max_delay, self.opts.long_delay = saved
            self.final_checks()
        return self.check_history()

    def current_leaders(self) -> tuple[SimNode | None, list[SimNode]]:
        """The highest-term live leader, and every live leader that is a member of its configuration.

        A node removed from the cluster may still believe it leads an old term (its removal never
        reached it, and the members no longer talk to it); it is not part of the cluster's liveness.
        """
        leaders = [n for n in self.nodes.values() if n.alive and n.raw.raft.role == Role.LEADER]
        if not leaders:
            return None, []
        top = max(leaders, key=lambda n: n.raw.raft.term)
        conf = top.raw.raft.conf
        members = set(conf.voters) | set(conf.learners)
        return top, [n for n in leaders if n.id in members]

    def converged(self) -> bool:
        top, leaders = self.current_leaders()
        if top is None or len(leaders) != 1:
            return False
        r = top.raw.raft
        members = set(r.conf.voters) | set(r.conf.learners)
        return all(n.applied >= r.log.committed for n in self.nodes.values()
                   if n.alive and n.id in members)

    def final_checks(self) -> None:
        live = [n for n in self.nodes.values() if n.alive]
        top, leaders = self.current_leaders()
        if top is None or len(leaders) != 1:
            self.fail(f"Liveness: {len(leaders)} leaders among the members after healing (expected 1)")
        assert top is not None
        ld = top
        members = set(ld.raw.raft.conf.voters) | set(ld.raw.raft.conf.learners)
        target = ld.raw.raft.log.committed
        for n in live:
            if n.id in members and n.applied < target:
                self.fail(f"Liveness: node {n.id} applied {n.applied} < leader commit {target}")
        for idx, (term, _) in self.committed.items():
            if idx > ld.raw.raft.log.offset and ld.raw.raft.log.term(idx) != term:
                self.fail(f"committed entry {idx}/{term} lost from the final leader's log")

    def check_history(self) -> SimResult:
        for op_id in list(self.pending):
            p = self.pending.pop(op_id)
            if p.op.kind != "read":
                p.op.complete = None
                self.history.append(p.op)
        res = check([to_op(c) for c in self.history], RegisterModel())
        if res.ok is False:
            self.fail(f"history is not linearizable:\n{res.explain()}")
        return SimResult(self.seed, self.stats, len(self.history), self.net.sent)


@dataclass
class SimResult:
    seed: int
    stats: dict[str, int]
    history_len: int
    messages: int


def run_seed(seed: int, **kw: Any) -> SimResult:
    """Run one schedule; raises :class:`SafetyViolation` naming the seed if any check fails."""
    return Simulation(seed, SimOptions(**kw)).run()
