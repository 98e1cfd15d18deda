"""Watch workload: writers put and delete keys under ``watch/`` while watchers follow the prefix
from a fixed starting revision through the faults (the client's watch resumes on another member
with no gaps or duplicates). After healing a marker key is written; every watcher must reach its
revision and have seen exactly the events of a reference watch read afterwards, which must contain
every acknowledged write at the revision the cluster answered and agree with the final read
(:func:`..checkers.watch.check_watch`).

Writes are a ``put`` of a unique value or a ``delete`` (a txn, so its revision is known) on one of
``keys`` keys. Watchers are not clients in the history; their streams are kept in
``results.json`` (counts) and ``watch-streams.jsonl`` (every event).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from pathlib import Path
from typing import Any

from coterie.client import Op

from ..checkers.watch import WatchEv, check_watch
from ..history import Event, pairs
from .base import Workload, retry

PREFIX = "watch/"
END_KEY = f"{PREFIX}~end"


class WatchWorkload(Workload):
    name = "watch"

    def setup(self) -> None:
        o = self.cfg.options
        self.n_keys = int(o.get("keys", 8))
        self.n_watchers = int(o.get("watchers", 3))
        c = self.client()
        self.start_rev = int(c.put(f"{PREFIX}~start", "start", prev_kv=False).revision) + 1
        self.end_rev = 0
        self._done = threading.Event()
        self._counter = 0
        self.streams: dict[int, list[WatchEv]] = {i: [] for i in range(self.n_watchers)}
        self.watch_errors: list[str] = []
        self._watches: list[Any] = []
        self._threads = [threading.Thread(target=self._watcher, args=(i,), daemon=True, name=f"watcher-{i}")
                         for i in range(self.n_watchers)]
        for t in self._threads:
            t.start()

    def _watcher(self, i: int) -> None:
        c = self.client()
        try:
            w = c.watch_prefix(PREFIX, start_revision=self.start_rev)
        except Exception as exc:
            self.watch_errors.append(f"watcher {i} could not start: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            self._watches.append(w)
        out = self.streams[i]
        try:
            for ev in w:
                out.append(_ev(ev))
                # The end marker's own event ends the stream: end_rev may not be known yet when it
                # arrives (the marker's put has not returned), and nothing follows it to compare.
                if (self.end_rev and ev.revision >= self.end_rev) or ev.kv.key.decode() == END_KEY:
                    break
        except Exception as exc:
            if not self._done.is_set():
                self.watch_errors.append(f"watcher {i}: {type(exc).__name__}: {exc}")

    def worker(self, process: int, stop: threading.Event) -> None:
        c = self.client()
        while not stop.is_set():
            with self._lock:
                self._counter += 1
                n = self._counter
                key = f"{PREFIX}k{self.rng.randrange(self.n_keys)}"
                delete = self.rng.random() < 0.2
            if delete:
                self.call(process, "delete", key, None, functools.partial(_delete, c, key), write=True)
            else:
                self.call(process, "put", key, str(n), functools.partial(_put, c, key, str(n)), write=True)

    def final(self) -> None:
        c = self.client()
        p = self.history.invoke(-1, "put", END_KEY, "end")
        self.end_rev = int(retry(lambda: c.put(END_KEY, "end", prev_kv=False, timeout=10)).revision)
        self.history.complete(p, "ok", [self.end_rev, 1])
        deadline = time.monotonic() + 60
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._done.set()
        with self._lock:
            for w in self._watches:
                w.close()
        # The reference: a fresh watch from the same revision, read to the marker.
        self.reference: list[WatchEv] = []
        ref = retry(lambda: c.watch_prefix(PREFIX, start_revision=self.start_rev), what="reference watch")
        try:
            for ev in ref:
                self.reference.append(_ev(ev))
                if ev.revision >= self.end_rev:
                    break
        finally:
            ref.close()
        kvs = retry(lambda: c.get_prefix(PREFIX, timeout=10), what="final read")
        self.final_read = {kv.key.decode(): (kv.mod_revision, kv.value.decode()) for kv in kvs
                           if kv.key.decode() != f"{PREFIX}~start"}

    def check(self, events: list[Event]) -> dict[str, Any]:
        writes: list[WatchEv] = []
        attempted: set[tuple[str, str, Any]] = set()
        for inv, done in pairs(events):
            if inv["f"] not in ("put", "delete"):
                continue
            typ = "PUT" if inv["f"] == "put" else "DELETE"
            attempted.add((typ, inv["key"], inv["value"]))
            if done is not None and done["type"] == "ok":
                rev, changed = done["value"]
                if changed:
                    writes.append((rev, typ, inv["key"], inv["value"]))
        res = check_watch(self.streams, self.reference, writes, attempted, self.final_read, self.end_rev)
        if self.watch_errors:
            res["watch_errors"] = self.watch_errors[:20]
        res["events_per_watcher"] = {str(i): len(s) for i, s in self.streams.items()}
        res["checker"] = "watch (exactly once, in order, matching the reference and the final read)"
        return res

    def save(self, out: Path) -> None:
        with open(out / "watch-streams.jsonl", "w") as fh:
            for i, s in self.streams.items():
                for e in s:
                    fh.write(json.dumps({"watcher": i, "event": e}) + "\n")
            for e in self.reference:
                fh.write(json.dumps({"watcher": "reference", "event": e}) + "\n")


def _ev(ev: Any) -> WatchEv:
    value = None if ev.type == "DELETE" else ev.kv.value.decode()
    return (int(ev.revision), str(ev.type), ev.kv.key.decode(), value)


def _put(c: Any, key: str, value: str) -> list[int]:
    return [int(c.put(key, value, prev_kv=False).revision), 1]


def _delete(c: Any, key: str) -> list[int]:
    r = c.txn(success=[Op.delete(key)])
    return [int(r.revision), int(r.results[0].deleted)]
