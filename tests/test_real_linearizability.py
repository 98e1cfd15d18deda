"""A recorded history of concurrent register operations against three real ``coterie node`` processes,
with a ``kill -9`` of the leader in the middle, checked for linearizability.

Five client threads, each with its own :class:`coterie.client.Client` (so its own exactly-once
session), run random reads (linearizable ``get``), writes (``put`` of a value no other operation
writes) and compare-and-sets (a ``txn`` comparing the value, or ``version == 0`` for "no value")
on three keys. Every operation's invoke and complete times come from one monotonic clock
(``time.monotonic`` in this process). A write or cas whose call fails has an unknown outcome (it may
have been applied), a failed read constrains nothing; both are recorded as such. About a third of
the way in the leader is ``kill -9``-ed, and it is restarted a third later.

The history is checked with the Wing & Gong / Lowe / Porcupine checker of
:mod:`tests.sim.linearizability`. To show the check can fail on this very history, copies of it
with one read corrupted (a value nobody wrote; a value that had been overwritten before the read
started) must be rejected.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from pathlib import Path

from coterie.client import Client, Compare, CoterieError, InvalidArgument, Op
from tests.proc_cluster import ProcCluster, cluster
from tests.sim.linearizability import Op as HOp
from tests.sim.linearizability import check, history_to_jsonl

KEYS = ("lin/a", "lin/b", "lin/c")
CLIENTS = 5
MAX_OPS_PER_CLIENT = 1500
PHASE_SECONDS = 4.0
CLIENT_TIMEOUT = 1.0
"""Seconds per call, retries included: short enough that calls in flight during the failover give up
and leave operations with an unknown outcome in the history."""


class Recorder:
    """The shared history. Times are seconds of ``time.monotonic()`` since ``t0``; ``add`` is
    thread-safe and keeps operations in completion order (positions are only labels)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.ops: list[HOp] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, op: HOp) -> None:
        with self._lock:
            self.ops.append(op)


def client_loop(cid: int, endpoints: list[str], rec: Recorder, stop: threading.Event,
                errors: list[BaseException]) -> None:
    """One client: random read / write / cas until ``stop`` or ``MAX_OPS_PER_CLIENT`` operations."""
    rng = random.Random(cid)
    last_seen: dict[str, str | None] = {}
    try:
        with Client(endpoints, timeout=CLIENT_TIMEOUT) as cl:
            for n in range(MAX_OPS_PER_CLIENT):
                if stop.is_set():
                    return
                key = rng.choice(KEYS)
                r = rng.random()
                value = f"c{cid}-{n}"  # str, so the history is JSON
                if r < 0.45:
                    op = HOp(client=cid, key=key, kind="read", invoke=rec.now())
                    try:
                        kv = cl.get(key)
                    except InvalidArgument:
                        raise
                    except CoterieError:
                        rec.add(op.as_unknown())
                        continue
                    out = None if kv is None else kv.value.decode()
                    last_seen[key] = out
                    rec.add(op.completed(rec.now(), out))
                elif r < 0.75:
                    op = HOp(client=cid, key=key, kind="write", value=value, invoke=rec.now())
                    try:
                        cl.put(key, value, prev_kv=False)
                    except InvalidArgument:
                        raise
                    except CoterieError:
                        rec.add(op.as_unknown())
                        continue
                    last_seen[key] = value
                    rec.add(op.completed(rec.now()))
                else:
                    expected = last_seen.get(key)
                    cmp = Compare.version(key) == 0 if expected is None else Compare.value(key) == expected
                    op = HOp(client=cid, key=key, kind="cas", value=value, expected=expected,
                             invoke=rec.now())
                    try:
                        res = cl.txn(compare=[cmp], success=[Op.put(key, value)])
                    except InvalidArgument:
                        raise
                    except CoterieError:
                        rec.add(op.as_unknown())
                        continue
                    if res.succeeded:
                        last_seen[key] = value
                    rec.add(op.completed(rec.now(), bool(res.succeeded)))
    except BaseException as exc:  # reported by the test, not swallowed
        errors.append(exc)


def run_workload(c: ProcCluster, rec: Recorder) -> tuple[float, float]:
    """Run the clients; ``kill -9`` the leader after one phase and restart it after another.
    Returns (kill time, restart time) on the recorder's clock."""
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [threading.Thread(target=client_loop, args=(i, c.endpoints(), rec, stop, errors),
                                name=f"lin-client-{i}", daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(PHASE_SECONDS)
        lead = c.leader()
        killed_at = rec.now()
        c.kill(lead)
        time.sleep(PHASE_SECONDS)
        restarted_at = rec.now()
        c.start(lead)
        time.sleep(PHASE_SECONDS)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a client thread did not stop"
    assert not errors, f"client threads failed: {errors!r}"
    return killed_at, restarted_at


def stale_read(history: list[HOp]) -> tuple[int, str] | None:
    """A completed read and a value it can not have returned: one written (by the only operation
    that writes it) and then overwritten by another write that completed before the read started."""
    writes = [o for o in history if o.ok is True and (o.kind == "write" or (o.kind == "cas" and o.output))]
    for i, r in enumerate(history):
        if r.kind != "read" or r.ok is not True:
            continue
        assert r.complete is not None
        for w2 in writes:
            if w2.key != r.key or w2.complete is None or not w2.complete < r.invoke:
                continue
            for w1 in writes:
                if (w1.key == r.key and w1.value not in (w2.value, r.output)
                        and w1.complete is not None and w1.complete < w2.invoke):
                    return i, w1.value
    return None


def test_history_with_a_leader_kill_is_linearizable(tmp_path: Path) -> None:
    with cluster(tmp_path / "nodes", tick_ms=50) as c:
        rec = Recorder()
        killed_at, restarted_at = run_workload(c, rec)
    history = rec.ops
    (tmp_path / "history.jsonl").write_text(history_to_jsonl(history))
    where = f"(history in {tmp_path / 'history.jsonl'})"

    done = [o for o in history if o.ok is True]
    assert len(done) >= 150, f"only {len(done)} operations completed {where}"
    assert any(o.complete is not None and o.complete < killed_at for o in done)
    assert any(o.invoke > killed_at and o.kind != "read" for o in done), f"no write after the kill {where}"
    assert any(o.invoke > restarted_at for o in done)
    across = [o for o in history if o.invoke < killed_at and (o.ok is not True or
                                                               (o.complete or 0.0) > killed_at)]
    assert across, f"no operation was in flight when the leader was killed {where}"
    assert {o.output for o in done if o.kind == "cas"} == {True, False}, "cas never both swapped and failed"

    result = check(history, timeout=180)
    assert result.ok is True, f"{result.explain()}\n{where}"

    # The same history with one read corrupted is rejected: the check can fail.
    reads = [i for i, o in enumerate(history) if o.kind == "read" and o.ok is True and o.output is not None]
    assert reads
    bad = list(history)
    bad[reads[len(reads) // 2]] = replace(history[reads[len(reads) // 2]], output="never-written")
    verdict = check(bad, timeout=180)
    assert verdict.ok is False and verdict.failures, verdict.explain()

    found = stale_read(history)
    assert found is not None, f"no read followed two ordered writes of its key {where}"
    i, stale = found
    bad = list(history)
    bad[i] = replace(history[i], output=stale)
    verdict = check(bad, timeout=180)
    assert verdict.ok is False, f"a stale read at #{i} was accepted\n{verdict.explain()}"
    assert history[i].key in {f.key for f in verdict.failures}
