"""The multi-version key-value store (etcd v3 MVCC semantics), deterministic and I/O-free.

Revisions
    ``revision`` starts at 1 with an empty store (as in etcd). Every write that changes something (a
    put, a delete that removed at least one key, a txn containing such ops) increments it by exactly
    one; all changes of one txn share that revision and are ordered by a sub-index (``Event.sub``).
    Reads, compares, compaction and writes that change nothing leave it alone.

Storage
    ``_index`` (a ``SortedDict`` by key) maps each key to its ``_History``: parallel lists of
    revisions (strictly increasing) and versions (``KeyValue``, or ``None`` for a deletion
    tombstone). Reading key ``k`` at revision ``r`` is a bisect for the last record ``<= r``.
    ``_events`` is the append-only change log, ordered by ``(revision, sub)``, with ``_event_revs``
    the parallel list of revisions for bisecting. Records are shared by both structures.

Compaction at ``C`` (:meth:`KVStore.compact`)
    Reads at any revision ``>= C`` stay exact; reads below fail with :class:`Compacted`. Each key
    keeps every record with revision ``>= C`` plus, if the key was live at ``C`` through an older
    version, that one version. The event log keeps every event with revision ``>= C``.

    Invariant (checked by :meth:`KVStore.check_invariants`): the index is exactly *base* (the
    records with revision ``< C``: at most one per key, always live) followed by one record per event
    in the log. That is what a snapshot stores and how :meth:`KVStore.load` rebuilds the index.

Watch rule (:meth:`KVStore.events_since`)
    ``events_since(start)`` fails with :class:`Compacted` iff ``start < compact_revision``: the same
    rule as etcd's watchable store (``minRev < compactRev``) and as reads. Because events *at* the
    compaction revision are kept (etcd may drop some of them), a watch from ``compact_revision`` is
    complete.

Validation
    Every check (sizes, limits, duplicate keys in a txn, ``ignore_value`` on a missing key, read
    revisions inside a txn) runs before the first change, so a failing command changes nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from .codec import decode_event, decode_kv, encode_event, encode_kv
from .errors import Compacted, FutureRevision, InvalidArgument, LeaseNotFound, LimitExceeded
from .types import (
    ALL_KEYS_END,
    CompactResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    Event,
    EventType,
    KeyValue,
    Limits,
    Op,
    OpResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
    in_range,
)

__all__ = ["KVStore"]


class _History:
    """All retained records of one key. ``revs`` strictly increasing; ``kvs[i]`` is the version written
    at ``revs[i]`` or ``None`` (deleted there)."""

    __slots__ = ("kvs", "revs")

    def __init__(self) -> None:
        self.revs: list[int] = []
        self.kvs: list[KeyValue | None] = []

    def append(self, rev: int, kv: KeyValue | None) -> None:
        self.revs.append(rev)
        self.kvs.append(kv)

    def latest(self) -> KeyValue | None:
        return self.kvs[-1] if self.kvs else None

    def at(self, revision: int) -> KeyValue | None:
        """The live version at ``revision``, or None."""
        i = bisect.bisect_right(self.revs, revision) - 1
        return self.kvs[i] if i >= 0 else None


def _short(key: bytes) -> str:
    r = repr(key)
    return r if len(r) <= 60 else r[:57] + "..."


_ZERO = KeyValue(b"", b"", 0, 0, 0, 0)


class KVStore:
    """The MVCC key-value store. Writes raise :class:`KVError` subclasses and change nothing then.

    ``limits`` must be the same on every replica.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        self._index: Any = SortedDict()  # bytes -> _History
        self._events: list[Event] = []
        self._event_revs: list[int] = []
        self._revision = 1
        self._compact_revision = 0
        self.lease_exists: Callable[[int], bool] | None = None
        """If set, a put (also in a txn's executed branch) with ``lease != 0`` for which it returns
        False fails with :class:`LeaseNotFound` before anything changes (the state machine sets it
        to its lease table). None: leases are not checked."""

    # ------------------------------------------------------------------------------------ properties

    @property
    def revision(self) -> int:
        """The current revision (1 for an empty store that never changed)."""
        return self._revision

    @property
    def compact_revision(self) -> int:
        """The last compaction revision (0 = never compacted). Reads at ``>= max(1, it)`` work."""
        return self._compact_revision

    def __len__(self) -> int:
        """Number of live keys (O(keys))."""
        return sum(1 for h in self._index.values() if h.latest() is not None)

    # ----------------------------------------------------------------------------------------- reads

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The live version of ``key`` at ``revision`` (0 = current), or None."""
        resp = self.range(key, revision=revision)
        return resp.kvs[0] if resp.kvs else None

    def range(
        self,
        key: bytes,
        range_end: bytes | None = None,
        *,
        limit: int = 0,
        revision: int = 0,
        count_only: bool = False,
        keys_only: bool = False,
    ) -> RangeResponse:
        """Live keys in the range at ``revision`` (0 = current), sorted by key.

        ``count`` counts every match, ``kvs`` holds at most ``limit`` (0 = all) and ``more`` tells
        whether some were left out. Raises ``Compacted``/``FutureRevision``/``InvalidArgument``.
        """
        req = RangeRequest(key, range_end, limit, revision, count_only, keys_only)
        self._validate_range(req)
        self._check_read_revision(revision)
        return self._do_range(req, self._revision)

    def events_since(self, start_revision: int, key: bytes, range_end: bytes | None = None) -> list[Event]:
        """Every change to a key in the range at revision ``>= start_revision``, in ``(revision, sub)``
        order, each with its ``prev_kv``.

        Raises :class:`Compacted` iff ``start_revision < compact_revision`` (etcd's watch rule; see the
        module docstring). A ``start_revision`` above the current revision returns ``[]`` (a watch
        may wait for the future). ``start_revision`` must be ``>= 1``.
        """
        self._check_key(key, "watch key")
        if range_end:
            self._check_size(range_end, "max_key_bytes", "watch range_end length")
        if start_revision < 1:
            raise InvalidArgument(f"watch start revision must be >= 1, got {start_revision}")
        if start_revision < self._compact_revision:
            raise Compacted(start_revision, self._compact_revision)
        i = bisect.bisect_left(self._event_revs, start_revision)
        events = self._events
        if not range_end:
            return [ev for ev in events[i:] if ev.kv.key == key]
        return [ev for ev in events[i:] if in_range(ev.kv.key, key, range_end)]

    def events_at(self, revision: int) -> list[Event]:
        """The events of ``revision`` (all keys), in ``sub`` order; ``[]`` if none are retained."""
        i = bisect.bisect_left(self._event_revs, revision)
        j = bisect.bisect_right(self._event_revs, revision, lo=i)
        return self._events[i:j]

    # ---------------------------------------------------------------------------------------- writes

    def delete_keys(self, keys: Sequence[bytes]) -> int:
        """Delete the live ones of ``keys`` (distinct) at one new revision, as one txn would but
        without the txn op limit (a lease revoke deletes every key of the lease at once). Returns
        how many were deleted; no new revision if none."""
        ops = [DeleteRangeRequest(k) for k in keys]
        resp = self._write(ops, validated=True)
        return sum(r.deleted for r in resp.responses if isinstance(r, DeleteRangeResponse))

    def put(
        self,
        key: bytes,
        value: bytes = b"",
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResponse:
        """Write ``key``; always creates a new revision."""
        resp = self._write((PutRequest(key, value, lease, prev_kv, ignore_value, ignore_lease),))
        out = resp.responses[0]
        assert isinstance(out, PutResponse)
        return out

    def delete_range(
        self, key: bytes, range_end: bytes | None = None, *, prev_kv: bool = False
    ) -> DeleteRangeResponse:
        """Delete the live keys in the range; a new revision only if something was deleted."""
        resp = self._write((DeleteRangeRequest(key, range_end, prev_kv),))
        out = resp.responses[0]
        assert isinstance(out, DeleteRangeResponse)
        return out

    def txn(
        self, compare: Sequence[Compare] = (), success: Sequence[Op] = (), failure: Sequence[Op] = ()
    ) -> TxnResponse:
        """Evaluate ``compare`` on the current state, then run ``success`` or ``failure`` atomically.

        Rules (etcd's): each of the three lists holds at most ``Limits.max_txn_ops``; inside a
        branch two puts may not target the same key, nor may a put target a key inside a delete
        range (``InvalidArgument``, both branches checked). Ranges read the txn's own view, i.e. they
        see the branch's earlier writes; a range with an explicit ``revision`` must name a revision
        readable before the txn. All changes share one revision.
        """
        return self.execute_txn(TxnRequest(tuple(compare), tuple(success), tuple(failure)))

    def execute_txn(self, req: TxnRequest) -> TxnResponse:
        """:meth:`txn` taking a :class:`TxnRequest`."""
        self._validate_txn(req)
        succeeded = all(self._compare(c) for c in req.compare)
        return self._write(req.success if succeeded else req.failure, succeeded=succeeded, validated=True)

    def compact(self, revision: int) -> CompactResponse:
        """Drop the history below ``revision`` (see the module docstring); the revision is unchanged.

        Raises :class:`Compacted` if ``revision <= compact_revision`` (already compacted, as etcd) and
        :class:`FutureRevision` if ``revision > self.revision``.
        """
        if revision < 1:
            raise InvalidArgument(f"compact revision must be >= 1, got {revision}")
        if revision <= self._compact_revision:
            raise Compacted(revision, self._compact_revision)
        if revision > self._revision:
            raise FutureRevision(revision, self._revision)
        empty: list[bytes] = []
        for key, hist in self._index.items():
            # Keep the last record <= revision and everything after it; then drop that record too
            # if it is older than ``revision`` and a tombstone (nothing to read at >= revision).
            i = bisect.bisect_right(hist.revs, revision) - 1
            if i > 0:
                del hist.revs[:i]
                del hist.kvs[:i]
            if i >= 0 and hist.revs[0] < revision and hist.kvs[0] is None:
                del hist.revs[0]
                del hist.kvs[0]
            if not hist.revs:
                empty.append(key)
        for key in empty:
            del self._index[key]
        j = bisect.bisect_left(self._event_revs, revision)
        del self._events[:j]
        del self._event_revs[:j]
        self._compact_revision = revision
        return CompactResponse(self._revision)

    # ------------------------------------------------------------------------------------ validation

    def validate(self, req: object) -> None:
        """The static checks of a write request (Put, DeleteRange, Txn): limits, empty keys,
        duplicate keys in a txn branch. They read no state, so they give the same verdict on every
        member at any time; a proposer runs them before a request reaches the log, so a bad request
        costs no log entry. The apply path runs them again (the log is the source of truth).
        Raises :class:`InvalidArgument` (or its :class:`LimitExceeded`)."""
        if isinstance(req, PutRequest | DeleteRangeRequest):
            self._validate_op(req)
        elif isinstance(req, TxnRequest):
            self._validate_txn(req)

    def _check_size(self, data: bytes, limit: str, what: str) -> None:
        maximum: int = getattr(self.limits, limit)
        if len(data) > maximum:
            raise LimitExceeded(limit, len(data), maximum, what)

    def _check_key(self, key: bytes, what: str = "key") -> None:
        if not key:
            raise InvalidArgument(f"{what} is empty")
        self._check_size(key, "max_key_bytes", f"{what} length")

    def _validate_range(self, req: RangeRequest) -> None:
        self._check_key(req.key, "range key")
        if req.range_end:
            self._check_size(req.range_end, "max_key_bytes", "range_end length")
        if req.limit < 0:
            raise InvalidArgument(f"range limit must be >= 0, got {req.limit}")
        if req.revision < 0:
            raise InvalidArgument(f"range revision must be >= 0, got {req.revision}")

    def _validate_op(self, op: Op) -> None:
        if isinstance(op, PutRequest):
            self._check_key(op.key, "put key")
            self._check_size(op.value, "max_value_bytes", "value length")
            if op.lease < 0:
                raise InvalidArgument(f"lease id must be >= 0, got {op.lease}")
            if op.ignore_value and op.value:
                raise InvalidArgument("put with ignore_value must not carry a value")
            if op.ignore_lease and op.lease:
                raise InvalidArgument("put with ignore_lease must not carry a lease")
        elif isinstance(op, RangeRequest):
            self._validate_range(op)
        else:
            self._check_key(op.key, "delete key")
            if op.range_end:
                self._check_size(op.range_end, "max_key_bytes", "range_end length")

    def _check_read_revision(self, revision: int) -> None:
        if revision == 0:
            return
        if revision < self._compact_revision:
            raise Compacted(revision, self._compact_revision)
        if revision > self._revision:
            raise FutureRevision(revision, self._revision)

    def _validate_branch(self, ops: Sequence[Op], what: str) -> None:
        """Static checks of one branch: op count, each op, and etcd's duplicate-key rule."""
        if len(ops) > self.limits.max_txn_ops:
            raise LimitExceeded("max_txn_ops", len(ops), self.limits.max_txn_ops, f"number of txn {what} ops")
        puts: set[bytes] = set()
        deletes: list[DeleteRangeRequest] = []
        for op in ops:
            self._validate_op(op)
            if isinstance(op, PutRequest):
                if op.key in puts:
                    raise InvalidArgument(f"duplicate key given in txn request: {_short(op.key)}")
                puts.add(op.key)
            elif isinstance(op, DeleteRangeRequest):
                deletes.append(op)
        for d in deletes:
            for k in sorted(puts):
                if in_range(k, d.key, d.range_end):
                    raise InvalidArgument(
                        f"duplicate key given in txn request: {_short(k)} is put and deleted"
                    )

    def _validate_txn(self, req: TxnRequest) -> None:
        if len(req.compare) > self.limits.max_txn_ops:
            raise LimitExceeded(
                "max_txn_ops", len(req.compare), self.limits.max_txn_ops, "number of txn compares"
            )
        for c in req.compare:
            self._check_key(c.key, "compare key")
            if c.range_end:
                self._check_size(c.range_end, "max_key_bytes", "compare range_end length")
            is_value = c.target == CompareTarget.VALUE
            if is_value != isinstance(c.value, bytes) or isinstance(c.value, bool):
                needs = "bytes" if is_value else "int"
                raise InvalidArgument(
                    f"compare on {c.target.name} needs a {needs} value, got {c.value!r:.40}"
                )
        self._validate_branch(req.success, "success")
        self._validate_branch(req.failure, "failure")

    def _check_dynamic(self, ops: Sequence[Op]) -> None:
        """Checks against the state before the txn. Exact, because the duplicate-key rule means no
        earlier op of the branch can change the existence of a key that a later put reads."""
        for op in ops:
            lease_check = self.lease_exists
            if isinstance(op, PutRequest) and op.lease and lease_check and not lease_check(op.lease):
                raise LeaseNotFound(op.lease)
            if isinstance(op, PutRequest) and (op.ignore_value or op.ignore_lease):
                hist = self._index.get(op.key)
                if hist is None or hist.latest() is None:
                    raise InvalidArgument(
                        f"key not found: {_short(op.key)} (put with ignore_value/ignore_lease)"
                    )
            elif isinstance(op, RangeRequest):
                self._check_read_revision(op.revision)

    # --------------------------------------------------------------------------------------- engine

    def _histories(self, key: bytes, range_end: bytes | None) -> Iterator[tuple[bytes, _History]]:
        """Key histories in the range, in key order."""
        if not range_end:
            hist = self._index.get(key)
            if hist is not None:
                yield key, hist
            return
        if range_end == ALL_KEYS_END:
            keys = self._index.irange(minimum=key)
        elif range_end <= key:
            return
        else:
            keys = self._index.irange(key, range_end, inclusive=(True, False))
        index = self._index
        for k in keys:
            yield k, index[k]

    def _live(self, key: bytes, range_end: bytes | None, revision: int) -> Iterator[KeyValue]:
        """Live versions in the range at ``revision`` (0 = latest, including a txn's own writes)."""
        for _, hist in self._histories(key, range_end):
            kv = hist.latest() if revision == 0 else hist.at(revision)
            if kv is not None:
                yield kv

    def _do_range(self, req: RangeRequest, header_revision: int) -> RangeResponse:
        kvs: list[KeyValue] = []
        count = 0
        keep = 0 if req.count_only else (req.limit or -1)
        for kv in self._live(req.key, req.range_end, req.revision):
            count += 1
            if keep != 0 and (keep < 0 or len(kvs) < keep):
                kvs.append(replace(kv, value=b"") if req.keys_only else kv)
        return RangeResponse(header_revision, tuple(kvs), count, more=not req.count_only and count > len(kvs))

    def _compare(self, c: Compare) -> bool:
        kvs = list(self._live(c.key, c.range_end, 0))
        if not kvs:
            if c.target == CompareTarget.VALUE:
                return False
            kvs = [_ZERO]
        return all(self._compare_kv(c, kv) for kv in kvs)

    @staticmethod
    def _compare_kv(c: Compare, kv: KeyValue) -> bool:
        actual: bytes | int
        if c.target == CompareTarget.VALUE:
            actual = kv.value
        elif c.target == CompareTarget.VERSION:
            actual = kv.version
        elif c.target == CompareTarget.CREATE_REVISION:
            actual = kv.create_revision
        elif c.target == CompareTarget.MOD_REVISION:
            actual = kv.mod_revision
        else:
            actual = kv.lease
        expected = c.value
        if c.result == CompareResult.EQUAL:
            return actual == expected
        if c.result == CompareResult.NOT_EQUAL:
            return actual != expected
        if c.result == CompareResult.GREATER:
            return actual > expected  # type: ignore[operator]
        return actual < expected  # type: ignore[operator]

    def _record(self, rev: int, sub: int, key: bytes, kv: KeyValue | None, prev: KeyValue | None) -> None:
        hist = self._index.get(key)
        if hist is None:
            hist = self._index[key] = _History()
        hist.append(rev, kv)
        if kv is None:
            assert prev is not None
            ev = Event(EventType.DELETE, KeyValue(key, b"", 0, rev, 0, 0), prev, sub)
        else:
            ev = Event(EventType.PUT, kv, prev, sub)
        self._events.append(ev)
        self._event_revs.append(rev)

    def _write(self, ops: Sequence[Op], *, succeeded: bool = True, validated: bool = False) -> TxnResponse:
        """Apply ``ops`` atomically at revision ``self.revision + 1`` (kept only if something changed)."""
        if not validated:
            self._validate_branch(ops, "success")
        self._check_dynamic(ops)
        # --- nothing below raises: every check is done ---
        rev = self._revision + 1
        sub = 0
        results: list[OpResponse] = []
        for op in ops:
            if isinstance(op, PutRequest):
                hist = self._index.get(op.key)
                prev = hist.latest() if hist is not None else None
                if prev is None:
                    kv = KeyValue(op.key, op.value, rev, rev, 1, op.lease)
                else:
                    kv = KeyValue(
                        op.key,
                        prev.value if op.ignore_value else op.value,
                        prev.create_revision,
                        rev,
                        prev.version + 1,
                        prev.lease if op.ignore_lease else op.lease,
                    )
                self._record(rev, sub, op.key, kv, prev)
                sub += 1
                results.append(PutResponse(0, prev if op.prev_kv else None))
            elif isinstance(op, DeleteRangeRequest):
                deleted = list(self._live(op.key, op.range_end, 0))
                for prev in deleted:
                    self._record(rev, sub, prev.key, None, prev)
                    sub += 1
                results.append(DeleteRangeResponse(0, len(deleted), tuple(deleted) if op.prev_kv else ()))
            else:
                results.append(self._do_range(op, 0))
        if sub:
            self._revision = rev
        final = self._revision
        return TxnResponse(final, succeeded, tuple(replace(r, revision=final) for r in results))

    # -------------------------------------------------------------------------------------- snapshot

    def dump(self) -> list[Any]:
        """Msgpack-able state: ``[revision, compact_revision, base, events]`` where ``base`` holds the
        retained records older than the compaction revision, in key order."""
        base = []
        for hist in self._index.values():
            if hist.revs[0] < self._compact_revision:
                kv = hist.kvs[0]
                assert kv is not None
                base.append(encode_kv(kv))
        return [self._revision, self._compact_revision, base, [encode_event(ev) for ev in self._events]]

    @classmethod
    def load(cls, obj: Any, limits: Limits | None = None) -> KVStore:
        """Rebuild a store from :meth:`dump` output; ``InvalidArgument`` if inconsistent."""
        if type(obj) is not list or len(obj) != 4:
            raise InvalidArgument("malformed kv snapshot")
        revision, compact_revision, base, events = obj
        if (
            type(revision) is not int
            or type(compact_revision) is not int
            or not 0 <= compact_revision <= revision
        ):
            raise InvalidArgument("malformed kv snapshot revisions")
        if revision < 1 or type(base) is not list or type(events) is not list:
            raise InvalidArgument("malformed kv snapshot")
        store = cls(limits)
        store._revision = revision
        store._compact_revision = compact_revision
        last_key: bytes | None = None
        for item in base:
            kv = decode_kv(item)
            if not (kv.mod_revision < compact_revision and (last_key is None or kv.key > last_key)):
                raise InvalidArgument("kv snapshot base out of order")
            last_key = kv.key
            store._record_base(kv)
        prev_pos = (compact_revision, -1)
        for item in events:
            ev = decode_event(item)
            pos = (ev.revision, ev.sub)
            if pos <= prev_pos or ev.revision > revision:
                raise InvalidArgument(f"kv snapshot event at {pos} out of order")
            prev_pos = pos
            if ev.type == EventType.DELETE and ev.prev_kv is None:
                raise InvalidArgument(f"kv snapshot delete event at {pos} has no prev_kv")
            hist = store._index.get(ev.kv.key)
            if hist is not None and hist.revs[-1] >= ev.revision:
                raise InvalidArgument(f"kv snapshot event at {pos} out of order for its key")
            store._record(
                ev.revision, ev.sub, ev.kv.key, ev.kv if ev.type == EventType.PUT else None, ev.prev_kv
            )
        return store

    def _record_base(self, kv: KeyValue) -> None:
        hist = _History()
        hist.append(kv.mod_revision, kv)
        self._index[kv.key] = hist

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if the index does not match base + event log (a bug)."""
        rebuilt = KVStore.load(self.dump(), self.limits)
        mine = [(k, h.revs, h.kvs) for k, h in self._index.items()]
        theirs = [(k, h.revs, h.kvs) for k, h in rebuilt._index.items()]
        if mine != theirs:
            raise AssertionError("index differs from base + event log")
        for h in self._index.values():
            if not h.revs or any(a >= b for a, b in zip(h.revs, h.revs[1:], strict=False)):
                raise AssertionError("history revisions not strictly increasing")
            for r, kv in zip(h.revs, h.kvs, strict=True):
                if kv is not None and kv.mod_revision != r:
                    raise AssertionError("record revision mismatch")
        if self._event_revs != [ev.revision for ev in self._events]:
            raise AssertionError("event revision index out of sync")
