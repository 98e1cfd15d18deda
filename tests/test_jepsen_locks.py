"""The lock and lease workloads, their checkers and the clock nemeses.

Unit tests give each checker hand-made histories, valid and invalid. The short runs (``local``
backend, real nodes, ~25 s each) check that the lock workload is valid under partitions and kills,
that the lease workload is valid under kills, and that it is reported INVALID when the leader's lease
clock runs far beyond the drift bound (``clock-broken``): the checker can fail. Nothing here asserts
a timing beyond what the promises themselves state.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from coterie.verify.backends.local import LocalBackend
from coterie.verify.checkers.leases import LeaseRec, check_leases
from coterie.verify.checkers.locks import FencedWrite, check_lock
from coterie.verify.nemesis import NEMESES
from coterie.verify.nemesis.clock import DEFAULT_DRIFT, ClockFault
from coterie.verify.runner import RunConfig, run

# ---------------------------------------------------------------------------------- lock checker


def _good_lock_history() -> tuple[list[FencedWrite], list[tuple[int, float]], list[tuple[int, int]]]:
    """Three holders (tokens 10, 20, 30) increment 0 -> 3; a fourth (token 15) was paused, a newer
    holder acquired meanwhile, and its write was refused; one unknown write (token 40) took effect."""
    acquired = [(10, 1.0), (15, 1.5), (20, 2.0), (30, 3.0), (40, 4.0)]
    writes = [FencedWrite(10, 0, "ok", 1.1), FencedWrite(20, 1, "ok", 2.1),
              FencedWrite(15, 1, "rejected", 2.5, paused=True),
              FencedWrite(30, 2, "ok", 3.1), FencedWrite(40, 3, "info", 4.1)]
    return writes, acquired, [(1, 10), (2, 20), (3, 30), (4, 40)]


def test_lock_checker_accepts_a_valid_history() -> None:
    writes, acquired, seq = _good_lock_history()
    r = check_lock(writes, acquired, seq, 4)
    assert r["valid"] is True, r
    assert (r["acknowledged"], r["rejected"], r["unknown"], r["recovered"]) == (3, 1, 1, 1)
    assert (r["paused_writes"], r["paused_rejected"]) == (1, 1)
    # The unknown write may also not have taken effect.
    r = check_lock(writes, acquired, seq[:3], 3)
    assert r["valid"] is True, r


def test_lock_checker_catches_a_lost_update() -> None:
    """Two acknowledged writes read the same value: the second overwrote the first's increment."""
    writes = [FencedWrite(10, 0, "ok", 1.1), FencedWrite(20, 0, "ok", 1.2)]
    r = check_lock(writes, [(10, 1.0), (20, 0.9)], [(1, 10), (1, 20)], 1)
    assert r["valid"] is False
    assert r["lost_updates"] and r["count_mismatch"], r


def test_lock_checker_catches_tokens_out_of_order_and_stale_holders() -> None:
    # Token 15 wrote after token 20 had acquired (and written): accepted although stale.
    writes = [FencedWrite(20, 0, "ok", 2.1), FencedWrite(15, 1, "ok", 2.5, paused=True)]
    r = check_lock(writes, [(15, 1.0), (20, 2.0)], [(1, 20), (2, 15)], 2)
    assert r["valid"] is False
    assert r["token_order"] and r["stale_accepted"], r
    assert "after a pause" in r["stale_accepted"][0]


def test_lock_checker_catches_lost_acknowledged_refused_applied_and_phantom_writes() -> None:
    acq = [(10, 1.0), (20, 2.0)]
    r = check_lock([FencedWrite(10, 0, "ok", 1.1)], acq, [], 0)
    assert r["valid"] is False and r["lost_acknowledged"] and r["count_mismatch"], r
    r = check_lock([FencedWrite(10, 0, "rejected", 1.1)], acq, [(1, 10)], 1)
    assert r["valid"] is False and r["failed_applied"], r
    r = check_lock([], acq, [(1, 10)], 1)
    assert r["valid"] is False and r["phantom"], r
    r = check_lock([FencedWrite(10, 0, "ok", 1.1)], acq, [(1, 10)], 2)
    assert r["valid"] is False and r["count_mismatch"], r


# ---------------------------------------------------------------------------------- lease checker


def _lease(**kw: Any) -> LeaseRec:
    base: dict[str, Any] = {"process": 0, "lease_id": 1, "key": "k1", "ttl": 2.0, "attached": "ok",
                            "granted": 0.0, "stopped": 3.0, "valid_until": 4.9, "deleted": 5.1}
    base.update(kw)
    return LeaseRec(**base)


def test_lease_checker_accepts_a_valid_history() -> None:
    leases = [_lease(), _lease(lease_id=2, key="k2", deleted=6.0, absent_reads=[]),
              _lease(lease_id=3, key="k3", attached="fail", deleted=None),  # no key: nothing to see
              _lease(lease_id=4, key="k4", attached="info", deleted=None)]
    r = check_leases(leases, allowance=5.0, end=30.0)
    assert r["valid"] is True, r
    assert r["checked"] == 2 and r["max_lateness"] == 1.0 and r["min_safety_margin"] == 0.2, r


def test_lease_checker_catches_an_early_expiry() -> None:
    r = check_leases([_lease(deleted=4.0)], allowance=5.0, end=30.0)
    assert r["valid"] is False and r["early_count"] == 1, r
    assert "0.900 s before valid_until" in r["early"][0]
    # The holder's own read found the key gone while its lease was valid (still keeping alive).
    r = check_leases([_lease(stopped=None, valid_until=9.0, deleted=None, absent_reads=[3.5])],
                     allowance=5.0, end=30.0)
    assert r["valid"] is False and r["early_count"] == 1, r
    # The same read after valid_until is allowed.
    r = check_leases([_lease(absent_reads=[5.0])], allowance=5.0, end=30.0)
    assert r["valid"] is True, r


