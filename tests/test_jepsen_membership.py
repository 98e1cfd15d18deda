"""The verify backends' membership operations on real ``coterie node`` processes (``local``
backend): a removed member exits by itself and is never restarted, the heal of a schedule whose
membership fault never finished adds it back (fresh data directory, new id) and promotes it, and
the re-added node survives a kill -9 and restart (it rejoins from its own ``meta.json``).
Every wait is bounded; the backend kills its nodes whatever happens."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from coterie.verify.backends.local import LocalBackend
from coterie.verify.history import History
from coterie.verify.nemesis.base import Schedule, Timing


def _until(what: str, cond: object, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if callable(cond) and cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def test_remove_then_heal_adds_back_and_promotes(tmp_path: Path) -> None:
    with LocalBackend(3, tmp_path) as b:
        b.start_all()
        b.wait_for_ready(90)
        victim = b.wait_for_leader(60)  # removing the leader: it steps down and hands over
        old_id = b.nodes[victim].id
        info = b.remove_member(victim)
        assert info["id"] == old_id
        assert info["exited_by_itself"] is True and info["exit_code"] == 0, info
        assert b.nodes[victim].removed and not b.running(victim)
        assert victim not in b.member_names()
        assert [m.name for m in b.members()] == sorted(n for n in b.names() if n != victim)
        with pytest.raises(RuntimeError, match="removed"):
            b.start(victim)

        history = History()
        sched = Schedule(b, [], history, random.Random(1), Timing())
        sched.heal_all()  # no fault active: the heal itself must restore the membership
        assert sched.errors == []
        assert any(e["f"] == "heal" and "membership restored" in str(e["value"]) for e in history.events())
        report = b.membership_report()
        assert report["all_voters"] is True, report
        new_id = b.nodes[victim].id
        assert new_id > old_id and new_id == next(m["id"] for m in report["members"] if m["name"] == victim)
        assert b.nodes[victim].joined and not b.nodes[victim].learner

        # kill -9 and restart of the re-added node: it comes back under its new id.
        b.kill(victim)
        b.start(victim)
        _until(f"{victim} answering as id {new_id}",
               lambda: (st := b.status(victim)) is not None and st.member_id == new_id)
        assert b.membership_report()["all_voters"] is True
