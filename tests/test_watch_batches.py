"""How ``WatchStream`` cuts a watcher's pending events into responses (node/server/watch.py).

The client resumes a watch from the revision after the last event it received, so the server must
never split the changes of one revision across responses. These tests drive ``_batches`` on a real
:class:`KVStore` with revisions bigger than both response budgets (event count and bytes).
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any, cast

from coterie.node.server import watch as watch_mod
from coterie.node.server.watch import MAX_EVENTS_PER_RESPONSE, MAX_RESPONSE_BYTES, WatchStream, _Watcher
from coterie.node.statemachine import Event, KVStore
from coterie.node.statemachine.types import DeleteRangeRequest, PutRequest


def _stream(kv: KVStore) -> WatchStream:
    driver = SimpleNamespace(sm=SimpleNamespace(kv=kv))
    return WatchStream(cast(Any, driver), leaderless_limit=2.0)


def _check(batches: list[list[Event]], all_events: list[Event], prev_kv: bool) -> None:
    """Every event once, in order; no revision in two batches; a batch is cut only at a revision
    boundary once one of the budgets is reached."""
    flat = [ev for b in batches for ev in b]
    assert flat == all_events
    seen: set[int] = set()
    for b in batches:
        revs = [ev.kv.mod_revision for ev in b]
        assert not (set(revs) & seen), "a revision was split across responses"
        seen |= set(revs)
    for b in batches[:-1]:
        # Without its last revision, the batch was still under both budgets.
        last = b[-1].kv.mod_revision
        head = [ev for ev in b if ev.kv.mod_revision != last]
        size = sum(len(ev.kv.key) + len(ev.kv.value)
                   + (len(ev.prev_kv.key) + len(ev.prev_kv.value) if prev_kv and ev.prev_kv else 0)
                   for ev in head)
        assert len(head) < MAX_EVENTS_PER_RESPONSE and size < MAX_RESPONSE_BYTES


def test_a_revision_larger_than_the_count_budget_is_one_response() -> None:
    kv = KVStore()
    n = MAX_EVENTS_PER_RESPONSE + 500
    for i in range(n):
        kv.put(f"p/{i:05d}".encode(), b"v")
    first = kv.revision + 1
    kv.put(b"p/x", b"before")
    kv.delete_range(b"p/", b"p0")  # one revision, n + 1 deletes
    kv.put(b"p/y", b"after")
    w = _Watcher(1, b"p/", b"p0", False, first)
    batches = _stream(kv)._batches(w)
    _check(batches, kv.events_since(first, b"p/", b"p0"), False)
    sizes = [len(b) for b in batches]
    assert n + 1 in sizes or n + 2 in sizes, sizes  # the big delete stays whole
    assert w.next_revision == kv.revision + 1


def test_byte_budget_cuts_at_revision_boundaries() -> None:
    kv = KVStore()
    big = b"x" * (300 << 10)
    first = kv.revision + 1
    for i in range(8):
        kv.put(f"b/{i % 3}".encode(), big)
    # A txn whose puts together exceed the byte budget: still one response.
    txn_rev = kv.txn(success=[PutRequest(f"b/t{i}".encode(), big) for i in range(5)]).revision
    kv.put(b"b/z", b"small")
    for prev_kv in (False, True):
        w = _Watcher(1, b"b/", b"b0", prev_kv, first)
        batches = _stream(kv)._batches(w)
        _check(batches, kv.events_since(first, b"b/", b"b0"), prev_kv)
        assert len(batches) > 2  # the budget did cut
        # The txn's 1.5 MiB of values exceed the budget and still travel in one response.
        holder = next(b for b in batches if any(ev.kv.mod_revision == txn_rev for ev in b))
        assert sum(ev.kv.mod_revision == txn_rev for ev in holder) == 5
    # With prev_kv, the replaced values count too, so the responses are smaller.
    n_plain = len(_stream(kv)._batches(_Watcher(1, b"b/", b"b0", False, first)))
    n_prev = len(_stream(kv)._batches(_Watcher(1, b"b/", b"b0", True, first)))
    assert n_prev > n_plain


def test_random_histories_are_cut_only_between_revisions(monkeypatch: Any) -> None:
    # Small budgets so that random histories cross them often.
    monkeypatch.setattr(watch_mod, "MAX_EVENTS_PER_RESPONSE", 7)
    monkeypatch.setattr(watch_mod, "MAX_RESPONSE_BYTES", 200)
    rng = random.Random(20261123)
    for _ in range(200):
        kv = KVStore()
        first = kv.revision + 1
        for _ in range(rng.randrange(1, 40)):
            keys = [f"k/{rng.randrange(12):02d}".encode() for _ in range(rng.randrange(1, 10))]
            roll = rng.random()
            if roll < 0.6:
                kv.put(keys[0], bytes(rng.randrange(60)))
            elif roll < 0.85:
                ops = [PutRequest(k, bytes(rng.randrange(60))) for k in dict.fromkeys(keys)]
                kv.txn(success=ops)
            else:
                kv.txn(success=[DeleteRangeRequest(b"k/", b"k0")])
        prev_kv = rng.random() < 0.5
        w = _Watcher(1, b"k/", b"k0", prev_kv, first)
        batches = _stream(kv)._batches(w)
        events = kv.events_since(first, b"k/", b"k0")
        assert [ev for b in batches for ev in b] == events
        seen: set[int] = set()
        for b in batches:
            revs = {ev.kv.mod_revision for ev in b}
            assert not (revs & seen)
            seen |= revs
        for b in batches[:-1]:
            last = b[-1].kv.mod_revision
            head = [ev for ev in b if ev.kv.mod_revision != last]
            size = sum(len(ev.kv.key) + len(ev.kv.value)
                       + (len(ev.prev_kv.key) + len(ev.prev_kv.value) if prev_kv and ev.prev_kv else 0)
                       for ev in head)
            assert len(head) < 7 and size < 200
