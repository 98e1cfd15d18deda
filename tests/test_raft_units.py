"""Oracle tests for the small pure pieces of the Raft core: quorum maths, progress, the log."""

from __future__ import annotations

import ast
import pathlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coterie.node.raft import (
    ConfChange,
    ConfChangeType,
    ConfigError,
    ConfState,
    Entry,
    InvariantViolation,
    NotLeader,
    RaftConfig,
    RawNode,
    Role,
    SnapshotMetadata,
    confchange,
)
from coterie.node.raft.log import RaftLog
from coterie.node.raft.progress import (
    Progress,
    ProgressState,
    VoteResult,
    quorum_index,
    vote_result,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
FORBIDDEN = {"asyncio", "socket", "time", "threading", "random", "grpc", "os", "select", "subprocess"}


def test_core_is_pure() -> None:
    """node/raft and node/gossip import no I/O, clock, thread or global-random module
    at run time. ``random`` may be imported only under ``if TYPE_CHECKING:`` (for the ``random.Random``
    annotation: the instance is always passed in by the host, seeded)."""
    for core in ("node/raft", "node/gossip"):
        files = list((ROOT / core).rglob("*.py"))
        assert files, f"{core} has no modules: the purity check would check nothing"
        for path in files:
            tree = ast.parse(path.read_text())
            type_only = {id(n) for top in ast.walk(tree)
                         if isinstance(top, ast.If) and isinstance(top.test, ast.Name)
                         and top.test.id == "TYPE_CHECKING" for n in ast.walk(top)}
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module.split(".")[0]]
                for mod in names:
                    if mod == "random" and id(node) in type_only:
                        continue
                    assert mod not in FORBIDDEN, f"{path}: imports {mod}"


def naive_quorum(voters: list[int], match: dict[int, int]) -> int:
    best = 0
    for cand in {match.get(v, 0) for v in voters} | {0}:
        if sum(1 for v in voters if match.get(v, 0) >= cand) * 2 > len(voters):
            best = max(best, cand)
    return best


@given(st.lists(st.integers(0, 20), min_size=1, max_size=7))
def test_quorum_index_matches_oracle(matches: list[int]) -> None:
    voters = list(range(1, len(matches) + 1))
    m = dict(zip(voters, matches, strict=True))
    assert quorum_index(voters, m) == naive_quorum(voters, m)


@given(st.lists(st.sampled_from([None, True, False]), min_size=1, max_size=7))
def test_vote_result_matches_oracle(cast: list[bool | None]) -> None:
    voters = tuple(range(1, len(cast) + 1))
    votes = {v: c for v, c in zip(voters, cast, strict=True) if c is not None}
    q = len(voters) // 2 + 1
    yes = sum(1 for c in cast if c is True)
    maybe = sum(1 for c in cast if c is not False)
    expect = VoteResult.WON if yes >= q else (VoteResult.LOST if maybe < q else VoteResult.PENDING)
    assert vote_result(voters, votes) == expect


def test_progress_probe_and_replicate() -> None:
    pr = Progress(next_index=10, max_inflight=2)
    assert pr.state == ProgressState.PROBE and not pr.is_paused()
    pr.probe_sent = True
    assert pr.is_paused()
    assert pr.maybe_update(9)  # ack unpauses
    assert not pr.is_paused()
    pr.become_replicate()
    assert pr.next == 10
    pr.inflights.add(11)
    pr.inflights.add(12)
    assert pr.is_paused()
    pr.inflights.free_le(11)
    assert not pr.is_paused()
    # A stale rejection (at or below match) is ignored in replicate state.
    assert not pr.maybe_decr_to(9, 0)
    assert pr.maybe_decr_to(12, 5)
    assert pr.next == pr.match + 1


def test_progress_probe_uses_hint() -> None:
    pr = Progress(next_index=20, max_inflight=4)
    assert not pr.maybe_decr_to(15, 3)  # not the index we probed: stale
    assert pr.maybe_decr_to(19, 7)
    assert pr.next == 8


def ents(*terms: int, start: int = 1) -> list[Entry]:
    return [Entry(t, start + i) for i, t in enumerate(terms)]


