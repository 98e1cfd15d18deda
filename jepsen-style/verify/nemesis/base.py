"""Nemeses: the faults, and the schedule that injects them.

A :class:`Fault` is started (``start`` returns a description, or None if it cannot apply now, e.g.
no leader to isolate) and later stopped (``stop`` undoes exactly what ``start`` did). The
:class:`Schedule` runs one fault at a time: a quiet gap of ``interval`` seconds (uniform in a
range), then a random fault from the chosen nemeses held for ``duration`` seconds, then healed; until
the time limit, after which :meth:`Schedule.heal_all` undoes everything (every node restarted and
resumed, the network healed, every lease clock normal). Every start and stop is logged in the
history with the same ``id``, so the report can shade the fault periods.

Nemesis names (``--nemesis a,b,...``; registered in :data:`coterie.verify.nemesis.NEMESES`):
``partition`` (any of the shapes of :mod:`.partition`), ``partition-halves``, ``partition-leader``,
``partition-ring``, ``partition-oneway``, ``kill`` (kill -9 a random node or the leader, restarted at
the stop), ``pause`` (SIGSTOP a random node or the leader, SIGCONT at the stop), ``slow`` (100-500 ms
per peer batch on a random minority of nodes), ``lossy`` (20-50 % of peer messages dropped on a
random minority), ``member`` (membership churn: remove a member, add it back as a learner with a
fresh data directory, promote it; see :mod:`.membership`), ``clock`` (a node's lease clock skewed
within the drift bound), ``clock-broken`` and ``clock-jump`` (beyond it on purpose; see
:mod:`.clock`), ``none``.

Faults target members only (:meth:`Backend.member_names`): a node removed by the membership nemesis
is neither killed, paused nor restarted until it is added back.
"""

from __future__ import annotations

import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend
from ..history import History


class Fault(ABC):
    name: str = ""

    def __init__(self, backend: Backend, rng: random.Random) -> None:
        self.b = backend
        self.rng = rng
        self.history: History | None = None
        """Set by the :class:`Schedule`: where :meth:`note` logs intermediate steps."""

    def note(self, value: dict[str, Any]) -> None:
        """Log an intermediate step of this fault as a nemesis ``info`` event (``f`` = the fault name)."""
        if self.history is not None:
            self.history.nemesis(self.name, value)

    @abstractmethod
    def start(self) -> dict[str, Any] | None:
        """Inject the fault; a JSON-able description (with ``desc``), or None if not applicable."""

    @abstractmethod
    def stop(self) -> None:
        """Undo what :meth:`start` did."""

    def pick_target(self) -> tuple[str, str]:
        """A node to hit: the leader half of the time (if one is known), else a random node;
        ``(name, "leader" | "random")``."""
        if self.rng.random() < 0.5:
            lead = self.b.leader()
            if lead is not None and not self.b.nodes[lead].removed:
                return lead, "leader"
        return self.rng.choice(self.b.member_names()), "random"


@dataclass(frozen=True)
class Timing:
    interval: tuple[float, float] = (3.0, 6.0)
    """Quiet seconds between faults."""
    duration: tuple[float, float] = (5.0, 10.0)
    """Seconds a fault is held."""


class Schedule:
    """Runs faults until ``stop`` is set (see the module docstring)."""

    def __init__(self, backend: Backend, faults: list[Fault], history: History, rng: random.Random,
                 timing: Timing) -> None:
        self.b = backend
        self.faults = faults
        self.history = history
        self.rng = rng
        self.timing = timing
        self.active: tuple[int, Fault] | None = None
        self.count = 0
        self.errors: list[str] = []
        for f in faults:
            f.history = history

    def run(self, stop: threading.Event) -> None:
        if not self.faults:
            return
        while not stop.wait(self.rng.uniform(*self.timing.interval)):
            fault = self.rng.choice(self.faults)
            try:
                desc = fault.start()
            except Exception as exc:
                self.errors.append(f"{fault.name} start: {type(exc).__name__}: {exc}")
                self._stop(fault, -1)
                continue
            if desc is None:
                continue
            self.count += 1
            fid = self.count
            self.active = (fid, fault)
            self.history.nemesis("start", {"id": fid, "fault": fault.name, **desc})
            stop.wait(self.rng.uniform(*self.timing.duration))
            self._stop(fault, fid)

    def _stop(self, fault: Fault, fid: int) -> None:
        try:
            fault.stop()
        except Exception as exc:
            self.errors.append(f"{fault.name} stop: {type(exc).__name__}: {exc}")
        if fid >= 0:
            self.history.nemesis("stop", {"id": fid, "fault": fault.name})
        self.active = None

    def heal_all(self) -> None:
        """Undo everything: the active fault, then restart dead members, resume paused ones, heal
        the network, the links and the lease clocks, and bring every node back as a voter (whatever
        a failed stop left behind; a failure to do so is recorded in ``errors``)."""
        if self.active is not None:
            fid, fault = self.active
            self._stop(fault, fid)
        self.history.nemesis("heal", {"desc": "heal all"})
        for name in self.b.names():
            if self.b.nodes[name].paused:
                self.b.resume(name)
            if not self.b.running(name) and not self.b.nodes[name].removed:
                self.b.start(name)
        self.b.heal_network()
        self.b.set_links([])
        self.b.heal_clocks()
        if any(p.removed or p.learner for p in self.b.nodes.values()):
            try:
                acted = self.b.restore_membership()
                self.history.nemesis("heal", {"desc": f"membership restored: {','.join(acted)}"})
            except Exception as exc:
                self.errors.append(f"restore membership: {type(exc).__name__}: {exc}")


NemesisFactory = Callable[[Backend, random.Random], Fault | None]
"""What :data:`coterie.verify.nemesis.NEMESES` holds: the fault to schedule, or None (``none``)."""


def no_fault(backend: Backend, rng: random.Random) -> Fault | None:
    """The ``none`` nemesis: nothing to schedule."""
    return None


def make_faults(names: list[str], backend: Backend, rng: random.Random) -> list[Fault]:
    """The faults of the nemeses ``names`` (registered in :data:`coterie.verify.nemesis.NEMESES`;
    a :class:`ValueError` names the choices), sharing ``rng``."""
    from . import NEMESES

    out: list[Fault] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        fault = NEMESES.load(name)(backend, rng)
        if fault is not None:
            out.append(fault)
    return out
