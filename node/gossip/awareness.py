"""Local health awareness (Lifeguard section 4.1, "LHA-Probe"; memberlist ``awareness.go``).

A member keeps a score in ``0 .. max_multiplier - 1``. Signs that it is itself slow raise the score: a
failed probe whose ping-req helpers did not send the nacks it expected (+1 per missing nack, or +1 when
no nacks were expected), and having to refute a suspicion about itself (+1). A probe acked directly
within the probe timeout lowers it (-1). The probe interval and timeout are multiplied by
``score + 1``, so a member that cannot keep up with its own timers probes less often and waits longer
before suspecting others, instead of spreading false suspicions.
"""

from __future__ import annotations


class Awareness:
    """The health score; 0 is healthy."""

    __slots__ = ("_max", "_score")

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError(f"max_multiplier must be >= 1, got {max_multiplier}")
        self._max = max_multiplier
        self._score = 0

    @property
    def score(self) -> int:
        return self._score

    def apply_delta(self, delta: int) -> int:
        """Add ``delta`` to the score, clamped to ``0 .. max_multiplier - 1``; return the new score."""
        self._score = min(self._max - 1, max(0, self._score + delta))
        return self._score

    def scale(self, timeout: float) -> float:
        """``timeout * (score + 1)`` seconds."""
        return timeout * (self._score + 1)