def test_log_append_truncates_conflicts() -> None:
    log = RaftLog(SnapshotMetadata(), ents(1, 1, 2, 2), committed=2)
    assert log.maybe_append(2, 1, 2, ents(3, 3, start=3)) == 4
    assert [e.term for e in log.entries] == [1, 1, 3, 3]
    assert log.stabled == 2  # the overwritten suffix is unstable again
    assert log.maybe_append(4, 2, 4, []) is None  # consistency check fails
    with pytest.raises(InvariantViolation):
        log.append(ents(5, start=2))  # would overwrite a committed entry


@given(st.lists(st.integers(1, 5), min_size=1, max_size=30).map(sorted), st.integers(0, 40),
       st.integers(0, 6))
def test_find_conflict_by_term_oracle(terms: list[int], index: int, term: int) -> None:
    log = RaftLog(SnapshotMetadata(), ents(*terms), committed=0)
    i, t = log.find_conflict_by_term(index, term)
    # Oracle: largest i <= min(index, last) whose term <= term (0 if none).
    cands = [j for j in range(0, min(index, len(terms)) + 1) if (terms[j - 1] if j else 0) <= term]
    assert i == max(cands)
    assert t == (terms[i - 1] if i else 0)


def test_log_compaction_and_restore() -> None:
    log = RaftLog(SnapshotMetadata(), ents(1, 1, 2, 2, 3), committed=5)
    log.applied_to(4)
    log.compact_to(3)
    assert log.first_index() == 4 and log.term(3) == 2 and log.term(2) is None
    log.restore(SnapshotMetadata(9, 4, ConfState((1,))))
    assert log.last_index() == 9 and log.committed == 9 and log.entries == []
    log.check()


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="election_tick"):
        RaftConfig(id=1, election_tick=1, heartbeat_tick=1).validate()
    with pytest.raises(ConfigError, match="id"):
        RaftConfig(id=0).validate()


def test_confchange_roundtrip_and_apply() -> None:
    cc = ConfChange(ConfChangeType.ADD_LEARNER, 4, b"addr")
    assert confchange.decode(confchange.encode(cc)) == cc
    cs = confchange.apply(ConfState((1, 2, 3)), cc)
    assert cs == ConfState((1, 2, 3), (4,))
    cs = confchange.apply(cs, ConfChange(ConfChangeType.ADD_VOTER, 4))
    assert cs == ConfState((1, 2, 3, 4), ())
    cs = confchange.apply(cs, ConfChange(ConfChangeType.REMOVE, 1))
    assert cs == ConfState((2, 3, 4), ())
    with pytest.raises(ValueError):
        confchange.decode(b"\x93garbage")


def test_single_node_commits_only_after_persist() -> None:
    """The leader counts itself towards a commit only after its own fsync (thesis 10.2.1)."""
    n = RawNode(RaftConfig(id=1), random.Random(1), conf_state=ConfState((1,)))
    rd = n.ready()  # bootstrap: the membership entry, already committed, to persist and apply
    assert [e.index for e in rd.entries] == [1] and [e.index for e in rd.committed_entries] == [1]
    n.advance(rd)
    n.campaign()
    # Its own vote counts only once the new term and vote are durable.
    assert n.status().role == Role.CANDIDATE
    rd = n.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1 and rd.must_sync
    n.advance(rd)
    assert n.status().role == Role.LEADER
    rd = n.ready()
    assert [e.index for e in rd.entries] == [2] and not rd.committed_entries  # no-op not committed
    n.advance(rd)
    rd = n.ready()
    assert [e.index for e in rd.committed_entries] == [2]
    n.advance(rd)
    _, idx = n.propose(b"x")
    rd = n.ready()
    assert [e.index for e in rd.entries] == [idx] and not rd.committed_entries
    n.advance(rd)
    assert [e.data for e in n.ready().committed_entries] == [b"x"]


def test_follower_proposal_fails_fast_with_hint() -> None:
    n = RawNode(RaftConfig(id=2), random.Random(2), conf_state=ConfState((1, 2, 3)))
    with pytest.raises(NotLeader) as ei:
        n.propose(b"x")
    assert ei.value.leader_hint == 0
