"""Clock faults: one node's lease clock (``coterie.node.server.clock.NodeClock``, skewed through the
fault-injection API's ``clock_rate`` / ``clock_offset_seconds``) runs fast or slow, or jumps; the
stop puts it back to normal (rate 1, no shift), and so does the final heal.

Only the lease clock is skewed (the host clock is shared by every process on one machine): it times
lease countdowns, and nothing else in a node depends on elapsed time for correctness. The lease
promises (``coterie.node.server.lease_timer``) hold while every clock's rate is within the drift
bound of the others: the client trusts a lease for ``TTL * (1 - DRIFT_BOUND)`` with ``DRIFT_BOUND =
0.01``, which covers rates within ``1 +- d`` of real time for ``2d / (1 + d) <= 0.01``, i.e. ``d``
up to about 0.005.

- ``clock``: a node (the leader half of the time) runs at a rate drawn from ``[1 - d, 1 + d]`` with
  ``d = DEFAULT_DRIFT = 0.005``: within the bound, so the lease and lock workloads must stay valid.
- ``clock-broken``: the leader's clock runs 1.5-3x fast, far beyond the bound: leases expire early,
  and the lease workload's checker must report it (locks stay safe: fencing does not depend on time).
- ``clock-jump``: the leader's clock jumps 1-3 s forward (and back at the stop): beyond the bound too
  (any forward jump larger than a few ms of a short TTL's margin is).

:class:`ClockFault` takes the bounds as arguments for other settings.
"""

from __future__ import annotations

import random
from typing import Any

from ..backends.base import Backend
from .base import Fault

DEFAULT_DRIFT = 0.005
"""Largest ``|rate - 1|`` of the ``clock`` nemesis: ``2d / (1 + d)`` stays within the client's
``DRIFT_BOUND`` (0.01)."""


class ClockFault(Fault):
    """Skew one node's lease clock: a rate drawn from ``rates`` (``(lo, hi)``) and a jump drawn from
    ``jumps`` (seconds, ``(lo, hi)``; ``(0, 0)``: none); ``target`` ``"leader"`` always hits the leader,
    ``"any"`` the leader half of the time, else a random member."""

    name = "clock"

    def __init__(self, backend: Backend, rng: random.Random, *, rates: tuple[float, float] = (1.0, 1.0),
                 jumps: tuple[float, float] = (0.0, 0.0), target: str = "any") -> None:
        super().__init__(backend, rng)
        if not (0 < rates[0] <= rates[1]) or jumps[0] > jumps[1] or target not in ("leader", "any"):
            raise ValueError(f"bad clock fault settings: rates {rates}, jumps {jumps}, target {target!r}")
        self.rates = rates
        self.jumps = jumps
        self.target_kind = target
        self.target = ""

    def start(self) -> dict[str, Any] | None:
        if self.target_kind == "leader":
            lead = self.b.leader()
            if lead is None or self.b.nodes[lead].removed:
                return None
            self.target, how = lead, "leader"
        else:
            self.target, how = self.pick_target()
        rate = round(self.rng.uniform(*self.rates), 6)
        jump = round(self.rng.uniform(*self.jumps), 3)
        self.b.set_clock(self.target, rate, jump)
        desc = f"clock of {self.target} ({how}) at rate {rate:g}"
        if jump:
            desc += f", jumped {jump:+g} s"
        return {"desc": desc, "target": self.target, "how": how, "rate": rate, "jump": jump}

    def stop(self) -> None:
        if self.target:
            self.b.set_clock(self.target, 1.0, 0.0)


def drift_clock(backend: Backend, rng: random.Random) -> Fault:
    """``clock``: rates within ``1 +- DEFAULT_DRIFT`` (within the drift bound)."""
    return ClockFault(backend, rng, rates=(1 - DEFAULT_DRIFT, 1 + DEFAULT_DRIFT))


def broken_clock(backend: Backend, rng: random.Random) -> Fault:
    """``clock-broken``: the leader's clock 1.5-3x fast (beyond the bound on purpose)."""
    return ClockFault(backend, rng, rates=(1.5, 3.0), target="leader")


def jumping_clock(backend: Backend, rng: random.Random) -> Fault:
    """``clock-jump``: the leader's clock jumps 1-3 s forward (beyond the bound on purpose)."""
    return ClockFault(backend, rng, jumps=(1.0, 3.0), target="leader")
