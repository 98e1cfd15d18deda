"""A small interpreter for scripted Raft scenarios, in the style of etcd raft's interaction tests.

A scenario file (``tests/scenario/testdata/*.txt``) is a sequence of commands, each followed by a
``----`` line and the output the command is expected to print, ended by a blank line::

    # comments (lines starting with '#') and blank lines are kept verbatim
    campaign 1
    ----
    ok

``tests/test_scenarios.py`` runs every file and fails with a unified diff on any mismatch. To
regenerate the expected outputs after a deliberate change (then read the diff!)::

    COTERIE_REWRITE=1 .venv/bin/pytest tests/test_scenarios.py      # or: pytest --rewrite ...

A command written without ``----`` gets its output filled in by a rewrite, so new scenarios are
written as commands only and regenerated.

The host modelled here is synchronous: ``process-ready`` persists a Ready into the node's in-memory
store, queues both ``messages`` and ``persisted_messages`` into the network (the fsync is done),
applies committed entries and calls ``advance()``. ``crash`` throws away everything that was not
taken in a Ready (unstable entries, unsent messages, volatile state) and restarts the node from its
store.
Each node's rng is ``random.Random(node id)`` (also after a restart), so election timeouts are
deterministic.

Output notation: a (term, index) pair is printed ``term/index`` like etcd (``prev=1/2`` is the entry
at index 2 of term 1); entries print as ``term/index EntryNormal "data"`` or
``term/index EntryConfChange add-learner 4``; messages as ``from->to TYPE term=T ...``.

Commands (IDs are node ids, lists are written ``(1,2,3)`` without spaces):

``add-nodes N [voters=(..)] [learners=(..)] [election-tick=10] [heartbeat-tick=1] [pre-vote=true]
[check-quorum=true] [max-size-per-msg=N] [max-inflight=N] [snapshot-chunk-size=N] [log=(t,t,..)]
[term=T] [vote=V] [commit=C]``
    Create N nodes with the next free ids. ``voters``/``learners`` is the bootstrap membership of
    a new cluster (default for the first nodes: they are the voters); its Ready (the membership
    written as committed entries) is persisted and applied at once. Nodes added later without it
    join with no membership and learn it from the leader's log. ``log=`` gives the terms of
    entries 1, 2, ... already in the node's store, with ``term``/``vote``/``commit`` its stored
    hard state (to build divergent logs); such a node gets its membership from an empty snapshot
    at index 0.
``campaign ID``
    Start an election now (PreVote first if enabled).
``tick ID [N]``, ``tick-election ID...``, ``tick-heartbeat ID...``
    Tick N times (default 1), ``election-tick`` times or ``heartbeat-tick`` times.
``propose ID DATA``, ``propose-conf-change ID add-voter|add-learner|remove NODE``
    Propose; prints ``term/index`` or the typed error (with the leader hint).
``read-index ID CTX``, ``transfer-leader FROM TO``
    Request a ReadIndex read / a leadership transfer; prints ``ok`` or the error.
``process-ready ID...``
    Take one Ready from each node, print it, persist it, queue its messages, apply, ``advance()``.
``deliver-msgs [drop=(ids)] [from=ID] [type=T] ID...``
    Step the queued messages addressed to each ID into it (those crossing a partition are dropped).
    ``drop=`` lists recipients whose messages are discarded instead of delivered; ``from=`` and
    ``type=`` (e.g. ``APP``) restrict which queued messages are handled, the others stay queued.
``stabilize [ID...]``
    Repeat process-ready and deliver-msgs on the given nodes (default all) until nothing is left.
``isolate ID...``, ``partition (ids) (ids)...``, ``heal``
    Cut nodes off from everyone else / split the network into groups / restore full connectivity.
    A message crossing a cut is dropped when sent (marked in the Ready) or, if it was already
    queued, when delivered. An isolated node is how a scenario models a node that is down.
``crash ID``
    Lose unpersisted state and restart from the store; messages queued for the node are dropped.
``compact ID``
    Host snapshot of the state machine at the applied index (``RawNode.create_snapshot``), then
    compact the store.
``status ID...``, ``raft-log ID...``, ``log-terms ID...``, ``sm ID...``
    Print a node's status (and the leader's progress), its in-memory log (one entry a line, or only
    the entries' terms in one line, as in the paper's figures), its state machine.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from coterie.node.raft import (
    NONE,
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
    Snapshot,
    SnapshotMetadata,
    confchange,
)

MT = MessageType

_CC_NAMES = {
    "add-voter": ConfChangeType.ADD_VOTER,
    "add-learner": ConfChangeType.ADD_LEARNER,
    "remove": ConfChangeType.REMOVE,
}
_CC_LABEL = {v: k for k, v in _CC_NAMES.items()}


class ScenarioError(Exception):
    """A malformed scenario command (not a Raft outcome)."""


# ====================================================================== formatting
def fmt_data(data: bytes) -> str:
    return '"' + data.decode("utf-8", errors="backslashreplace").replace('"', '\\"') + '"'


def fmt_ids(ids: tuple[int, ...] | list[int]) -> str:
    return "(" + ",".join(str(i) for i in ids) + ")"


def fmt_conf(cs: ConfState) -> str:
    return f"voters={fmt_ids(cs.voters)} learners={fmt_ids(cs.learners)}"


def fmt_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        try:
            cc = confchange.decode(e.data)
            return f"{e.term}/{e.index} EntryConfChange {_CC_LABEL[cc.type]} {cc.node_id}"
        except ValueError:
            return f"{e.term}/{e.index} EntryConfChange {fmt_data(e.data)}"
    return f"{e.term}/{e.index} EntryNormal {fmt_data(e.data)}"


def fmt_entries(ents: tuple[Entry, ...] | list[Entry]) -> str:
    return "[" + ", ".join(fmt_entry(e) for e in ents) + "]"


def fmt_msg(m: Message) -> str:
    head = f"{m.frm}->{m.to} {m.type.name} term={m.term}"
    t = m.type
    parts: list[str] = []
    if t == MT.APP:
        parts.append(f"prev={m.log_term}/{m.index} commit={m.commit}")
        if m.entries:
            parts.append(f"entries={fmt_entries(m.entries)}")
    elif t == MT.APP_RESP:
        parts.append(f"index={m.index}")
        if m.reject:
            parts.append(f"REJECT hint={m.log_term}/{m.reject_hint}")
    elif t in (MT.VOTE, MT.PRE_VOTE):
        parts.append(f"last={m.log_term}/{m.index}")
        if m.transfer:
            parts.append("transfer")
    elif t in (MT.VOTE_RESP, MT.PRE_VOTE_RESP):
        if m.reject:
            parts.append("REJECT")
    elif t == MT.HEARTBEAT:
        parts.append(f"commit={m.commit}")
        if m.read_seq:
            parts.append(f"read_seq={m.read_seq}")
    elif t == MT.HEARTBEAT_RESP:
        if m.read_seq:
            parts.append(f"read_seq={m.read_seq}")
    elif t == MT.SNAP:
        meta = m.snapshot
        if meta is not None:
            parts.append(f"snap={meta.term}/{meta.index} {fmt_conf(meta.conf_state)}")
        parts.append(f"offset={m.snap_offset} data={fmt_data(m.snap_data)}")
        if m.snap_done:
            parts.append("done")
    elif t == MT.SNAP_RESP:
        parts.append(f"index={m.index} offset={m.snap_offset}")
        if m.reject:
            parts.append("REJECT")
    elif t == MT.READ_INDEX:
        parts.append(f"ctx={fmt_data(m.context)}")
    elif t == MT.READ_INDEX_RESP:
        parts.append(f"index={m.index} ctx={fmt_data(m.context)}")
        if m.reject:
            parts.append("REJECT")
    return " ".join([head, *parts])


def fmt_error(exc: ProposalDropped) -> str:
    return f"error: {type(exc).__name__}: {exc} [leader_hint={exc.leader_hint}]"


# ====================================================================== argument parsing
def parse_ids(s: str) -> tuple[int, ...]:
    s = s.strip()
    if s.startswith("(") and s.endswith(")"):
        s = s[1:-1]
    return tuple(int(x) for x in s.split(",") if x.strip())


def parse_bool(s: str) -> bool:
    if s in ("true", "false"):
        return s == "true"
    raise ScenarioError(f"expected true or false, got {s!r}")


@dataclass
class Args:
    pos: list[str]
    kw: dict[str, str]

    def take_kw(self, name: str, default: str | None = None) -> str | None:
        return self.kw.pop(name, default)

    def done(self) -> None:
        if self.kw:
            raise ScenarioError(f"unknown arguments: {sorted(self.kw)}")


def split_args(line: str) -> tuple[str, Args]:
    """Split a command line into its name, positional and ``key=value`` arguments.

    Double-quoted tokens are always positional (``propose 1 "a=b c"`` proposes ``a=b c``).
    """
    pos: list[str] = []
    kw: dict[str, str] = {}
    for quoted, bare in _TOKEN.findall(line):
        if quoted:
            pos.append(quoted[1:-1])
            continue
        key, sep, val = bare.partition("=")
        if sep and key:
            kw[key] = val
        else:
            pos.append(bare)
    if not pos:
        raise ScenarioError("empty command")
    return pos[0], Args(pos[1:], kw)


_TOKEN = re.compile(r'("[^"]*")|(\S+)')


# ====================================================================== host model
@dataclass
class Store:
    """What survives a crash: the persisted hard state, snapshot and entries after it."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries = []
        if rd.entries:
            first = rd.entries[0].index
            self.entries = [e for e in self.entries if e.index < first]
            base = self.entries[-1].index if self.entries else self.snap_index()
            if first != base + 1:
                raise AssertionError(f"store gap: entry {first} after {base}")
            self.entries.extend(rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state

    def snap_index(self) -> int:
        return self.snapshot.metadata.index if self.snapshot is not None else 0

    def compact(self, snap: Snapshot) -> None:
        self.snapshot = snap
        self.entries = [e for e in self.entries if e.index > snap.metadata.index]


class Node:
    """One simulated host: a RawNode, its store and its state machine (applied data, in order)."""

    def __init__(self, cfg: RaftConfig, store: Store, bootstrap: ConfState | None) -> None:
        self.cfg = cfg
        self.store = store
        self.sm: list[str] = []
        self.applied = 0
        self.rn = self._start(bootstrap)

    def _start(self, bootstrap: ConfState | None = None) -> RawNode:
        """A new RawNode from the store (``bootstrap``: the membership of a brand-new cluster)."""
        st = self.store
        snap = st.snapshot
        self.sm = snap.data.decode().split() if snap is not None and snap.data else []
        self.applied = st.snap_index()
        return RawNode(
            self.cfg,
            random.Random(self.cfg.id),
            hard_state=st.hard_state,
            snapshot=snap,
            entries=list(st.entries),
            conf_state=bootstrap,
        )

    def restart(self) -> None:
        self.rn = self._start()

    @property
    def id(self) -> int:
        return self.cfg.id


# ====================================================================== interpreter
class Interpreter:
    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.mailbox: dict[int, list[Message]] = {}
        self.group: dict[int, int] = {}
        """Partition group of each node; messages between different groups are dropped."""
        self._next_group = 1
        self.out: list[str] = []
        self._commands: dict[str, Callable[[Args], None]] = {
            "add-nodes": self.cmd_add_nodes,
            "campaign": self.cmd_campaign,
            "tick": self.cmd_tick,
            "tick-election": self.cmd_tick_election,
            "tick-heartbeat": self.cmd_tick_heartbeat,
            "propose": self.cmd_propose,
            "propose-conf-change": self.cmd_propose_conf_change,
            "read-index": self.cmd_read_index,
            "transfer-leader": self.cmd_transfer_leader,
            "process-ready": self.cmd_process_ready,
            "deliver-msgs": self.cmd_deliver_msgs,
            "stabilize": self.cmd_stabilize,
            "isolate": self.cmd_isolate,
            "partition": self.cmd_partition,
            "heal": self.cmd_heal,
            "crash": self.cmd_crash,
            "compact": self.cmd_compact,
            "status": self.cmd_status,
            "raft-log": self.cmd_raft_log,
            "log-terms": self.cmd_log_terms,
            "sm": self.cmd_sm,
        }

    # ------------------------------------------------------------ entry point
    def run(self, command: str) -> str:
        """Run one command line; returns its output (never empty, never with blank lines)."""
        name, args = split_args(command)
        handler = self._commands.get(name)
        if handler is None:
            raise ScenarioError(f"unknown command {name!r}")
        self.out = []
        try:
            handler(args)
        except (IndexError, KeyError, ValueError) as exc:  # missing or malformed arguments
            raise ScenarioError(f"bad arguments: {exc!r}") from exc
        args.done()
        for n in self.nodes.values():
            n.rn.raft.log.check()
        lines = [ln.rstrip() for ln in self.out if ln.strip()]
        return "\n".join(lines) if lines else "ok"

    def p(self, line: str) -> None:
        self.out.append(line)

    def node(self, s: str) -> Node:
        nid = int(s)
        if nid not in self.nodes:
            raise ScenarioError(f"no node {nid}")
        return self.nodes[nid]

    def ids(self, a: Args) -> list[Node]:
        return [self.node(s) for s in a.pos]

    # ------------------------------------------------------------ cluster setup
    def cmd_add_nodes(self, a: Args) -> None:
        n = int(a.pos[0])
        first = max(self.nodes, default=0) + 1
        new = tuple(range(first, first + n))
        voters_s = a.take_kw("voters")
        learners_s = a.take_kw("learners")
        cs: ConfState | None = None
        if voters_s is not None or learners_s is not None or not self.nodes:
            voters = parse_ids(voters_s) if voters_s is not None else new
            learners = parse_ids(learners_s) if learners_s is not None else ()
            cs = ConfState(tuple(sorted(voters)), tuple(sorted(learners)))
        # Values of mixed types keyed by RaftConfig field name (checked by replace() at run time).
        cfg_kw: dict[str, Any] = {}
        for opt, name, conv in (
            ("election-tick", "election_tick", int),
            ("heartbeat-tick", "heartbeat_tick", int),
            ("pre-vote", "pre_vote", parse_bool),
            ("check-quorum", "check_quorum", parse_bool),
            ("max-size-per-msg", "max_size_per_msg", int),
            ("max-inflight", "max_inflight_msgs", int),
            ("snapshot-chunk-size", "snapshot_chunk_size", int),
        ):
            val = a.take_kw(opt)
            if val is not None:
                cfg_kw[name] = conv(val)
        log_s = a.take_kw("log")
        terms = parse_ids(log_s) if log_s is not None else ()
        entries = [Entry(t, i + 1) for i, t in enumerate(terms)]
        hs = HardState(
            term=int(a.take_kw("term") or (terms[-1] if terms else 0)),
            vote=int(a.take_kw("vote") or NONE),
            commit=int(a.take_kw("commit") or 0),
        )
        a.done()
        for nid in new:
            cfg = replace(RaftConfig(id=nid), **cfg_kw)
            store = Store(hard_state=hs, entries=list(entries))
            if entries and cs is not None:
                # A node built from existing state learns its membership from its "snapshot" at
                # index 0 (the state before entry 1), as a restarted node would.
                store.snapshot = Snapshot(SnapshotMetadata(0, 0, cs))
            node = Node(cfg, store, None if entries else cs)
            self.nodes[nid] = node
            self.mailbox.setdefault(nid, [])
            self.group[nid] = 0
            if node.rn.has_ready():
                # The bootstrap Ready (the initial membership written as committed entries): persist
                # and apply it here, quietly, so scenarios start from a bootstrapped cluster.
                rd = node.rn.ready()
                if rd.messages or rd.persisted_messages:
                    raise AssertionError(f"bootstrap Ready of {nid} sends messages")
                self._handle(node, rd)
            how = "joining, no membership" if cs is None else fmt_conf(node.rn.raft.conf)
            st = node.rn.status()
            self.p(
                f"{nid}: {how}; term={st.term} vote={st.vote} commit={st.commit} "
                f"applied={st.applied} last={node.rn.raft.log.last_term()}/{st.last_index}"
            )
        c = replace(RaftConfig(id=first), **cfg_kw)
        self.p(
            f"config: election-tick={c.election_tick} heartbeat-tick={c.heartbeat_tick} "
            f"pre-vote={str(c.pre_vote).lower()} check-quorum={str(c.check_quorum).lower()}"
        )

    # ------------------------------------------------------------ inputs
    def cmd_campaign(self, a: Args) -> None:
        for n in self.ids(a):
            n.rn.campaign()

    def _tick(self, n: Node, count: int) -> None:
        for _ in range(count):
            n.rn.tick()

    def cmd_tick(self, a: Args) -> None:
        n = self.node(a.pos[0])
        self._tick(n, int(a.pos[1]) if len(a.pos) > 1 else 1)

    def cmd_tick_election(self, a: Args) -> None:
        for n in self.ids(a):
            self._tick(n, n.cfg.election_tick)

    def cmd_tick_heartbeat(self, a: Args) -> None:
        for n in self.ids(a):
            self._tick(n, n.cfg.heartbeat_tick)

    def cmd_propose(self, a: Args) -> None:
        n = self.node(a.pos[0])
        try:
            term, index = n.rn.propose(a.pos[1].encode())
        except ProposalDropped as exc:
            self.p(fmt_error(exc))
            return
        self.p(f"proposed {term}/{index}")

    def cmd_propose_conf_change(self, a: Args) -> None:
        n = self.node(a.pos[0])
        typ = _CC_NAMES.get(a.pos[1])
        if typ is None:
            raise ScenarioError(f"unknown conf change {a.pos[1]!r}")
        try:
            term, index = n.rn.propose_conf_change(ConfChange(typ, int(a.pos[2])))
        except ProposalDropped as exc:
            self.p(fmt_error(exc))
            return
        self.p(f"proposed {term}/{index}")

    def cmd_read_index(self, a: Args) -> None:
        n = self.node(a.pos[0])
        try:
            n.rn.read_index(a.pos[1].encode())
        except ProposalDropped as exc:
            self.p(fmt_error(exc))

    def cmd_transfer_leader(self, a: Args) -> None:
        n = self.node(a.pos[0])
        try:
            n.rn.transfer_leader(int(a.pos[1]))
        except ProposalDropped as exc:
            self.p(fmt_error(exc))

    # ------------------------------------------------------------ Ready handling
    def process_ready(self, n: Node) -> None:
        rn = n.rn
        self.p(f"> {n.id} handling Ready")
        if not rn.has_ready():
            self.p("  (no Ready)")
            return
        conf_before = rn.raft.conf
        rd = rn.ready()
        ind = "  "
        if rd.soft_state is not None:
            lead = rd.soft_state.leader
            self.p(f"{ind}SoftState: lead={lead} role={rd.soft_state.role.name}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            self.p(f"{ind}HardState: term={hs.term} vote={hs.vote} commit={hs.commit}")
        if rd.snapshot is not None:
            meta = rd.snapshot.metadata
            self.p(
                f"{ind}Snapshot: {meta.term}/{meta.index} {fmt_conf(meta.conf_state)} "
                f"data={fmt_data(rd.snapshot.data)}"
            )
        self._list("Entries", [fmt_entry(e) for e in rd.entries])
        self._list("Committed", [fmt_entry(e) for e in rd.committed_entries])
        self._list("Messages", [self._fmt_send(m) for m in rd.messages])
        self._list("Messages after persist", [self._fmt_send(m) for m in rd.persisted_messages])
        self._list(
            "ReadStates", [f"index={rs.index} ctx={fmt_data(rs.context)}" for rs in rd.read_states]
        )
        self._handle(n, rd)
        if rn.raft.conf != conf_before:
            self.p(f"{ind}Applied membership: {fmt_conf(rn.raft.conf)}")

    def _handle(self, n: Node, rd: Ready) -> None:
        """The host's work for a Ready: persist (one "fsync"), send, apply, advance."""
        n.store.persist(rd)
        for m in (*rd.messages, *rd.persisted_messages):
            if self._connected(m):
                self.mailbox.setdefault(m.to, []).append(m)
        if rd.snapshot is not None:
            n.sm = rd.snapshot.data.decode().split()
            n.applied = rd.snapshot.metadata.index
        for e in rd.committed_entries:
            if e.index != n.applied + 1:
                raise AssertionError(f"node {n.id} applies {e.index} after {n.applied}")
            if e.type == EntryType.NORMAL and e.data:
                n.sm.append(e.data.decode())
            n.applied = e.index
        n.rn.advance(rd)

    def _connected(self, m: Message) -> bool:
        return self.group.get(m.frm, 0) == self.group.get(m.to, 0)

    def _fmt_send(self, m: Message) -> str:
        return fmt_msg(m) if self._connected(m) else f"{fmt_msg(m)}  (dropped: partition)"

    def _list(self, title: str, items: list[str]) -> None:
        if items:
            self.p(f"  {title}:")
            for it in items:
                self.p(f"    {it}")

    def cmd_process_ready(self, a: Args) -> None:
        for n in self.ids(a):
            self.process_ready(n)

    def _matches(self, m: Message, frm: int | None, typ: MessageType | None) -> bool:
        return (frm is None or m.frm == frm) and (typ is None or m.type == typ)

    def deliver(
        self, n: Node, drop: bool, frm: int | None = None, typ: MessageType | None = None
    ) -> int:
        """Deliver (or drop) the queued messages for ``n`` that match; returns how many."""
        box = self.mailbox.get(n.id, [])
        take = [m for m in box if self._matches(m, frm, typ)]
        if not take:
            return 0
        self.mailbox[n.id] = [m for m in box if not self._matches(m, frm, typ)]
        self.p(f"> {n.id} receiving messages")
        for m in take:
            if drop:
                self.p(f"  dropped: {fmt_msg(m)}")
            elif not self._connected(m):
                self.p(f"  dropped (partition): {fmt_msg(m)}")
            else:
                self.p(f"  {fmt_msg(m)}")
                n.rn.step(m)
        return len(take)

    def cmd_deliver_msgs(self, a: Args) -> None:
        drop_s = a.take_kw("drop")
        drop = set(parse_ids(drop_s)) if drop_s is not None else set()
        frm_s = a.take_kw("from")
        typ_s = a.take_kw("type")
        a.done()
        typ = MessageType[typ_s] if typ_s is not None else None
        targets = self.ids(a) + [self.node(str(i)) for i in sorted(drop) if str(i) not in a.pos]
        for n in targets:
            self.deliver(n, n.id in drop, int(frm_s) if frm_s is not None else None, typ)

    def cmd_stabilize(self, a: Args) -> None:
        nodes = self.ids(a) if a.pos else [self.nodes[i] for i in sorted(self.nodes)]
        for _ in range(10_000):
            busy = False
            for n in nodes:
                if n.rn.has_ready():
                    busy = True
                    self.process_ready(n)
            for n in nodes:
                if self.deliver(n, drop=False):
                    busy = True
            if not busy:
                return
        raise AssertionError("stabilize did not converge")

    # ------------------------------------------------------------ faults
    def cmd_isolate(self, a: Args) -> None:
        for n in self.ids(a):
            self.group[n.id] = self._next_group
            self._next_group += 1

    def cmd_partition(self, a: Args) -> None:
        for grp in a.pos:
            for nid in parse_ids(grp):
                self.group[self.node(str(nid)).id] = self._next_group
            self._next_group += 1

    def cmd_heal(self, a: Args) -> None:
        for nid in self.group:
            self.group[nid] = 0

    def cmd_crash(self, a: Args) -> None:
        for n in self.ids(a):
            lost = n.rn.raft.log.last_index() - n.rn.raft.log.stabled
            dropped = self.mailbox.get(n.id, [])
            self.mailbox[n.id] = []
            for m in dropped:
                self.p(f"  dropped: {fmt_msg(m)}")
            n.restart()
            st = n.rn.status()
            self.p(
                f"{n.id}: restarted, lost {lost} unpersisted entries; term={st.term} "
                f"vote={st.vote} commit={st.commit} last={n.rn.raft.log.last_term()}/"
                f"{st.last_index} snapshot={n.store.snap_index()}"
            )

    def cmd_compact(self, a: Args) -> None:
        for n in self.ids(a):
            snap = n.rn.create_snapshot(" ".join(n.sm).encode())
            n.store.compact(snap)
            meta = snap.metadata
            self.p(
                f"{n.id}: snapshot {meta.term}/{meta.index} {fmt_conf(meta.conf_state)} "
                f"data={fmt_data(snap.data)}; log now starts at {n.rn.status().first_index}"
            )

    # ------------------------------------------------------------ inspection
    def cmd_status(self, a: Args) -> None:
        for n in self.ids(a):
            st = n.rn.status()
            line = (
                f"{n.id}: {st.role.name} term={st.term} vote={st.vote} lead={st.leader} "
                f"commit={st.commit} applied={st.applied} last={st.last_index} "
                f"{fmt_conf(st.conf_state)}"
            )
            if st.lead_transferee != NONE:
                line += f" transferring-to={st.lead_transferee}"
            self.p(line)
            for pid in sorted(st.peers):
                pr = st.peers[pid]
                flags = " learner" if pr.learner else ""
                flags += "" if pr.recent_active else " inactive"
                self.p(f"  {pid}: {pr.state} match={pr.match} next={pr.next}{flags}")

    def cmd_raft_log(self, a: Args) -> None:
        for n in self.ids(a):
            log = n.rn.raft.log
            if len(a.pos) > 1:
                self.p(f"{n.id}:")
            if log.offset:
                self.p(f"  snapshot {log.offset_term}/{log.offset}")
            if not log.entries:
                self.p("  (empty log)")
            for e in log.entries:
                mark = "" if e.index <= log.committed else "  (uncommitted)"
                self.p(f"  {fmt_entry(e)}{mark}")

    def cmd_log_terms(self, a: Args) -> None:
        for n in self.ids(a):
            log = n.rn.raft.log
            terms = " ".join(str(e.term) for e in log.entries)
            snap = f"[snapshot {log.offset_term}/{log.offset}] " if log.offset else ""
            self.p(f"{n.id}: {snap}{terms or '(empty)'} (commit={log.committed})")

    def cmd_sm(self, a: Args) -> None:
        for n in self.ids(a):
            self.p(f"{n.id}: applied={n.applied} data=[{' '.join(n.sm)}]")


# ====================================================================== scenario files
@dataclass
class Block:
    """One command of a scenario file, with the lines before it kept verbatim."""

    preamble: list[str]
    command: str
    expected: str | None
    line: int


def parse_file(text: str) -> tuple[list[Block], list[str]]:
    """Split a scenario into blocks; also returns the trailing comment/blank lines."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pre: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln.strip() or ln.startswith("#"):
            pre.append(ln)
            i += 1
            continue
        cmd, start = ln, i + 1
        i += 1
        expected: str | None = None
        if i < len(lines) and lines[i] == "----":
            i += 1
            out: list[str] = []
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            if i < len(lines):
                i += 1  # the blank line ending the output
            expected = "\n".join(out)
        blocks.append(Block(pre, cmd, expected, start))
        pre = []
    return blocks, pre


def run_file(text: str) -> tuple[str, list[tuple[Block, str]]]:
    """Run a scenario; returns the rewritten file text and each block with its actual output."""
    blocks, tail = parse_file(text)
    interp = Interpreter()
    results: list[tuple[Block, str]] = []
    out: list[str] = []
    for b in blocks:
        try:
            actual = interp.run(b.command)
        except ScenarioError as exc:
            raise ScenarioError(f"line {b.line}: {b.command!r}: {exc}") from exc
        results.append((b, actual))
        pre = b.preamble
        if out:  # every output already ends with one blank line
            while pre and not pre[0].strip():
                pre = pre[1:]
        out.extend(pre)
        out.extend([b.command, "----", actual, ""])
    out.extend(tail)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n", results
