"""The Raft log held by the core: a compacted prefix, then entries in memory.

Layout (indices are 1-based, Raft paper Figure 2)::

    [.. compacted ..] offset | entries[0] = offset+1 ... entries[-1] = last_index
                              ^ stabled: last index known to be durable (fsynced)
                              ^ committed: known committed (5.3); applied: handed to and applied by the host

Invariants (checked by :meth:`RaftLog.check`):
- ``entries[i].index == offset + 1 + i`` and terms never decrease along the log;
- ``applied <= committed`` and ``committed <= last_index``;
- ``offset <= applied`` once a snapshot has been applied; ``stabled <= last_index``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InvariantViolation
from .types import Entry, SnapshotMetadata


class RaftLog:
    """Entries after ``offset`` (the last compacted index), plus commit/apply/stable bookkeeping."""

    __slots__ = ("applied", "applying", "committed", "entries", "offset", "offset_term", "stabled")

    def __init__(self, snapshot: SnapshotMetadata, entries: Sequence[Entry], committed: int) -> None:
        self.offset = snapshot.index
        self.offset_term = snapshot.term
        self.entries: list[Entry] = list(entries)
        for i, e in enumerate(self.entries):
            if e.index != self.offset + 1 + i:
                raise InvariantViolation(f"log entries not contiguous at {e.index} (offset {self.offset})")
        last = self.last_index()
        # A restarted node resumes from its durable state: everything given here is stable.
        self.stabled = last
        self.committed = max(min(committed, last), self.offset)
        self.applied = self.offset
        self.applying = self.offset

    # ----------------------------------------------------------------- queries
    def first_index(self) -> int:
        return self.offset + 1

    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term(self, index: int) -> int | None:
        """The term of the entry at ``index``; ``None`` if compacted away or beyond the end."""
        if index == self.offset:
            return self.offset_term
        if index < self.offset:
            return None
        i = index - self.offset - 1
        if i >= len(self.entries):
            return None
        return self.entries[i].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Election restriction (5.4.1): is a log ending at (last_index, last_term) at least as new?"""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries in ``[lo, hi)``; at least one entry if any, then at most ``max_bytes`` of data."""
        if lo < self.first_index() or hi > self.last_index() + 1:
            raise InvariantViolation(f"slice [{lo},{hi}) out of [{self.first_index()},{self.last_index()}]")
        if lo >= hi:
            return []
        base = self.offset + 1
        out = self.entries[lo - base : hi - base]
        if max_bytes <= 0 or len(out) == 1:
            return out
        size = 0
        for n, e in enumerate(out):
            size += len(e.data) + 16
            if size > max_bytes and n > 0:
                return out[:n]
        return out

    def unstable_entries(self) -> list[Entry]:
        """Entries not yet handed out for persistence."""
        return self.entries[self.stabled - self.offset :] if self.stabled < self.last_index() else []

    def next_committed(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet handed out for applying (at most ``max_bytes``, at least one)."""
        lo = max(self.applying + 1, self.first_index())
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1, max_bytes)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """First index in ``entries`` whose term differs from ours (or is new); 0 if all match."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest ``(i, t)`` with ``i <= index`` and ``t <= term`` in our log.

        This is etcd raft's refinement of the paper's conflict hint (5.3): a rejecting follower names the
        last entry that could possibly match, so the leader skips a whole term per round trip.
        """
        index = min(index, self.last_index())
        while index > self.offset:
            t = self.term(index)
            if t is None or t <= term:
                break
            index -= 1
        t = self.term(index)
        return index, (t if t is not None else 0)

    # ----------------------------------------------------------------- mutations
    def append(self, entries: Sequence[Entry]) -> int:
        """Append ``entries``, truncating any conflicting suffix first (Figure 2, AppendEntries 3-4)."""
        if not entries:
            return self.last_index()
        first = entries[0].index
        if first <= self.committed:
            raise InvariantViolation(f"append at {first} would overwrite committed {self.committed}")
        if first > self.last_index() + 1:
            raise InvariantViolation(f"append at {first} leaves a gap after {self.last_index()}")
        if first <= self.last_index():
            del self.entries[first - self.offset - 1 :]
            self.stabled = min(self.stabled, first - 1)
        self.entries.extend(entries)
        return self.last_index()

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """Follower side of AppendEntries; the new last index, or None if the consistency check fails."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        ci = self.find_conflict(entries)
        if ci:
            self.append(entries[ci - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        """Commit never decreases (Figure 2)."""
        if index > self.committed:
            if index > self.last_index():
                raise InvariantViolation(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def stable_to(self, index: int, term: int) -> None:
        """The host persisted entries up to (index, term); ignore if the log changed meanwhile."""
        if index > self.stabled and self.match_term(index, term):
            self.stabled = index

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise InvariantViolation(f"applied {index} beyond committed {self.committed}")
        self.applied = max(self.applied, index)
        self.applying = max(self.applying, index)

    def restore(self, meta: SnapshotMetadata) -> None:
        """Replace the whole log by a snapshot (thesis 5.1.1): discard every entry."""
        self.offset = meta.index
        self.offset_term = meta.term
        self.entries = []
        self.committed = meta.index
        self.stabled = meta.index
        self.applying = meta.index

    def compact_to(self, index: int) -> None:
        """Drop entries up to ``index`` (already in a snapshot, durable and applied)."""
        if index <= self.offset:
            return
        if index > self.applied or index > self.stabled:
            raise InvariantViolation(f"compact {index} beyond applied {self.applied}/stabled {self.stabled}")
        t = self.term(index)
        assert t is not None
        del self.entries[: index - self.offset]
        self.offset = index
        self.offset_term = t

    def check(self) -> None:
        """Raise :class:`InvariantViolation` if a documented invariant does not hold."""
        prev = self.offset_term
        for i, e in enumerate(self.entries):
            if e.index != self.offset + 1 + i or e.term < prev:
                raise InvariantViolation(f"bad log at {e.index}: term {e.term} after {prev}")
            prev = e.term
        if not (self.applied <= self.committed <= self.last_index()):
            raise InvariantViolation(
                f"applied {self.applied} committed {self.committed} last {self.last_index()}"
            )
