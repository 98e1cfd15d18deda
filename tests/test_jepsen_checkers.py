"""The Jepsen-style suite's checkers and partition shapes on known histories (no cluster)."""

from __future__ import annotations

import random
from collections.abc import Mapping

from coterie.verify.checkers.linearizability import Op, check
from coterie.verify.checkers.sets import check_set
from coterie.verify.checkers.watch import check_watch
from coterie.verify.history import History, nemesis_periods
from coterie.verify.nemesis.partition import halves, isolate, majorities_ring, oneway
from coterie.verify.workloads.register import to_lin_ops

NODES5 = ["n1", "n2", "n3", "n4", "n5"]


# ------------------------------------------------------------------------------ register histories


def test_register_history_round_trip_through_events() -> None:
    h = History(t0=0.0)
    a = h.invoke(1, "write", "k", 1)
    h.complete(a, "ok")
    b = h.invoke(2, "read", "k")
    h.complete(b, "ok", 1)
    c = h.invoke(3, "cas", "k", [1, 2])
    h.complete(c, "info", error="timeout")
    d = h.invoke(1, "write", "k", 9)
    h.complete(d, "fail", error="not applied")
    ops = to_lin_ops(h.events())
    assert [o.status for o in ops] == ["ok", "ok", "info", "fail"]
    assert ops[2].expected == 1 and ops[2].value == 2
    assert check(ops).ok is True


def test_stale_read_is_caught_with_its_window() -> None:
    # write 1, then write 2 completes, then a read (strictly later) returns 1: not linearizable.
    ops = [Op(client=1, key="k", kind="write", value=1, invoke=0.0).completed(1.0),
           Op(client=1, key="k", kind="write", value=2, invoke=2.0).completed(3.0),
           Op(client=2, key="k", kind="read", invoke=4.0).completed(5.0, 1)]
    res = check(ops)
    assert res.ok is False
    text = res.explain()
    assert "NOT linearizable" in text and "Operations concurrent with it" in text
    assert [o.kind for o in res.counterexample] == ["read"]


def test_unknown_write_may_take_effect_late() -> None:
    ops = [Op(client=1, key="k", kind="write", value=1, invoke=0.0).completed(1.0),
           Op(client=2, key="k", kind="write", value=2, invoke=2.0).as_unknown(),
           Op(client=3, key="k", kind="read", invoke=10.0).completed(11.0, 2),
           Op(client=3, key="k", kind="read", invoke=12.0).completed(13.0, 2)]
    assert check(ops).ok is True
    # ... but a definitely failed write must never be observed.
    failed = [ops[0], Op(client=2, key="k", kind="write", value=2, invoke=2.0).as_failed(3.0), *ops[2:]]
    assert check(failed).ok is False


# ------------------------------------------------------------------------------ set


def test_set_checker() -> None:
    adds = {1: "ok", 2: "ok", 3: "info", 4: "info", 5: "fail"}
    good = check_set(adds, [1, 2, 3])
    assert good["valid"] is True and good["recovered_count"] == 1 and good["lost_count"] == 0
    lost = check_set(adds, [1, 3])
    assert lost["valid"] is False and lost["lost"] == [2]
    unexpected = check_set(adds, [1, 2, 5, 99])
    assert unexpected["valid"] is False and unexpected["unexpected"] == [5, 99]


# ------------------------------------------------------------------------------ watch


Ev = tuple[int, str, str, object]
REF: list[Ev] = [(10, "PUT", "w/a", "1"), (11, "PUT", "w/b", "2"), (12, "DELETE", "w/a", None),
                 (13, "PUT", "w/~end", "end")]
ATTEMPTED = {("PUT", "w/a", "1"), ("PUT", "w/b", "2"), ("DELETE", "w/a", None), ("PUT", "w/~end", "end"),
             ("PUT", "w/c", "7")}
FINAL = {"w/b": (11, "2"), "w/~end": (13, "end")}


def _watch(streams: dict[int, list[Ev]], final: Mapping[str, tuple[int, object]] = FINAL,
           writes: list[Ev] | None = None) -> dict[str, object]:
    return check_watch(streams, REF, REF[:2] if writes is None else writes, ATTEMPTED, final, 13)


def test_watch_checker_accepts_exact_streams() -> None:
    assert _watch({0: list(REF), 1: list(REF)})["valid"] is True


def test_watch_checker_catches_gaps_duplicates_and_disorder() -> None:
    gap = _watch({0: [REF[0], REF[2], REF[3]]})
    assert gap["valid"] is False and gap["missing"]
    dup = _watch({0: [REF[0], REF[1], REF[1], REF[2], REF[3]]})
    assert dup["valid"] is False and dup["out_of_order"]
    swapped = _watch({0: [REF[1], REF[0], REF[2], REF[3]]})
    assert swapped["valid"] is False and swapped["out_of_order"]
    short = _watch({0: REF[:2]})
    assert short["valid"] is False and short["incomplete"] == [0]


def test_watch_checker_catches_lost_writes_and_bad_final_state() -> None:
    lost = _watch({0: list(REF)}, writes=[*REF[:2], (12, "PUT", "w/c", "7")])
    assert lost["valid"] is False and lost["lost_writes"]
    bad_final = _watch({0: list(REF)}, final={"w/a": (10, "1"), **FINAL})
    assert bad_final["valid"] is False and bad_final["final_mismatch"]
    alien = [*REF[:3], (13, "PUT", "w/zz", "?"), (14, "PUT", "w/~end", "end")]
    unexpected = check_watch({0: alien}, alien, REF[:2], ATTEMPTED, FINAL, 14)
    assert unexpected["valid"] is False and unexpected["unexpected"]


# ------------------------------------------------------------------------------ nemesis shapes


def _sees(grudge: dict[str, frozenset[str]], nodes: list[str]) -> dict[str, frozenset[str]]:
    return {n: frozenset(m for m in nodes if m not in grudge.get(n, frozenset())) for n in nodes}


def test_partition_shapes() -> None:
    rng = random.Random(1)
    g = halves(NODES5, rng)
    sizes = sorted(len(v) for v in _sees(g, NODES5).values())
    assert sizes == [2, 2, 3, 3, 3]
    g = isolate(NODES5, "n3")
    assert g["n3"] == frozenset({"n1", "n2", "n4", "n5"}) and all(g[n] == {"n3"} for n in NODES5 if n != "n3")
    assert oneway(NODES5, "n2", inbound=True) == {"n2": frozenset({"n1", "n3", "n4", "n5"})}
    assert all(v == {"n2"} for v in oneway(NODES5, "n2", inbound=False).values())


def test_majorities_ring_every_node_sees_a_distinct_majority() -> None:
    for nodes in (NODES5[:3], NODES5, [f"n{i}" for i in range(1, 8)]):
        for seed in range(5):
            sees = _sees(majorities_ring(nodes, random.Random(seed)), nodes)
            majority = len(nodes) // 2 + 1
            assert all(len(s) >= majority and n in s for n, s in sees.items()), sees
            assert len(set(sees.values())) == len(nodes), sees


def test_nemesis_periods() -> None:
    h = History(t0=0.0)
    h.nemesis("start", {"id": 1, "desc": "kill -9 n1"})
    h.nemesis("stop", {"id": 1})
    h.nemesis("start", {"id": 2, "desc": "pause n2"})
    periods = nemesis_periods(h.events(), end=99.0)
    assert [p[2] for p in periods] == ["kill -9 n1", "pause n2"] and periods[1][1] == 99.0