def test_lease_checker_catches_a_late_or_missing_expiry() -> None:
    r = check_leases([_lease(deleted=11.0)], allowance=5.0, end=30.0)
    assert r["valid"] is False and r["late_count"] == 1 and r["max_lateness"] == 6.0, r
    r = check_leases([_lease(deleted=None)], allowance=5.0, end=30.0)
    assert r["valid"] is False and "never seen deleted" in r["late"][0], r
    r = check_leases([_lease(deleted=None)], allowance=5.0, end=9.0)  # not yet due at the end
    assert r["valid"] is True, r


# ---------------------------------------------------------------------------------- clock nemesis


class _Clocks:
    """A backend stub that records set_clock calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []
        self.nodes = {n: type("P", (), {"removed": False})() for n in ("n1", "n2", "n3")}

    def leader(self) -> str:
        return "n2"

    def member_names(self) -> list[str]:
        return list(self.nodes)

    def set_clock(self, name: str, rate: float = 1.0, offset: float = 0.0) -> None:
        self.calls.append((name, rate, offset))


def test_clock_nemeses_stay_within_or_break_the_bound_as_named() -> None:
    b: Any = _Clocks()
    for _ in range(50):
        f = NEMESES.load("clock")(b, random.Random(len(b.calls)))
        assert f is not None
        desc = f.start()
        assert desc is not None and abs(desc["rate"] - 1) <= DEFAULT_DRIFT and desc["jump"] == 0
        rate = desc["rate"]
        assert 2 * abs(rate - 1) / (1 + abs(rate - 1)) <= 0.01  # rho within the client's DRIFT_BOUND
        f.stop()
        assert b.calls[-1][1:] == (1.0, 0.0)
    f = NEMESES.load("clock-broken")(b, random.Random(1))
    assert f is not None
    desc = f.start()
    assert desc is not None and desc["target"] == "n2" and 1.5 <= desc["rate"] <= 3.0
    f = NEMESES.load("clock-jump")(b, random.Random(1))
    assert f is not None
    desc = f.start()
    assert desc is not None and desc["target"] == "n2" and 1.0 <= desc["jump"] <= 3.0


def test_the_local_backend_keeps_clock_faults_with_the_other_faults(tmp_path: Path) -> None:
    """Every SetFaults carries the whole state: a partition set later must not reset a clock."""
    b = LocalBackend(3, tmp_path)
    b.setup()
    b._clocks["n1"] = (1.5, 2.0)
    b._grudge = {"n1": frozenset({"n2"})}
    st = b._state("n1")
    assert (st.clock_rate, st.clock_offset_seconds, list(st.blocked_in)) == (1.5, 2.0, [2])
    st = b._state("n2")
    assert (st.clock_rate, st.clock_offset_seconds) == (0.0, 0.0)
    b.heal_clocks()  # nodes not running: nothing sent, the state is cleared
    assert b._state("n1").clock_rate == 0.0
    try:
        ClockFault(b, random.Random(0), rates=(2.0, 1.0))
    except ValueError:
        pass
    else:
        raise AssertionError("a reversed rate range must be refused")


# ---------------------------------------------------------------------------------- short runs


def _run(tmp_path: Path, workload: str, nemesis: list[str], **kw: Any) -> dict[str, Any]:
    cfg = RunConfig(workload=workload, nemesis=nemesis, time_limit=float(kw.pop("time_limit", 12.0)),
                    recovery=3.0, interval=(1.0, 2.0), duration=(3.0, 5.0), store=tmp_path / "store",
                    seed=int(kw.pop("seed", 1)), **kw)
    res = run(cfg, log=lambda m: None)
    r = res.results
    assert not r["errors"], r["errors"]
    assert r["nemesis"]["faults"] >= 1, r["nemesis"]
    assert r["ops"]["ok"] >= 30, r["ops"]
    return {"valid": res.valid, **r}


def test_lock_workload_is_valid_under_partitions_and_kills(tmp_path: Path) -> None:
    r = _run(tmp_path, "lock", ["partition", "kill"], workload_options={"gc_pause": 0.2})
    w = r["workload"]
    assert r["valid"] is True, w
    assert w["acknowledged"] >= 10 and w["final"] >= w["acknowledged"], w
    # Paused holders whose lock was taken over meanwhile were refused (never accepted: valid).
    assert w["paused_writes"] >= 1 and w["paused_rejected"] >= 1, w


def test_lease_workload_is_valid_under_kills(tmp_path: Path) -> None:
    r = _run(tmp_path, "lease", ["kill"])
    w = r["workload"]
    assert r["valid"] is True, w
    assert w["checked"] >= 10 and w["deleted_seen"] >= 10 and w["max_lateness"] is not None, w


def test_lease_workload_reports_early_expiry_under_a_broken_clock(tmp_path: Path) -> None:
    """The leader's lease clock runs 1.5-3x fast (beyond the drift bound): leases expire before
    their holders' valid_until, and the checker must say so."""
    r = _run(tmp_path, "lease", ["clock-broken"], seed=2)
    w = r["workload"]
    assert r["valid"] is False, w
    assert w["early_count"] >= 1 and w["late_count"] == 0, w
    assert w["min_safety_margin"] < 0, w
