"""The workload interface. A workload is one module (see ``register.py``, ``set.py``, ``watch.py``)
with a :class:`Workload` subclass holding its generator, its client calls and its checker, made
known by one entry in :data:`coterie.verify.workloads.WORKLOADS` (its name, ``"module:Class"`` and a
one-line help).

The runner calls, in order: ``setup()``; ``worker(process, stop)`` in ``concurrency`` threads
until ``stop`` is set (through the faults and the recovery period); ``final()`` once the cluster is
healed; ``check(events)``. A worker records every call in the :class:`History` with
:meth:`Workload.call`, which turns client errors into ``fail`` (definitely not applied) or ``info``
(unknown outcome) completions.
"""

from __future__ import annotations

import contextlib
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coterie.client import Client
from coterie.client.errors import (
    CoterieError,
    DeadlineExceeded,
    InvalidArgument,
    NotLeader,
    Unavailable,
)

from ..history import Event, History


@dataclass
class WorkloadConfig:
    endpoints: list[str]
    history: History
    seed: int = 0
    concurrency: int = 6
    timeout: float = 5.0
    """Client deadline per call, seconds."""
    options: dict[str, Any] = field(default_factory=dict)


def classify(exc: BaseException, *, write: bool) -> tuple[str, str]:
    """(``fail`` or ``info``, reason) for a client error. A read that failed had no effect
    (``fail``); a write fails only if the client knows it was never applied."""
    reason = f"{type(exc).__name__}: {exc}"
    if not write:
        return "fail", reason
    if isinstance(exc, InvalidArgument):
        return "fail", reason
    if isinstance(exc, DeadlineExceeded) and exc.retriable:
        return "fail", reason  # the client knows no attempt can have been applied
    if isinstance(exc, NotLeader | Unavailable) and "connect" in exc.message.lower():
        return "fail", reason
    return "info", reason


class Workload(ABC):
    name: str = ""

    def __init__(self, cfg: WorkloadConfig) -> None:
        self.cfg = cfg
        self.history = cfg.history
        self.rng = random.Random(cfg.seed)
        self._lock = threading.Lock()
        self._clients: list[Client] = []

    def client(self, endpoints: list[str] | None = None) -> Client:
        c = Client(endpoints or self.cfg.endpoints, timeout=self.cfg.timeout)
        with self._lock:
            self._clients.append(c)
        return c

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            with contextlib.suppress(Exception):  # best effort at the end of a run
                c.close()

    def call(self, process: int, f: str, key: str | None, value: Any, fn: Callable[[], Any], *,
             write: bool) -> tuple[str, Any]:
        """Invoke ``fn`` as one recorded operation; ``(type, result)``."""
        p = self.history.invoke(process, f, key, value)
        try:
            result = fn()
        except CoterieError as exc:
            t, why = classify(exc, write=write)
            self.history.complete(p, t, error=why)
            return t, None
        except Exception as exc:  # a bug in the client: the outcome is unknown
            self.history.complete(p, "info", error=f"{type(exc).__name__}: {exc}")
            return "info", None
        self.history.complete(p, "ok", result)
        return "ok", result

    def setup(self) -> None:
        """Before the faults start (the cluster is healthy)."""
        return None

    @abstractmethod
    def worker(self, process: int, stop: threading.Event) -> None:
        """Issue operations until ``stop`` is set."""

    def final(self) -> None:
        """After healing and the recovery period: final reads (retried until they succeed)."""
        return None

    def save(self, out: Path) -> None:
        """Write workload-specific files into the report directory ``out``."""
        return None

    @abstractmethod
    def check(self, events: list[Event]) -> dict[str, Any]:
        """The verdict: a JSON-able dict with at least ``valid`` (True / False / None=unknown)."""


def retry(fn: Callable[[], Any], *, attempts: int = 60, what: str = "final read") -> Any:
    """Call ``fn`` until it succeeds (client errors are retried), at most ``attempts`` times."""
    last: BaseException | None = None
    for _ in range(attempts):
        try:
            return fn()
        except CoterieError as exc:
            last = exc
    raise RuntimeError(f"{what} kept failing after {attempts} attempts: {last}")
