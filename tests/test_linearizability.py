"""Tests for the linearizability checker (tests/sim/linearizability.py).

Hand-written histories with known verdicts, a brute-force oracle on thousands of tiny random
histories, random linearizable histories from a simulated register, mutations that are
non-linearizable by construction, the JSON-lines format and a 10,000-operation performance check.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from tests.sim.linearizability import (
    UNOBSERVED,
    CheckResult,
    Model,
    Op,
    RegisterModel,
    check,
    history_from_jsonl,
    history_to_jsonl,
    random_register_history,
)


# ----------------------------------------------------------------------------------- helpers
def w(c: int, v: Any, t0: float, t1: float | None, key: str = "x", ok: bool | None = True) -> Op:
    op = Op(client=c, key=key, kind="write", value=v, invoke=t0)
    if ok is False:
        return op.as_failed(t1)
    return op if t1 is None or ok is None else op.completed(t1)


def r(c: int, out: Any, t0: float, t1: float, key: str = "x") -> Op:
    return Op(client=c, key=key, kind="read", invoke=t0).completed(t1, out)


def cas(c: int, exp: Any, v: Any, out: bool | None, t0: float, t1: float | None,
        key: str = "x") -> Op:
    op = Op(client=c, key=key, kind="cas", expected=exp, value=v, invoke=t0)
    return op if t1 is None else op.completed(t1, out)


def brute_force(history: Sequence[Op], model: Model[Any]) -> bool:
    """Definition-level oracle: try every order respecting real time (strict ``<``), allowing
    unknown-outcome ops to be placed anywhere after their invocation or left out."""
    ops = [o for o in history if o.ok is not False and model.relevant(o)]
    keys = {o.key for o in ops}
    for key in keys:
        sub = [o for o in ops if o.key == key]
        known = [o.ok is True for o in sub]
        inf = float("inf")
        done = [o.complete if o.ok is True and o.complete is not None else inf for o in sub]

        @functools.cache
        def search(remaining: frozenset[int], state: Hashable, sub: list[Op] = sub,
                   known: list[bool] = known, done: list[float] = done) -> bool:
            if not any(known[i] for i in remaining):
                return True
            for i in remaining:
                if any(done[j] < sub[i].invoke for j in remaining if j != i):
                    continue
                ok, ns = model.step(state, sub[i])
                if ok and search(remaining - {i}, ns):
                    return True
            return False

        if not search(frozenset(range(len(sub))), model.init()):
            return False
    return True


def assert_fails(res: CheckResult, *ops: Op) -> None:
    assert res.ok is False, res.explain()
    text = res.explain()
    for op in ops:
        assert op.describe() in text, (op.describe(), text)
        assert op in res.counterexample, (op, res.counterexample)


# ------------------------------------------------------------------------ hand-written histories
def test_empty_and_sequential() -> None:
    assert check([]).ok is True
    h = [w(1, 1, 0, 1), r(1, 1, 2, 3), w(2, 2, 4, 5), r(3, 2, 6, 7), cas(1, 2, 3, True, 8, 9),
         r(2, 3, 10, 11), cas(2, 2, 4, False, 12, 13), r(1, 3, 14, 15)]
    res = check(h)
    assert res.ok is True, res.explain()
    assert res.per_key["x"].linearization == tuple(range(len(h)))
    assert "linearizable" in res.explain()


def test_initial_read_is_none() -> None:
    assert check([r(1, None, 0, 1), w(2, 5, 2, 3)]).ok is True
    assert check([w(2, 5, 0, 1), r(1, None, 2, 3)]).ok is False


def test_concurrent_read_may_see_either() -> None:
    for out in (None, 1):
        assert check([w(1, 1, 0, 10), r(2, out, 2, 3)]).ok is True
    assert check([w(1, 1, 0, 10), r(2, 1, 2, 3), r(2, None, 4, 5)]).ok is False


def test_stale_read_after_completed_write() -> None:
    h = [w(1, 1, 0, 1), w(1, 2, 2, 3), r(2, 1, 4, 5)]
    res = check(h)
    assert_fails(res, h[2])
    f = res.failures[0]
    assert f.blocked == h[2]
    assert [op.value for op in f.prefix] == [1, 2]
    assert f.state == 2


def test_reads_observe_writes_in_opposite_orders() -> None:
    h = [
        w(1, 1, 0, 100), w(2, 2, 0, 100),
        r(3, 1, 10, 11), r(3, 2, 20, 21),
        r(4, 2, 10, 11), r(4, 1, 20, 21),
    ]
    res = check(h)
    assert res.ok is False
    # each client's view alone is fine
    assert check(h[:4]).ok is True
    assert check(h[:2] + h[4:]).ok is True
    assert "NOT linearizable" in res.explain()


def test_cas_succeeds_twice_from_same_expected_value() -> None:
    h = [w(1, 0, 0, 1), cas(2, 0, 1, True, 2, 10), cas(3, 0, 2, True, 2, 10)]
    res = check(h)
    assert_fails(res, h[1], h[2])
    # ...but fine if the value is re-written in between
    assert check([*h, w(4, 0, 2, 10)]).ok is True
    # and one success + one failure is fine in either output order
    assert check([h[0], h[1], replace(h[2], output=False)]).ok is True


def test_cas_false_needs_a_different_value() -> None:
    assert check([w(1, 0, 0, 1), cas(2, 0, 1, False, 2, 3)]).ok is False
    assert check([w(1, 0, 0, 1), cas(2, 9, 1, False, 2, 3), r(1, 0, 4, 5)]).ok is True
    assert check([cas(2, None, 1, True, 0, 1), r(1, 1, 2, 3)]).ok is True


def test_read_of_never_written_value() -> None:
    h = [w(1, 1, 0, 1), r(2, 42, 0, 5), w(3, 2, 3, 4)]
    res = check(h)
    assert_fails(res, h[1])
    assert "42" in res.explain()


def test_unknown_write_whose_effect_appears_later() -> None:
    h = [w(1, 1, 0, None, ok=None), r(2, None, 10, 11), r(3, None, 12, 13), r(2, 1, 20, 21)]
    res = check(h)
    assert res.ok is True, res.explain()
    # it may also never take effect
    assert check(h[:3]).ok is True


def test_unknown_write_read_before_its_invoke() -> None:
    h = [r(2, 1, 0, 1), w(1, 1, 5, None, ok=None)]
    res = check(h)
    assert_fails(res, h[0])


def test_unknown_write_cannot_resurrect_after_being_overwritten_by_later_read_order() -> None:
    # unknown w(1) took effect (read 1), was overwritten by w(2) (read 2); reading 1 again is
    # impossible: w(1) can only take effect once.
    h = [w(1, 1, 0, None, ok=None), r(2, 1, 5, 6), w(3, 2, 7, 8), r(2, 2, 9, 10), r(2, 1, 11, 12)]
    assert check(h).ok is False
    assert check(h[:4]).ok is True


def test_unknown_cas() -> None:
    h = [w(1, 0, 0, 1), cas(2, 0, 7, None, 2, None), r(3, 0, 5, 6), r(3, 7, 8, 9)]
    assert check(h).ok is True
    # the unknown cas compares against 0: after 0 was overwritten by 3 it cannot install 7
    h2 = [w(1, 0, 0, 1), cas(2, 0, 7, None, 2, None), w(3, 3, 4, 5), r(3, 7, 8, 9)]
    assert check(h2).ok is False


def test_unknown_write_explains_a_failed_cas() -> None:
    base = [w(1, 0, 0, 1), cas(2, 0, 7, False, 4, 5)]
    assert check(base).ok is False  # the value is 0, so the cas must have swapped
    # an unknown write (value never observed) may have changed the value in between
    assert check([*base, w(3, 5, 2, None, ok=None)]).ok is True
    assert check([*base, w(3, 5, 6, None, ok=None)]).ok is False  # invoked too late


def test_register_prepare_merges_unobserved_values() -> None:
    h = [w(1, 1, 0, 1), w(1, 2, 2, 3), r(2, 2, 4, 5), cas(3, 3, 4, False, 6, 7),
         w(4, 5, 8, None, ok=None)]
    prepared = RegisterModel().prepare(h)
    assert [op.value for op in prepared] == [UNOBSERVED, 2, None, UNOBSERVED, UNOBSERVED]
    assert prepared[2] is h[2]


def test_many_unknown_outcomes() -> None:
    # partition-like: 10% of the ops time out, many pending at once; both verdicts stay fast
    h = random_register_history(11, 1500, keys=1, clients=10, unknown_rate=0.1)
    t = time.process_time()
    assert check(h).ok is True
    bad = _mutate_stale_read(h, None)
    assert bad is not None
    assert check(bad).ok is False
    assert time.process_time() - t < 30


def test_failed_ops_are_dropped() -> None:
    failed = w(1, 5, 0, 1, ok=False)
    assert check([failed, r(2, None, 2, 3)]).ok is True
    res = check([failed, r(2, 5, 2, 3)])
    assert res.ok is False
    assert res.per_key["x"].ops == 1


def test_unknown_reads_are_dropped() -> None:
    unknown_read = Op(client=1, key="x", kind="read", invoke=0.0, output=99)
    res = check([unknown_read, w(1, 1, 1, 2)])
    assert res.ok is True
    assert res.per_key["x"].ops == 1


def test_closed_intervals_tie_rule() -> None:
    # a write returning at t and a read invoked at t overlap: the read may miss the write
    assert check([w(1, 1, 0, 1), r(2, None, 1, 2)]).ok is True
    assert check([w(1, 1, 0, 1), r(2, 1, 1, 2)]).ok is True
    # zero-length operations at the same instant overlap too
    assert check([w(1, 1, 1, 1), r(2, None, 1, 1), r(3, 1, 1, 1)]).ok is True
    # strictly after: must see it
    assert check([w(1, 1, 0, 1), r(2, None, 1.001, 2)]).ok is False


def test_keys_are_checked_independently() -> None:
    h = [w(1, 1, 0, 1, key="a"), r(2, 1, 2, 3, key="a"),
         w(1, 1, 0, 1, key="b"), r(2, None, 2, 3, key="b")]
    res = check(h)
    assert res.ok is False
    assert res.per_key["a"].ok is True
    assert res.per_key["b"].ok is False
    f = res.failures[0]
    assert f.key == "b" and f.blocked_index == 3
    assert "'b'" in res.explain()


def test_explain_mentions_offending_ops_and_prefix() -> None:
    h = [w(1, 10, 0, 1), w(2, 11, 2, 3), r(3, 11, 4, 5), w(4, 12, 6, 7), r(5, 10, 6.5, 9),
         w(6, 13, 6.5, 20)]
    res = check(h)
    assert res.ok is False
    text = res.explain()
    print(text)
    f = res.failures[0]
    assert f.blocked_index == 4
    assert 4 in f.pending_indices and 4 in f.window_indices
    assert set(f.window_indices) >= {3, 4, 5}
    assert f"#{4}" in text and h[4].describe() in text
    assert "Longest linearizable prefix" in text and "state after the prefix" in text
    for idx in f.prefix_indices:
        assert f"#{idx}" in text
    assert "rejected by the model" in text


def test_op_validation() -> None:
    with pytest.raises(ValueError):
        Op(client=1, key="x", kind="read", invoke=2.0, complete=1.0, ok=True)
    with pytest.raises(ValueError):
        Op(client=1, key="x", kind="read", invoke=0.0, ok=True)
    with pytest.raises(ValueError):
        Op(client=1, key="x", kind="read", invoke=float("nan"))
    with pytest.raises(ValueError, match="unknown operation kind"):
        check([Op(client=1, key="x", kind="append", invoke=0.0, complete=1.0, ok=True)])
    with pytest.raises(ValueError, match="cas"):
        check([cas(1, None, 1, None, 0, 1)])  # completed cas without a boolean output
    op = Op(client=1, key="x", kind="write", value=1, invoke=0.0)
    assert op.status == "info"
    assert op.completed(1.0).status == "ok"
    assert op.as_failed(1.0).status == "fail"
    assert op.completed(1.0).as_unknown() == op
    with pytest.raises(AttributeError):
        op.ok = True  # type: ignore[misc]


def test_timeout_gives_unknown() -> None:
    h = random_register_history(3, 2000, keys=4, clients=8)
    res = check(h, timeout=0.0)
    assert res.ok is None and res.timed_out
    assert all(k.ok is None for k in res.per_key.values())
    assert "UNKNOWN" in res.explain()


def test_deep_history_is_iterative() -> None:
    n = 20_000
    h = []
    for i in range(n):
        h.append(w(1, i, 4 * i, 4 * i + 1))
        h.append(r(2, i, 4 * i + 2, 4 * i + 3))
    assert check(h).ok is True
    h[-1] = replace(h[-1], output=-1)
    res = check(h)
    assert res.ok is False
    assert len(res.failures[0].prefix) == 2 * n - 1


# ------------------------------------------------------------------- oracle on tiny histories
def tiny_history(rng: random.Random, n: int, unknown: float = 0.2) -> list[Op]:
    ops = []
    for _ in range(n):
        t0 = float(rng.randrange(8))
        t1 = t0 + rng.randrange(4)
        kind = rng.choice(["read", "read", "write", "cas"])
        c = rng.randrange(3)
        roll = rng.random()
        if kind == "read":
            op = Op(client=c, key="x", kind="read", invoke=t0)
            out: Any = rng.choice([None, 1, 2, 3])
        elif kind == "write":
            op = Op(client=c, key="x", kind="write", value=rng.choice([1, 2, 3]), invoke=t0)
            out = None
        else:
            op = Op(client=c, key="x", kind="cas", expected=rng.choice([None, 1, 2]),
                    value=rng.choice([1, 2, 3]), invoke=t0)
            out = rng.random() < 0.5
        if roll < unknown:
            ops.append(op)
        elif roll < unknown + 0.05:
            ops.append(op.as_failed(t1))
        else:
            ops.append(op.completed(t1, out))
    return ops


def test_matches_brute_force_on_tiny_random_histories() -> None:
    rng = random.Random(1234)
    model = RegisterModel()
    verdicts = {True: 0, False: 0}
    for _ in range(4000):
        h = tiny_history(rng, rng.randrange(1, 8))
        expected = brute_force(h, model)
        got = check(h, model).ok
        assert got is expected, (expected, h, check(h, model).explain())
        verdicts[expected] += 1
    assert min(verdicts.values()) > 500, verdicts


class CounterModel(Model[int]):
    """A counter: ``add`` (value = amount; always succeeds) and ``get`` (output = total)."""

    def init(self) -> int:
        return 0

    def step(self, state: int, op: Op) -> tuple[bool, int]:
        if op.kind == "add":
            return True, state + int(op.value)
        return state == op.output, state

    def relevant(self, op: Op) -> bool:
        return op.kind == "add" or op.ok is True

    def read_only(self, op: Op) -> bool:
        return op.kind == "get"


def test_custom_model_matches_brute_force() -> None:
    rng = random.Random(99)
    model = CounterModel()
    verdicts = {True: 0, False: 0}
    for _ in range(2000):
        h = []
        for _ in range(rng.randrange(1, 8)):
            t0 = float(rng.randrange(8))
            t1 = t0 + rng.randrange(4)
            if rng.random() < 0.5:
                op = Op(client=0, key="n", kind="add", value=rng.choice([1, 2]), invoke=t0)
                h.append(op if rng.random() < 0.25 else op.completed(t1))
            else:
                h.append(Op(client=0, key="n", kind="get", invoke=t0)
                         .completed(t1, rng.randrange(5)))
        expected = brute_force(h, model)
        assert check(h, model).ok is expected, h
        verdicts[expected] += 1
    assert min(verdicts.values()) > 200, verdicts


# ------------------------------------------------------------- random linearizable histories
@pytest.mark.parametrize("integer_times", [False, True])
def test_random_linearizable_histories_pass(integer_times: bool) -> None:
    for seed in range(150):
        h = random_register_history(
            seed, 150, keys=2, clients=6, unknown_rate=0.08, fail_rate=0.03,
            integer_times=integer_times,
        )
        res = check(h)
        assert res.ok is True, (seed, res.explain())
        assert all(k.linearization is not None for k in res.per_key.values())


def test_generator_produces_concurrency_and_all_outcomes() -> None:
    h = random_register_history(7, 2000, keys=1, clients=10, unknown_rate=0.05, fail_rate=0.02)
    statuses = {op.status for op in h}
    assert statuses == {"ok", "info", "fail"}
    assert {op.kind for op in h} == {"read", "write", "cas"}
    assert any(op.kind == "cas" and op.output is True for op in h)
    # many overlapping intervals
    done = sorted((op.invoke, op.complete) for op in h if op.complete is not None)
    overlaps = sum(1 for a, b in itertools.pairwise(done) if b[0] <= (a[1] or 0))
    assert overlaps > len(done) // 2


def _reads(h: list[Op], rng: random.Random | None) -> list[int]:
    """Completed reads in random order, or latest first when ``rng`` is None."""
    reads = [i for i, o in enumerate(h) if o.kind == "read" and o.ok is True]
    if rng is None:
        reads.sort(key=lambda i: -h[i].invoke)
    else:
        rng.shuffle(reads)
    return reads


def _mutate_future_read(h: list[Op], rng: random.Random | None) -> list[Op] | None:
    """A read returns a value whose (only) writer was invoked after the read completed."""
    for i in _reads(h, rng):
        rd = h[i]
        assert rd.complete is not None
        later = [o for o in h if o.key == rd.key and o.kind in ("write", "cas")
                 and o.ok is not False and o.invoke > rd.complete]
        if later:
            h = list(h)
            h[i] = replace(rd, output=(rng.choice(later) if rng else later[-1]).value)
            return h
    return None


def _mutate_stale_read(h: list[Op], rng: random.Random | None) -> list[Op] | None:
    """A read returns w1's value although a later write w2 completed, after w1 completed,
    before the read was invoked (values are unique, so w1's value can never come back)."""
    for i in _reads(h, rng):
        rd = h[i]
        writes = [o for o in h if o.key == rd.key and o.kind == "write" and o.ok is True
                  and o.complete is not None and o.complete < rd.invoke]
        for w2 in writes:
            olds = [o for o in writes if o.complete is not None and o.complete < w2.invoke]
            if olds:
                h = list(h)
                h[i] = replace(rd, output=(rng.choice(olds) if rng else olds[0]).value)
                return h
    return None


@pytest.mark.parametrize("mutate", [_mutate_future_read, _mutate_stale_read])
def test_mutated_histories_fail(mutate: Any) -> None:
    mutated = 0
    for seed in range(120):
        rng = random.Random(seed)
        h = random_register_history(seed, 120, keys=2, clients=5, unknown_rate=0.05,
                                    integer_times=seed % 3 == 0)
        bad = mutate(h, rng)
        if bad is None:
            continue
        mutated += 1
        res = check(bad)
        assert res.ok is False, seed
        changed = next(o for o, orig in zip(bad, h, strict=True) if o != orig)
        text = res.explain()
        assert "NOT linearizable" in text and f"'{changed.key}'" in text
    assert mutated > 80


# ------------------------------------------------------------------------------- JSON lines
def test_jsonl_round_trip() -> None:
    h = random_register_history(5, 300, keys=3, unknown_rate=0.1, fail_rate=0.05)
    h.append(Op(client=9, key="t", kind="write", value=[1, [2, 3]], invoke=1.5).completed(2.5))
    text = history_to_jsonl(h)
    assert text.count("\n") == len(h)
    back = history_from_jsonl(text)
    assert back[:-1] == h[:-1]
    assert back[-1].value == (1, (2, 3))
    assert history_from_jsonl(["# comment", "", *text.splitlines(keepends=True)]) == back
    assert check(back).ok is True
    with pytest.raises(ValueError, match="line 1"):
        history_from_jsonl('{"client": 1}')
    with pytest.raises(ValueError, match="line 2"):
        history_from_jsonl(text.splitlines()[0] + "\nnot json")


# ------------------------------------------------------------------------------ performance
def test_performance_10k_ops() -> None:
    h = random_register_history(2024, 10_000, keys=5, clients=10, unknown_rate=0.02,
                                fail_rate=0.01)
    n_unknown = sum(1 for o in h if o.status == "info" and o.kind != "read")
    assert n_unknown > 50
    t = time.process_time()
    res = check(h, timeout=120)
    ok_elapsed = time.process_time() - t
    assert res.ok is True, res.explain()
    assert sum(k.ops for k in res.per_key.values()) > 9_000

    bad = _mutate_stale_read(h, None)  # the latest read that can be made stale: worst case
    assert bad is not None
    t = time.process_time()
    res_bad = check(bad, timeout=120)
    bad_elapsed = time.process_time() - t
    assert res_bad.ok is False
    print(f"\n10k-op history: linearizable in {ok_elapsed:.2f} s of CPU; "
          f"mutated history rejected in {bad_elapsed:.2f}s")
    assert ok_elapsed < 60 and bad_elapsed < 60
