"""Register workload: concurrent read / write / compare-and-set on several keys, checked for
linearizability per key (:mod:`..checkers.linearizability`).

- Keys are independent registers ``reg/<n>``; ``keys`` of them are active at a time and a key is
  retired after ``ops_per_key`` operations (about 200: the checker's search stays small), when a
  fresh key takes its place.
- Written values are unique integers, so a read names the write it observed.
- Writes and cas go through a client that knows every member (it follows the leader). Each worker
  *reads* through a client bound to one member (worker ``i`` to member ``i mod n``), so reads served
  by followers and by a minority side of a partition are exercised, as in Jepsen.
- A cas is a txn ``value(k) == expected ? put(k, new)`` (``version(k) == 0`` for "no value").
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from coterie.client import Compare, Op

from ..checkers.linearizability import CheckResult, check
from ..checkers.linearizability import Op as LinOp
from ..history import Event, pairs
from .base import Workload


class RegisterWorkload(Workload):
    name = "register"

    def setup(self) -> None:
        o = self.cfg.options
        self.n_keys = int(o.get("keys", 3))
        self.ops_per_key = int(o.get("ops_per_key", 200))
        self._next_key = 0
        self._active: list[tuple[str, int]] = []  # (key, ops issued)
        self._counter = 0
        self._recent: dict[str, list[int]] = {}
        for _ in range(self.n_keys):
            self._active.append((self._new_key(), 0))

    def _new_key(self) -> str:
        k = f"reg/{self._next_key}"
        self._next_key += 1
        return k

    def _pick(self) -> tuple[str, int, float, int | None]:
        """The key, a fresh value, a roll deciding the kind, and a cas expectation."""
        with self._lock:
            i = self.rng.randrange(len(self._active))
            key, count = self._active[i]
            count += 1
            self._active[i] = (key, count) if count < self.ops_per_key else (self._new_key(), 0)
            self._counter += 1
            recent = self._recent.setdefault(key, [])
            expected = self.rng.choice([*recent[-3:], None])
            roll = self.rng.random()
            if roll >= 0.45:
                recent.append(self._counter)
            return key, self._counter, roll, expected

    def worker(self, process: int, stop: threading.Event) -> None:
        eps = self.cfg.endpoints
        writer = self.client()
        reader = self.client([eps[process % len(eps)]])
        while not stop.is_set():
            key, value, roll, expected = self._pick()
            if roll < 0.45:
                self.call(process, "read", key, None, functools.partial(_read, reader, key), write=False)
            elif roll < 0.75:
                self.call(process, "write", key, value, functools.partial(_put, writer, key, value),
                          write=True)
            else:
                self.call(process, "cas", key, [expected, value],
                          functools.partial(_cas, writer, key, expected, value), write=True)

    def check(self, events: list[Event]) -> dict[str, Any]:
        ops = to_lin_ops(events)
        res: CheckResult = check(ops, timeout=float(self.cfg.options.get("check_timeout", 300)))
        counts = _counts(events)
        out: dict[str, Any] = {"valid": res.ok, "checker": "linearizability (WGL per key)",
                               "keys": len(res.per_key),
                               "ops_checked": sum(r.ops for r in res.per_key.values()),
                               "check_seconds": round(res.elapsed, 3), **counts}
        if res.ok is not True:
            out["explanation"] = res.explain()
            out["failing_keys"] = sorted(f.key for f in res.failures)
        return out


def _read(c: Any, key: str) -> int | None:
    kv = c.get(key)
    return None if kv is None else int(kv.value)


def _put(c: Any, key: str, value: int) -> None:
    c.put(key, str(value), prev_kv=False)


def _cas(c: Any, key: str, expected: int | None, new: int) -> bool:
    cmp = Compare.version(key) == 0 if expected is None else Compare.value(key) == str(expected)
    r = c.txn(compare=[cmp], success=[Op.put(key, str(new))])
    return bool(r.succeeded)


def to_lin_ops(events: list[Event]) -> list[LinOp]:
    """The client operations of a register history as checker operations."""
    out: list[LinOp] = []
    for inv, done in pairs(events):
        f = inv["f"]
        if f not in ("read", "write", "cas"):
            continue
        value: Any = None
        expected: Any = None
        if f == "write":
            value = inv["value"]
        elif f == "cas":
            expected, value = inv["value"]
        op = LinOp(client=int(inv["process"]), key=str(inv["key"]), kind=f, value=value,
                   expected=expected, invoke=float(inv["time"]))
        if done is None or done["type"] == "info":
            out.append(op.as_unknown())
        elif done["type"] == "fail":
            out.append(op.as_failed(float(done["time"])))
        else:
            out.append(op.completed(float(done["time"]), done["value"] if f != "write" else None))
    return out


def _counts(events: list[Event]) -> dict[str, int]:
    c = {"ok": 0, "fail": 0, "info": 0, "invoked": 0}
    for _inv, done in pairs(events):
        c["invoked"] += 1
        c[done["type"] if done is not None else "info"] += 1
    return c
