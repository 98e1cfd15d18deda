"""Set workload: clients add unique elements; after healing, one final read of the whole set.
Every acknowledged add must be present, nothing never added (or definitely failed) may appear
(:func:`..checkers.sets.check_set`).

An add of element ``e`` is ``put("set/<e>", "<e>")``; the final read is ``get_prefix("set/")``,
retried until it succeeds (a linearizable read on the leader).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from ..checkers.sets import check_set
from ..history import Event, pairs
from .base import Workload, retry

PREFIX = "set/"


class SetWorkload(Workload):
    name = "set"

    def setup(self) -> None:
        self._next = 0
        self.final_read: list[int] | None = None

    def _element(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def worker(self, process: int, stop: threading.Event) -> None:
        c = self.client()
        while not stop.is_set():
            e = self._element()
            key = f"{PREFIX}{e:08d}"
            self.call(process, "add", key, e, functools.partial(_add, c, key, e), write=True)

    def final(self) -> None:
        c = self.client()
        p = self.history.invoke(-1, "read", PREFIX, None)
        kvs = retry(lambda: c.get_prefix(PREFIX, timeout=10), what="final set read")
        self.final_read = sorted(int(kv.value) for kv in kvs)
        self.history.complete(p, "ok", self.final_read)

    def check(self, events: list[Event]) -> dict[str, Any]:
        adds: dict[Any, str] = {}
        final: list[int] | None = None
        for inv, done in pairs(events):
            if inv["f"] == "add":
                adds[inv["value"]] = done["type"] if done is not None else "info"
            elif inv["f"] == "read" and done is not None and done["type"] == "ok":
                final = list(done["value"])
        if final is None:
            return {"valid": None, "error": "no final read"}
        return {"checker": "set (acknowledged adds present, nothing unexpected)", **check_set(adds, final)}


def _add(c: Any, key: str, value: int) -> None:
    c.put(key, str(value), prev_kv=False)
