"""The recorded history of a run: every invocation and completion, and every nemesis action.

Events are Jepsen-style dicts, one per line of ``history.jsonl``:

``{"index": 7, "time": 1.234567, "process": 3, "type": "invoke", "f": "write", "key": "r0",
"value": 12}`` and later ``{"index": 9, "time": 1.31, "process": 3, "type": "ok", "f": "write",
"key": "r0", "value": 12, "invoke_index": 7}``.

- ``type`` is ``invoke``, then exactly one of ``ok`` (done, result known), ``fail`` (definitely did
  not take effect) or ``info`` (outcome unknown); the nemesis logs ``info`` events with ``process``
  ``"nemesis"`` and ``f`` ``start`` / ``stop``.
- ``time`` is seconds since the start of the run on one monotonic clock, so intervals compare.
- Indices are assigned in the order events are recorded, under a lock: an event's completion is
  recorded after its invocation, and a call whose completion precedes another's invocation in real
  time also does in ``index`` and ``time``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]


@dataclass(frozen=True)
class Pending:
    """A handle on an invocation, completed exactly once with :meth:`History.complete`."""

    index: int
    process: int
    f: str
    key: str | None
    value: Any


class History:
    """A thread-safe, append-only event log (see the module docstring)."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _append(self, ev: Event) -> Event:
        with self._lock:
            ev["index"] = len(self._events)
            ev["time"] = round(self.now(), 6)
            self._events.append(ev)
            return ev

    def invoke(self, process: int, f: str, key: str | None = None, value: Any = None) -> Pending:
        ev = self._append({"process": process, "type": "invoke", "f": f, "key": key, "value": value})
        return Pending(ev["index"], process, f, key, value)

    def complete(self, p: Pending, type_: str, value: Any = None, *, error: str | None = None,
                 **extra: Any) -> Event:
        """Record the completion of ``p``: ``type_`` ``ok`` / ``fail`` / ``info``; ``value`` the
        result (for ``ok``), ``error`` a short reason (for ``fail`` / ``info``)."""
        if type_ not in ("ok", "fail", "info"):
            raise ValueError(f"completion type must be ok, fail or info, not {type_!r}")
        ev: Event = {"process": p.process, "type": type_, "f": p.f, "key": p.key,
                     "value": value if type_ == "ok" else p.value, "invoke_index": p.index}
        if error is not None:
            ev["error"] = error[:300]
        ev.update(extra)
        return self._append(ev)

    def nemesis(self, f: str, value: Any) -> Event:
        return self._append({"process": "nemesis", "type": "info", "f": f, "key": None, "value": value})

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def write_jsonl(self, path: str) -> None:
        with open(path, "w") as fh:
            for ev in self.events():
                fh.write(json.dumps(ev, separators=(",", ":"), default=str) + "\n")


def read_jsonl(path: str) -> list[Event]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def pairs(events: Iterable[Event]) -> Iterator[tuple[Event, Event | None]]:
    """Client (invoke, completion) pairs in invocation order; completion None if never recorded
    (the run ended while the call was in flight: its outcome is unknown)."""
    done: dict[int, Event] = {}
    invokes: list[Event] = []
    for ev in events:
        if ev["process"] == "nemesis":
            continue
        if ev["type"] == "invoke":
            invokes.append(ev)
        else:
            done[ev["invoke_index"]] = ev
    for inv in invokes:
        yield inv, done.get(inv["index"])


def nemesis_periods(events: Iterable[Event], end: float) -> list[tuple[float, float, str]]:
    """``(start, stop, description)`` of every fault, from the nemesis events; a fault never
    stopped lasts until ``end``."""
    open_: dict[str, tuple[float, str]] = {}
    out: list[tuple[float, float, str]] = []
    for ev in events:
        if ev["process"] != "nemesis":
            continue
        v = ev["value"] or {}
        fid = str(v.get("id", ""))
        if ev["f"] == "start":
            open_[fid] = (ev["time"], str(v.get("desc", "")))
        elif ev["f"] == "stop" and fid in open_:
            t, desc = open_.pop(fid)
            out.append((t, ev["time"], desc))
    out.extend((t, end, desc) for t, desc in open_.values())
    return sorted(out)
