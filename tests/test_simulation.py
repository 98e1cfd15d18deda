"""The deterministic simulation: thousands of hostile schedules, every safety property checked.

Each test runs a block of seeds; a failure names the seed, which replays exactly with
``python -m tests.sim.soak --seed N``.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from tests.sim.cluster import BUGS, SafetyViolation, run_seed

SEEDS_PER_BLOCK = 125
BLOCKS = int(os.environ.get("COTERIE_SIM_BLOCKS", "16"))  # 16 x 125 = 2,000 schedules


@pytest.mark.parametrize("block", range(BLOCKS))
def test_random_schedules(block: int) -> None:
    """Random drops, duplicates, delays, partitions (incl. one-way), crashes with loss of unsynced
    writes, snapshots, transfers and membership changes; 3-node and 5-node clusters alternate."""
    ops = 0
    for seed in range(block * SEEDS_PER_BLOCK, (block + 1) * SEEDS_PER_BLOCK):
        nodes = 3 if seed % 2 == 0 else 5
        r = run_seed(seed, nodes=nodes)
        ops += r.history_len
    assert ops > 0


# Where each deliberate bug shows up: the world it needs (stale vote responses need elections without
# PreVote, where candidates bump terms often) and how many seeds to try at most.
BUG_WORLDS: dict[str, dict[str, object]] = {
    "vote_any_log": {"nodes": 5},
    "ack_before_fsync": {"nodes": 5, "profile": "crashy"},
    "read_local": {"nodes": 3},
    "stale_votes": {"nodes": 5, "profile": "plain-raft", "clients": 6},
    # Work done while a save is in flight (RawNode.take_messages): holding back what must wait, and
    # advance() coping with a log that a new leader rewrote meanwhile.
    "early_acks": {"nodes": 5, "profile": "crashy"},
    "stable_any_term": {"nodes": 3, "profile": "storm", "slow_fsync": 0.3, "early_send": 1.0},
}


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_injected_bug_is_caught(bug: str) -> None:
    """Prove the checks can fail: each deliberate bug is caught within a bounded range of seeds."""
    kw = BUG_WORLDS[bug]
    # 1200: stale_votes is first caught at seed 523 (Election Safety) and stable_any_term at 918 (a
    # restarted node lost a committed entry). With a bound of 400, stale_votes was "caught" at seed 31
    # only by a Liveness failure (a removed node that never learnt its removal kept deposing leaders,
    # which the simulation now stops as the real peer transport does), and stable_any_term's seed-215
    # schedule diverges since then.
    for seed in range(1200):
        try:
            run_seed(seed, bugs=frozenset({bug}), **kw)
        except SafetyViolation as exc:
            print(f"{bug}: caught at seed {seed}: {str(exc).splitlines()[0]}")
            return
    pytest.fail(f"bug {bug!r} ({BUGS[bug]}) was not caught by the simulation")


def test_core_keeps_working_while_saves_are_in_flight() -> None:
    """Every host ticks, steps, takes proposals and reads, and sends ``RawNode.take_messages()``
    while its Ready's save is in flight, and saves are often slower than an election timeout: the
    same safety, durability and linearizability checks hold (3- and 5-node clusters)."""
    for seed in range(100):
        run_seed(seed, nodes=3 if seed % 2 == 0 else 5, profile="slow-disk")


def test_single_voter_that_grows() -> None:
    """A one-node cluster (its own vote must be durable before it leads) that adds learners,
    promotes them and shrinks again, under crashes with loss of unsynced writes."""
    for seed in range(150):
        run_seed(seed, nodes=1, grow_to=3)


def test_seed_replays_exactly() -> None:
    a = run_seed(12345, nodes=5)
    b = run_seed(12345, nodes=5)
    assert a.stats == b.stats and a.messages == b.messages and a.history_len == b.history_len


def test_figure8_bug_is_caught_by_the_scripted_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    """Committing an earlier term's entry by counting replicas (the bug Figure 8 warns about) makes
    the scripted Figure 8 run diverge: the term-4 leader commits 2/2, and the term-5 leader later
    overwrites it, which the follower's log refuses as an overwrite of a committed entry.

    Random schedules rarely build Figure 8's exact interleaving of three leaders, so this bug is shown
    with the scripted scenario; the other injected bugs are caught by random schedules above.
    """
    from coterie.node.raft import InvariantViolation
    from coterie.node.raft.raft import Raft
    from tests.scenario.interp import run_file

    path = pathlib.Path(__file__).parent / "scenario" / "testdata" / "03_figure8_overwrite.txt"
    text = path.read_text()
    assert run_file(text)[0] == text  # the correct core reproduces the expected output
    monkeypatch.setattr(Raft, "_commit_ok", lambda self, index: True)
    try:
        rewritten, _ = run_file(text)
    except InvariantViolation as exc:
        assert "overwrite committed" in str(exc)
    else:
        assert rewritten != text, "the Figure 8 bug went unnoticed"


def test_torn_first_save_bootstraps_again() -> None:
    """A crash during an initial member's very first save can leave a prefix of the bootstrap entries
    without the hard state (entries are written before it). Restarted with that, the node bootstraps
    again (term 1, every initial member committed, the entries to be persisted again) instead of
    starting at term 0 with a partial membership; anything else on disk is never treated so."""
    import random

    from coterie.node.raft import ConfState, HardState, RaftConfig, RawNode

    conf = ConfState((1, 2, 3))
    fresh = RawNode(RaftConfig(id=1), random.Random(1), conf_state=conf)
    rd = fresh.ready()
    assert [e.index for e in rd.entries] == [1, 2, 3] and rd.hard_state == HardState(1, 0, 3)
    for keep in range(len(rd.entries) + 1):
        raw = RawNode(RaftConfig(id=1), random.Random(1), hard_state=HardState(),
                      entries=list(rd.entries[:keep]), conf_state=conf)
        st = raw.status()
        assert (st.term, st.commit, st.last_index, st.conf_state) == (1, 3, 3, conf), keep
        again = raw.ready()
        assert again.entries == rd.entries and again.hard_state == rd.hard_state and again.must_sync
    # A log that is not a prefix of the bootstrap entries is left alone.
    other = RawNode(RaftConfig(id=1), random.Random(1), hard_state=HardState(),
                    entries=list(rd.entries[:2]), conf_state=ConfState((1, 3)))
    assert other.status().term == 0 and other.status().commit == 0
