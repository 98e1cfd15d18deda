"""Lock workload: contenders increment one counter under the lock ``jepsen/counter``, each write
fenced with the holder's token.

Each worker loops: acquire ``c.lock("jepsen/counter", ttl=ttl, timeout=lock_timeout)`` (op
``acquire``, ok with the token), read the counter (op ``read``), write ``read + 1`` (with the token,
as ``"<count>:<token>"``) with ``fence=lock`` (op ``write``: ok, ``fail`` with ``rejected`` when the
cluster refused the fence, other fail / info outcomes as usual), release.

GC pauses (option ``gc_pause``, the probability per acquisition, default 0.1): the holder stops its
lease's keep-alive and sleeps past its TTL, as a process frozen by a GC pause would (its keep-alive
stops too), then waits (at most ``gc_wait`` s) until another contender has acquired the lock, and
only then sends its fenced write, which the cluster must refuse (the checker's ``stale_accepted``).
If no one else acquired within ``gc_wait`` the write is sent anyway (it may then be accepted: no one
else held the lock).

After healing, the final value is read and the counter's whole history is read back with a watch
from the revision after its initial value; :func:`..checkers.locks.check_lock` checks it.

Options (``--opt``): ``ttl`` (lease TTL, s, default 2), ``lock_timeout`` (s, default 10),
``gc_pause`` (default 0.1), ``gc_wait`` (s, default 15).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from coterie.client.errors import CoterieError, FenceRejected, LeaseLost, LockTimeout

from ..checkers.locks import FencedWrite, check_lock
from ..history import Event, pairs
from .base import Workload, classify, retry

LOCK_NAME = "jepsen/counter"
COUNTER = "jepsen-lock/counter"


def _parse(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    count, _, token = text.partition(":")
    return int(count), int(token or 0)


class LockWorkload(Workload):
    name = "lock"

    def setup(self) -> None:
        o = self.cfg.options
        self.ttl = float(o.get("ttl", 2.0))
        self.lock_timeout = float(o.get("lock_timeout", 10.0))
        self.gc_pause = float(o.get("gc_pause", 0.1))
        self.gc_wait = float(o.get("gc_wait", 15.0))
        c = self.client()
        self.start_rev = int(c.put(COUNTER, "0:0", prev_kv=False).revision) + 1
        self._max_token = 0
        self.sequence: list[tuple[int, int]] = []
        self.final_count: int | None = None

    def worker(self, process: int, stop: threading.Event) -> None:
        c = self.client()
        while not stop.is_set():
            p = self.history.invoke(process, "acquire", LOCK_NAME, None)
            lk = c.lock(LOCK_NAME, ttl=self.ttl, timeout=self.lock_timeout)
            try:
                lk.acquire()
            except CoterieError as exc:
                why = f"{type(exc).__name__}: {exc}"
                self.history.complete(p, "fail" if isinstance(exc, LockTimeout) else "info", error=why)
                with contextlib.suppress(Exception):
                    lk.release()
                continue
            self.history.complete(p, "ok", {"token": lk.token})
            with self._lock:
                self._max_token = max(self._max_token, lk.token)
            try:
                with lk:
                    self._critical_section(c, lk, process)
            except LeaseLost:
                pass  # the lease ran out during the section (a pause, a partition): recorded already
            except CoterieError:
                pass

    def _critical_section(self, c: Any, lk: Any, process: int) -> None:
        t, kv = self.call(process, "read", COUNTER, None, lambda: c.get(COUNTER), write=False)
        if t != "ok" or kv is None:
            return
        count, _ = _parse(kv.value)
        paused = self.rng.random() < self.gc_pause
        if paused:
            self._pause(lk)
        value = f"{count + 1}:{lk.token}"
        p = self.history.invoke(process, "write", COUNTER,
                                {"token": lk.token, "read": count, "paused": paused})
        try:
            r = c.put(COUNTER, value, fence=lk, prev_kv=False)
        except FenceRejected as exc:
            self.history.complete(p, "fail", error=f"FenceRejected: {exc}", rejected=True)
            return
        except CoterieError as exc:
            typ, why = classify(exc, write=True)
            self.history.complete(p, typ, error=why)
            return
        except Exception as exc:
            self.history.complete(p, "info", error=f"{type(exc).__name__}: {exc}")
            return
        self.history.complete(p, "ok", {"token": lk.token, "read": count, "paused": paused,
                                        "revision": int(r.revision)})

    def _pause(self, lk: Any) -> None:
        """A simulated GC pause of the holder: no keep-alives, sleep past the TTL, then wait for a
        newer holder (bounded)."""
        lease = lk.lease
        if lease is not None:
            lease.stop_keepalive()
        time.sleep(self.ttl * 1.2)
        deadline = time.monotonic() + self.gc_wait
        while time.monotonic() < deadline:
            with self._lock:
                if self._max_token > lk.token:
                    return
            time.sleep(0.05)

    def final(self) -> None:
        c = self.client()
        p = self.history.invoke(-1, "final-read", COUNTER, None)
        kv = retry(lambda: c.get(COUNTER, timeout=10), what="final counter read")
        self.final_count, _ = _parse(kv.value)
        self.history.complete(p, "ok", self.final_count)
        end_rev = int(kv.mod_revision)
        seq: list[tuple[int, int]] = []
        if end_rev >= self.start_rev:
            w = retry(lambda: c.watch(COUNTER, start_revision=self.start_rev), what="counter history watch")
            try:
                for ev in w:
                    if ev.type == "PUT":
                        seq.append(_parse(ev.kv.value))
                    if ev.revision >= end_rev:
                        break
            finally:
                w.close()
        self.sequence = seq

    def check(self, events: list[Event]) -> dict[str, Any]:
        writes: list[FencedWrite] = []
        acquired: list[tuple[int, float]] = []
        for inv, done in pairs(events):
            if inv["f"] == "acquire" and done is not None and done["type"] == "ok":
                acquired.append((int(done["value"]["token"]), float(done["time"])))
            elif inv["f"] == "write":
                v = inv["value"]
                if done is None:
                    outcome = "info"
                elif done["type"] == "fail" and done.get("rejected"):
                    outcome = "rejected"
                else:
                    outcome = done["type"]
                writes.append(FencedWrite(int(v["token"]), int(v["read"]), outcome, float(inv["time"]),
                                          bool(v["paused"])))
        if self.final_count is None:
            return {"valid": None, "error": "no final read"}
        res = check_lock(writes, acquired, self.sequence, self.final_count)
        res["checker"] = ("lock (fenced increments: no lost update, tokens increasing in write order, "
                          "stale holders refused)")
        return res

    def save(self, out: Path) -> None:
        (out / "counter-history.json").write_text(json.dumps(self.sequence) + "\n")
