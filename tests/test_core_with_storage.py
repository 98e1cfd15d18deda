"""The Raft core on the real WAL: stopping every node at once never loses an acknowledged write.

Three RawNodes in one process persist every Ready with :class:`DiskStorage` before releasing the
messages that depend on it. Writes are "acknowledged" when the leader applies them. Then every node
is stopped at once: in-flight Readies that were not yet saved are thrown away, as a ``kill -9`` would.
All nodes restart from their directories, elect a leader, and every acknowledged write must be there.
"""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path

from coterie.node.raft import ConfState, EntryType, Message, RaftConfig, RawNode, Role
from coterie.node.storage import DiskStorage

IDS = (1, 2, 3)


class Cluster:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.stores: dict[int, DiskStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        self.applied: dict[int, list[bytes]] = {}
        self.queue: deque[Message] = deque()
        for i in IDS:
            self.start(i)

    def start(self, i: int) -> None:
        store = DiskStorage.open(self.root / f"n{i}")
        st = store.initial_state()
        self.stores[i] = store
        self.nodes[i] = RawNode(RaftConfig(id=i), random.Random(self.rng.random()),
                                hard_state=st.hard_state, snapshot=st.snapshot, entries=st.entries,
                                conf_state=ConfState(IDS))
        self.applied[i] = []

    def pump(self, rounds: int = 1000, lose: float = 0.0) -> None:
        """Handle Readies and deliver messages until quiet; ``lose`` drops messages at random."""
        for _ in range(rounds):
            busy = False
            for i, n in self.nodes.items():
                if n.has_ready():
                    busy = True
                    rd = n.ready()
                    self.queue.extend(rd.messages)
                    self.stores[i].save(rd.hard_state, rd.entries, rd.snapshot, sync=rd.must_sync)
                    self.queue.extend(rd.persisted_messages)
                    self.applied[i].extend(e.data for e in rd.committed_entries
                                           if e.type == EntryType.NORMAL and e.data)
                    n.advance(rd)
            while self.queue:
                busy = True
                m = self.queue.popleft()
                if self.rng.random() >= lose:
                    self.nodes[m.to].step(m)
            if not busy:
                return

    def elect(self) -> RawNode:
        for _ in range(200):
            for n in self.nodes.values():
                n.tick()
            self.pump()
            leaders = [n for n in self.nodes.values() if n.status().role == Role.LEADER]
            if leaders:
                return leaders[0]
        raise AssertionError("no leader elected")

    def kill_all(self) -> None:
        """Every process dies at once: unsaved Readies and undelivered messages are gone."""
        for n in self.nodes.values():
            if n.has_ready():
                n.ready()  # taken but never saved
        self.queue.clear()
        for s in self.stores.values():
            s.close()


def test_restart_all_nodes_loses_no_acknowledged_write(tmp_path: Path) -> None:
    c = Cluster(tmp_path, seed=7)
    acked: set[bytes] = set()
    for rnd in range(3):
        leader = c.elect()
        lid = leader.id
        for k in range(60):
            leader.propose(f"r{rnd}-w{k}".encode())
            if k % 7 == 0:
                c.pump(lose=0.05)
        c.pump()
        acked |= set(c.applied[lid])
        # Leave some proposals in flight at the moment of the crash.
        for k in range(10):
            leader.propose(f"r{rnd}-inflight{k}".encode())
        c.kill_all()
        for i in IDS:
            c.start(i)
        leader = c.elect()
        c.pump()
        for i in IDS:
            missing = sorted(acked - set(c.applied[i]))
            assert not missing, f"node {i} lost acknowledged writes after restart: {missing[:5]}"
    assert len(acked) >= 150


def test_restart_with_compaction(tmp_path: Path) -> None:
    """Snapshots and WAL compaction keep acknowledged state across a full restart."""
    c = Cluster(tmp_path, seed=3)
    leader = c.elect()
    for k in range(100):
        leader.propose(f"w{k}".encode())
    c.pump()
    for i, n in c.nodes.items():
        data = b"\n".join(c.applied[i])
        snap = n.create_snapshot(data)
        c.stores[i].save_snapshot(snap)
    c.kill_all()
    for i in IDS:
        c.start(i)
        st = c.stores[i].initial_state()
        assert st.snapshot is not None
        restored = st.snapshot.data.split(b"\n")
        assert restored[-1] == b"w99"
    leader = c.elect()
    leader.propose(b"after")
    c.pump()
    for i in IDS:
        assert c.applied[i][-1] == b"after"
