"""Scenario tests of the gossip core on the seeded simulation (tests/gossip_sim.py)."""

from __future__ import annotations

from coterie.node.gossip import EventKind, GossipConfig, MemberState
from coterie.node.gossip.codec import Suspect, encode
from coterie.node.gossip.suspicion import min_suspicion_timeout
from tests.gossip_sim import Sim, measure_false_positives, measure_kill


def test_hundred_nodes_converge_after_joining_through_one_seed() -> None:
    sim = Sim(100, seed=7)
    sim.join_all("n0", spread=2.0)
    assert not sim.converged()
    assert sim.run_until(60.0, stop=lambda: sim.joins >= 100 * 99 and sim.converged())
    assert not sim.log  # no suspicion while joining on a clean network


def test_killed_node_is_dead_everywhere_within_bound() -> None:
    n, cfg = 50, GossipConfig.lan()
    sim = Sim(n, seed=3, config=cfg)
    sim.bootstrap_converged()
    sim.run_until(5.0)
    # SWIM 4.3: round-robin probing reaches any member within 2n-1 periods; then at most the longest
    # (unconfirmed) suspicion timeout; the dead news then spreads in O(log n) gossip rounds (10 s slack).
    lo = min_suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
    bound = (2 * n) * cfg.probe_interval + cfg.suspicion_max_timeout_mult * lo + 10.0
    r = measure_kill(sim, "n17", horizon=bound)
    assert r.all_dead <= bound, r
    assert r.false_deaths == 0
    assert r.first_suspect < r.all_dead


def test_suspected_but_alive_member_refutes() -> None:
    sim = Sim(30, seed=5)
    sim.bootstrap_converged()
    sim.run_until(3.0)
    # n4 wrongly tells n9 that n3 is suspect: the suspicion spreads, n3 hears it and refutes.
    sim.nodes["n9"].gossip.receive(encode(Suspect(1, "n3", "n4")), "n4", sim.now)
    sim._flush(sim.nodes["n9"])
    sim.run_until(60.0)
    assert any(e.kind is EventKind.SUSPECT and e.name == "n3" for _, e in sim.log)
    assert sim.nodes["n3"].gossip.incarnation >= 2
    assert not any(e.kind is EventKind.DEAD for _, e in sim.log)
    for node in sim.live():
        m = node.gossip.member("n3")
        assert m is not None and m.state == MemberState.ALIVE and m.incarnation >= 2


def test_partition_then_heal_converges() -> None:
    sim = Sim(20, seed=11)
    sim.bootstrap_converged()
    sim.run_until(2.0)
    a = [f"n{i}" for i in range(10)]
    b = [f"n{i}" for i in range(10, 20)]
    sim.partition(a, b)
    sim.run_until(22.0)
    assert sim.nodes["n0"].gossip.member("n15").state in (MemberState.SUSPECT, MemberState.DEAD)  # type: ignore[union-attr]
    assert sum(1 for _, e in sim.log if e.kind is EventKind.DEAD) > 0
    sim.heal()
    assert sim.run_until(sim.now + 60.0, stop=sim.converged)


def test_no_healthy_member_declared_dead_at_one_percent_loss() -> None:
    sim = Sim(50, seed=2, loss=0.01)
    sim.bootstrap_converged()
    fp = measure_false_positives(sim, 600.0)
    assert fp.deaths == 0, fp
    assert sim.packets_lost > 0


def test_lifeguard_reduces_false_positives_with_slow_members() -> None:
    def run(lifeguard: bool, seed: int) -> tuple[int, int]:
        sim = Sim(40, seed=seed, loss=0.01, config=GossipConfig.lan(lifeguard=lifeguard))
        sim.bootstrap_converged()
        slowed = ["n1", "n2"]  # 5%
        for s in slowed:
            sim.slow_down(s, 2.0)
        fp = measure_false_positives(sim, 200.0, slowed)
        return fp.suspicions, fp.about_healthy

    on = [run(True, s) for s in (1, 2)]
    off = [run(False, s) for s in (1, 2)]
    sus_on, sus_off = sum(x[0] for x in on), sum(x[0] for x in off)
    dead_on, dead_off = sum(x[1] for x in on), sum(x[1] for x in off)
    assert sus_on < 0.7 * sus_off, (on, off)
    assert dead_on < dead_off, (on, off)
