"""The node's monotonic clock for lease timing, which the fault-injection service can skew.

Leases are the one place a node's decisions depend on elapsed time (README: "Leases, locks and
elections"). Their promises hold when the clocks of the holder and the members run at rates that differ
by at most the documented drift bound; the Jepsen-style clock nemesis (``coterie verify -n clock``)
breaks that on purpose through :class:`NodeClock`: the host clock is shared by every process on one
machine, so a node's clock is skewed inside the node.

Invariants: with the default rate 1.0 and offset 0, :meth:`NodeClock.now` equals the base clock. A
rate change is continuous (the clock keeps its current reading and runs at the new rate from there); an
offset change is a jump by the difference. The reading never goes backwards unless a negative jump is
set on purpose.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["MAX_CLOCK_OFFSET", "MAX_CLOCK_RATE", "MIN_CLOCK_RATE", "NodeClock"]

MIN_CLOCK_RATE = 0.01
MAX_CLOCK_RATE = 100.0
"""Accepted rates, relative to the base clock (0.5: half speed; 2.0: twice as fast)."""
MAX_CLOCK_OFFSET = 86_400.0
"""Largest accepted jump, seconds, either way."""


class NodeClock:
    """Seconds from a monotonic base clock, optionally running at ``rate`` and shifted by ``offset``."""

    def __init__(self, base: Callable[[], float] = time.monotonic) -> None:
        self._base = base
        self._rate = 1.0
        self._offset = 0.0
        self._anchor_base = base()
        self._anchor_reading = self._anchor_base

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def offset(self) -> float:
        """The total jump set so far, seconds."""
        return self._offset

    def _unshifted(self, base_now: float) -> float:
        return self._anchor_reading + (base_now - self._anchor_base) * self._rate

    def now(self) -> float:
        """The current reading, seconds."""
        return self._unshifted(self._base()) + self._offset

    def set(self, rate: float = 1.0, offset: float = 0.0) -> None:
        """Run at ``rate`` from now on (continuously) and jump to a total shift of ``offset`` seconds.

        Raises ``ValueError`` for a rate outside [MIN_CLOCK_RATE, MAX_CLOCK_RATE] or an offset beyond
        ±MAX_CLOCK_OFFSET (the state is then unchanged)."""
        if not (math.isfinite(rate) and MIN_CLOCK_RATE <= rate <= MAX_CLOCK_RATE):
            raise ValueError(f"clock rate must be in [{MIN_CLOCK_RATE:g}, {MAX_CLOCK_RATE:g}], got {rate}")
        if not (math.isfinite(offset) and abs(offset) <= MAX_CLOCK_OFFSET):
            raise ValueError(f"clock offset must be within ±{MAX_CLOCK_OFFSET:g} s, got {offset}")
        b = self._base()
        self._anchor_reading = self._unshifted(b)
        self._anchor_base = b
        self._rate = rate
        self._offset = offset
