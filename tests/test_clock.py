"""The node's skewable lease clock (node/server/clock.py), on a fake base clock."""

from __future__ import annotations

import pytest

from coterie.node.server.clock import NodeClock


class FakeBase:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_default_clock_follows_its_base() -> None:
    base = FakeBase()
    c = NodeClock(base)
    assert c.now() == 100.0
    base.t = 107.5
    assert c.now() == 107.5


def test_rate_change_is_continuous_and_offset_is_a_jump() -> None:
    base = FakeBase()
    c = NodeClock(base)
    base.t = 110.0
    c.set(rate=2.0)
    assert c.now() == 110.0           # no jump at the change
    base.t = 115.0
    assert c.now() == 120.0           # twice as fast from there
    c.set(rate=2.0, offset=-30.0)
    assert c.now() == 90.0            # a jump back by 30 s
    c.set()                           # healed: normal rate, no shift, from the current reading on
    base.t = 116.0
    assert c.now() == 121.0


@pytest.mark.parametrize(("rate", "offset"), [(0.0, 0.0), (1000.0, 0.0), (float("nan"), 0.0),
                                              (1.0, 1e9), (1.0, float("inf"))])
def test_out_of_range_settings_are_refused_and_change_nothing(rate: float, offset: float) -> None:
    base = FakeBase()
    c = NodeClock(base)
    c.set(rate=0.5, offset=3.0)
    with pytest.raises(ValueError, match="clock"):
        c.set(rate=rate, offset=offset)
    assert (c.rate, c.offset) == (0.5, 3.0)
