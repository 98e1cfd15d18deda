"""Suspicion timeouts: SWIM section 4.2 (suspicion sub-protocol) and Lifeguard section 4.2
("LHA-Suspicion", dynamic suspicion timeouts with independent confirmations; memberlist
``suspicion.go``).

A suspicion about member M starts with the longest timeout, ``max``. Every *independent* confirmation
(another member's suspect message about M, at M's current incarnation, from a member not yet counted)
shrinks it towards ``min``:

    timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))

after c confirmations, with k the number of confirmations expected. When ``k`` confirmations have
arrived the timeout is ``min``. A lone suspicion (the suspecter may be the sick one) therefore lasts
long enough for M to refute; a widely shared one ends quickly.
"""

from __future__ import annotations

import math


def min_suspicion_timeout(suspicion_mult: int, n: int, probe_interval: float) -> float:
    """``suspicion_mult * max(1, log10(max(1, n))) * probe_interval`` seconds for a cluster of n
    members (memberlist ``suspicionTimeout``; SWIM 4.2 needs O(log n) periods for a refutation to
    spread)."""
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return suspicion_mult * node_scale * probe_interval


def suspicion_timeout(confirmations: int, k: int, min_timeout: float, max_timeout: float) -> float:
    """The total timeout (seconds from the start of the suspicion) after ``confirmations`` independent
    confirmations out of ``k`` expected. ``k == 0`` gives ``min_timeout``."""
    if k <= 0 or confirmations >= k:
        return min_timeout
    frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
    return max(min_timeout, max_timeout - frac * (max_timeout - min_timeout))


class Suspicion:
    """The timer of one suspicion. ``deadline`` is in the host's ``now`` seconds."""

    __slots__ = ("_confirmers", "incarnation", "k", "max_timeout", "min_timeout", "start", "suspecter")

    def __init__(self, suspecter: str, incarnation: int, k: int, min_timeout: float,
                 max_timeout: float, start: float) -> None:
        self.suspecter = suspecter
        self.incarnation = incarnation
        self.k = k
        self.min_timeout = min_timeout
        self.max_timeout = max(min_timeout, max_timeout)
        self.start = start
        # The original suspecter is not a confirmation (Lifeguard: confirmations are independent).
        self._confirmers: set[str] = {suspecter}

    @property
    def confirmations(self) -> int:
        return len(self._confirmers) - 1

    @property
    def confirmers(self) -> tuple[str, ...]:
        """The members that confirmed the suspicion (the suspecter excluded), sorted."""
        return tuple(sorted(self._confirmers - {self.suspecter}))

    def confirm(self, source: str) -> bool:
        """Count ``source``'s suspicion; True if it was new and counted (fewer than k so far): the core
        then re-broadcasts it, as memberlist does."""
        if self.confirmations >= self.k or source in self._confirmers:
            return False
        self._confirmers.add(source)
        return True

    @property
    def deadline(self) -> float:
        return self.start + suspicion_timeout(self.confirmations, self.k, self.min_timeout,
                                              self.max_timeout)
