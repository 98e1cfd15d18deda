"""Lease workload: holders grant leases with a key attached, keep them alive for a while, then stop
and let them expire; an observer watches the keys' DELETEs. Checked against the two lease promises
(:func:`..checkers.leases.check_leases`).

Each worker loops: grant a lease of ``ttl`` seconds (op ``grant``) and start its keep-alive at once,
attach the key ``jepsen-lease/<id>`` to it (op ``attach``), keep it alive for a time drawn from
``hold`` while reading its own key every ``check_every`` seconds (op ``read``; the key must be there
while the lease is valid), then stop the keep-alive at a recorded time and read the lease's
``valid_until`` (last answered send + TTL x (1 - DRIFT_BOUND)), and move on to a new lease. A holder
that finds its key gone, or whose client marks the lease lost, stops early.

All times are ``History.now()`` (one monotonic clock of the runner's process: every worker and the
observer run there), so the observer's delete times and the holders' ``valid_until`` compare.
After healing, ``final()`` waits until every attached key was seen deleted, or until
``TTL + allowance`` after the last stop.

Options (``--opt``): ``ttl`` (s, default 2: the nodes' minimum with the default tick), ``hold``
(``lo,hi`` seconds of keep-alive, default ``1,4``), ``check_every`` (s, default 0.25),
``allowance`` (s, default 20: the liveness allowance past stop + TTL, see below).

The liveness allowance: past ``stop + TTL`` the cluster may take the drift of the expiring leader's
clock, the commit of the expiry, time without a leader, an expiry retry (1 s), one checkpoint
interval (5 s) per restarted-then-elected leader (``coterie.node.server.lease_timer``), and the
observer's own delay (its watch resuming on another member after a fault, up to a fault's duration):
20 s by default covers one such fault of the default schedule; ``max_lateness`` reports what was
observed.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from coterie.client.errors import CoterieError

from ..checkers.leases import LeaseRec, check_leases
from ..history import Event
from .base import Workload, classify

PREFIX = "jepsen-lease/"


def _range(text: Any, default: tuple[float, float]) -> tuple[float, float]:
    if text is None:
        return default
    if isinstance(text, tuple | list):
        return float(text[0]), float(text[1])
    lo, _, hi = str(text).partition(",")
    return float(lo), float(hi or lo)


class LeaseWorkload(Workload):
    name = "lease"

    def setup(self) -> None:
        o = self.cfg.options
        self.ttl = float(o.get("ttl", 2.0))
        self.hold = _range(o.get("hold"), (1.0, 4.0))
        self.check_every = float(o.get("check_every", 0.25))
        self.allowance = float(o.get("allowance", 20.0))
        c = self.client()
        self.start_rev = int(c.put(f"{PREFIX}~start", "start", prev_kv=False).revision) + 1
        self.recs: list[LeaseRec] = []
        self.deleted: dict[str, float] = {}
        self.watch_errors: list[str] = []
        self._done = threading.Event()
        self._watch: Any = None
        self.end = 0.0
        self._observer = threading.Thread(target=self._observe, name="lease-observer", daemon=True)
        self._observer.start()

    # ------------------------------------------------------------------------------ observer

    def _observe(self) -> None:
        c = self.client()
        rev = self.start_rev
        while not self._done.is_set():
            try:
                w = c.watch_prefix(PREFIX, start_revision=rev)
            except CoterieError as exc:
                self.watch_errors.append(f"watch could not start: {type(exc).__name__}: {exc}")
                time.sleep(0.2)
                continue
            with self._lock:
                self._watch = w
            try:
                for ev in w:
                    rev = int(ev.revision) + 1
                    if ev.type == "DELETE":
                        key = ev.kv.key.decode()
                        now = self.history.now()
                        with self._lock:
                            self.deleted.setdefault(key, now)
            except Exception as exc:
                if not self._done.is_set():
                    self.watch_errors.append(f"watch ended: {type(exc).__name__}: {exc}")
            finally:
                w.close()

    # ------------------------------------------------------------------------------ holders

    def worker(self, process: int, stop: threading.Event) -> None:
        c = self.client()
        t0 = self.history.t0
        while not stop.is_set():
            p = self.history.invoke(process, "grant", None, {"ttl": self.ttl})
            try:
                lease = c.grant_lease(self.ttl)
                lease.start_keepalive()
            except CoterieError as exc:
                typ, why = classify(exc, write=True)
                self.history.complete(p, typ, error=why)
                continue
            granted = self.history.now()
            self.history.complete(p, "ok", {"lease": lease.id, "ttl": lease.ttl})
            key = f"{PREFIX}{lease.id:016x}"
            typ, _ = self.call(process, "attach", key, lease.id,
                               functools.partial(c.put, key, str(process), lease=lease, prev_kv=False),
                               write=True)
            rec = LeaseRec(process, lease.id, key, lease.ttl, typ, granted)
            with self._lock:
                self.recs.append(rec)
            until = time.monotonic() + self.rng.uniform(*self.hold)
            while typ == "ok" and not stop.is_set() and time.monotonic() < until and not lease.lost.is_set():
                t, kv = self.call(process, "read", key, None, functools.partial(c.get, key), write=False)
                if t == "ok" and kv is None:
                    rec.absent_reads.append(self.history.now())
                    break
                stop.wait(self.check_every)
            rec.lost_client_side = lease.lost.is_set()
            rec.stopped = self.history.now()
            try:
                lease.stop_keepalive()
            except CoterieError as exc:
                self.watch_errors.append(f"stop_keepalive: {exc}")
            rec.valid_until = lease.valid_until - t0

    # ------------------------------------------------------------------------------ end

    def final(self) -> None:
        with self._lock:
            recs = list(self.recs)
        last = max((r.stopped for r in recs if r.stopped is not None), default=self.history.now())
        deadline = last + self.ttl + self.allowance + 1.0
        while self.history.now() < deadline:
            with self._lock:
                pending = [r for r in recs if r.attached == "ok" and r.key not in self.deleted]
            if not pending:
                break
            time.sleep(0.2)
        self.end = self.history.now()
        self._done.set()
        with self._lock:
            if self._watch is not None:
                self._watch.close()
        self._observer.join(10)

    def check(self, events: list[Event]) -> dict[str, Any]:
        with self._lock:
            recs = list(self.recs)
            for r in recs:
                r.deleted = self.deleted.get(r.key)
        res = check_leases(recs, self.allowance, self.end)
        if self.watch_errors:
            res["watch_errors"] = self.watch_errors[:20]
        res["checker"] = ("lease (never deleted before valid_until; deleted within TTL + allowance "
                          "after the holder stopped)")
        return res

    def save(self, out: Path) -> None:
        with open(out / "leases.jsonl", "w") as fh:
            for r in self.recs:
                fh.write(json.dumps(asdict(r)) + "\n")
