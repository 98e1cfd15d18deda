"""The deterministic simulation: thousands of hostile schedules, every safety property checked.

Each test runs a block of seeds; a failure names the seed, which replays exactly with
``python -m tests.sim.soak --seed N``.
"""

from __future__ import annotations

import os

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


def _find_violation(bug: str, limit: int, **kw: object) -> str:
    for seed in range(limit):
        try:
            run_seed(seed, bugs=frozenset({bug}), **kw)  # type: ignore[arg-type]
        except SafetyViolation as exc:
            return str(exc)
    return ""


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_injected_bug_is_caught(bug: str) -> None:
    """Prove the checks can fail: each deliberate bug must be caught within a bounded seed range."""
    err = _find_violation(bug, limit=400)
    assert err, f"bug {bug!r} ({BUGS[bug]}) was not caught by the simulation"
    print(f"{bug}: {err.splitlines()[0]}")


def test_seed_replays_exactly() -> None:
    a = run_seed(12345, nodes=5)
    b = run_seed(12345, nodes=5)
    assert a.stats == b.stats and a.messages == b.messages and a.history_len == b.history_len
