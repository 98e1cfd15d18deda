"""DiskStorage: the durable Raft log, hard state and snapshots of one node.

Directory layout::

    <dir>/LOCK                         flock()ed while a DiskStorage has the directory open
    <dir>/wal/<seq>-<first_index>.wal  WAL segments (format: :mod:`coterie.node.storage.wal`)
    <dir>/snap/<index>-<term>.snap     snapshot files (format: :mod:`coterie.node.storage.snapfile`)

Logical state and how the WAL encodes it (replay applies records in file order):

- ``hard_state``: the last HARD_STATE record (default ``HardState()``);
- the snapshot base ``(index, term)``: the last SNAPSHOT_MARKER. Its snapshot file must exist and
  verify; snapshot files newer than it are leftovers of an interrupted save and are deleted;
- the entries after the base: an ENTRY record at index ``i`` replaces every entry ``>= i``
  (conflicting-suffix truncation); a marker with ``reset`` (a snapshot installed from a leader)
  discards every earlier entry; entries at or below the base are covered by the snapshot. After
  these rules the entries must be contiguous from ``base + 1``, else :class:`WalCorruptionError`.

Durability: ``save`` and ``save_snapshot`` return only after their data is on stable storage (one
``fdatasync`` of the WAL per call, plus file and directory fsyncs for a snapshot file, a new
segment or deletions). A failed write or sync poisons the instance: every later call raises
:class:`StorageError` and the directory must be reopened (retrying an fsync is unsafe).

Write order inside one batch is snapshot marker, entries, hard state, so a torn batch never leaves
a hard state whose ``commit`` points past the entries that survived. Segments are deleted only as a
prefix, oldest first, each deletion made durable before the next, and only once every live entry
in them is covered by the snapshot base.

Not thread-safe: one owner (the node's Ready loop) calls it.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn

from ..raft.types import Entry, HardState, Snapshot
from . import snapfile, wal
from .errors import SnapshotCorruptionError, StorageError, WalCorruptionError
from .fsutil import fsync_dir, make_dirs, sync_file, write_all
from .wal import BATCH_BEGIN, RecordType, frame

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
KEEP_SNAPSHOTS = 2
"""Snapshot files kept after compaction: the current base and the one before it."""


@dataclass(frozen=True)
class LoadedState:
    """Everything a node needs to restart its Raft core.

    Invariant: ``entries`` are contiguous, starting at ``snapshot.metadata.index + 1`` (or 1 if
    ``snapshot`` is None).
    """

    hard_state: HardState
    snapshot: Snapshot | None
    entries: list[Entry]


@dataclass
class _Segment:
    seq: int
    first_index: int
    path: str
    live_max: int = 0
    """Highest entry index written in this segment since the last reset marker (0: none)."""


class DiskStorage:
    """Durable storage for one Raft node; create with :meth:`open`.

    Invariants between calls: ``first_index == snapshot index + 1``; the in-memory entries are
    exactly what a reopen would load; every segment but the last is immutable and was fsynced.
    """

    def __init__(self, directory: str, segment_bytes: int) -> None:
        """Private: use :meth:`open`."""
        self._dir = directory
        self._wal_dir = os.path.join(directory, "wal")
        self._snap_dir = os.path.join(directory, "snap")
        self._segment_bytes = segment_bytes
        self._lock_fd = -1
        self._fd = -1
        self._dirty = False
        """Bytes were written to the open segment since its last fdatasync."""
        self._size = 0
        self._segments: list[_Segment] = []
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None
        self._base_index = 0
        self._base_term = 0
        self._entries: list[Entry] = []
        self._failed: BaseException | None = None
        self._closed = False

    # ------------------------------------------------------------------------------ public API
    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> DiskStorage:
        """Open (creating if new) the store in ``directory`` and recover its state.

        A torn tail of the last WAL segment is cut off (logged as a warning). Raises
        :class:`WalCorruptionError` or :class:`SnapshotCorruptionError` if acknowledged data is
        damaged, and :class:`StorageError` if another instance holds the directory.
        ``segment_bytes`` is the size after which the next write starts a new segment.
        """
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        self = cls(os.path.abspath(os.fspath(directory)), segment_bytes)
        try:
            self._load()
        except OSError as e:
            self._release()
            raise StorageError(f"cannot open storage in {self._dir}: {e}") from e
        except BaseException:
            self._release()
            raise
        return self

    def initial_state(self) -> LoadedState:
        """The current durable state (as loaded by :meth:`open`, plus every save since)."""
        self._check_open()
        return LoadedState(self._hard_state, self._snapshot, list(self._entries))

    @property
    def first_index(self) -> int:
        """Index of the first entry available: the snapshot index + 1."""
        return self._base_index + 1

    @property
    def last_index(self) -> int:
        """Index of the last entry stored, or the snapshot index if there are none after it."""
        return self._base_index + len(self._entries)

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None = None,
        *,
        sync: bool = True,
    ) -> None:
        """Durably persist one Ready's worth of state with a single WAL ``fdatasync``.

        ``sync=False`` writes without the ``fdatasync`` (the core's ``Ready.must_sync`` is False when
        only the commit index moved: losing it in a crash is safe, it is learned again from the leader);
        a later synced save makes it durable too.

        ``snapshot`` (received from a leader) is written to its own file first; it replaces the
        whole log: every stored entry is discarded and its index becomes the base. ``entries`` must
        be contiguous and start in ``(first_index - 1, last_index + 1]`` (after a snapshot here:
        at its index + 1); stored entries from ``entries[0].index`` on are replaced. Raises
        ValueError for inconsistent arguments (before writing anything) and StorageError for I/O
        failures.
        """
        self._check_open()
        base = self._base_index
        last = base + len(self._entries)
        if snapshot is not None:
            meta = snapshot.metadata
            if meta.index <= base:
                raise ValueError(
                    f"snapshot at index {meta.index} is not newer than the stored base {base}"
                )
            base = last = meta.index
        first = 0
        if entries:
            first = entries[0].index
            if not base < first <= last + 1:
                raise ValueError(
                    f"entries start at {first}, outside the writable range {base + 1}..{last + 1}"
                )
        if hard_state is None and not entries and snapshot is None:
            return
        rollover = self._size >= self._segment_bytes
        flag = 0 if rollover else BATCH_BEGIN
        parts: list[bytes] = []
        if snapshot is not None:
            meta = snapshot.metadata
            parts.append(
                frame(
                    RecordType.SNAPSHOT_MARKER | flag,
                    wal.encode_marker(meta.index, meta.term, True),
                )
            )
            flag = 0
        if entries:
            wal.encode_entries(parts, entries, first, begin=bool(flag))
            flag = 0
        if hard_state is not None:
            parts.append(frame(RecordType.HARD_STATE | flag, wal.encode_hard_state(hard_state)))
        if snapshot is not None:
            self._write_snapshot_file(snapshot)
        self._append(parts, rollover, sync or snapshot is not None)

        if snapshot is not None:
            self._snapshot = snapshot
            self._base_index = snapshot.metadata.index
            self._base_term = snapshot.metadata.term
            self._entries = []
            for seg in self._segments:
                seg.live_max = 0
        if entries:
            del self._entries[first - self._base_index - 1 :]
            self._entries.extend(entries)
            seg = self._segments[-1]
            seg.live_max = max(seg.live_max, entries[-1].index)
        if hard_state is not None:
            self._hard_state = hard_state
        if snapshot is not None:
            self._compact()

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Persist a snapshot taken by this node and compact the log up to its index.

        The snapshot file is written atomically, then a SNAPSHOT_MARKER is synced to the WAL; after
        that, segments holding only entries ``<= index`` and all but the newest
        ``KEEP_SNAPSHOTS`` snapshot files are deleted. Entries after the index are kept. A snapshot
        at or below the current base is ignored (a newer one is already durable). Raises
        ValueError if the index is beyond ``last_index`` or its term disagrees with the stored
        entry at that index.
        """
        self._check_open()
        meta = snapshot.metadata
        base = self._base_index
        if meta.index <= base:
            log.debug("ignoring snapshot at %d: base is already %d", meta.index, base)
            return
        if meta.index > self.last_index:
            raise ValueError(f"snapshot index {meta.index} is beyond last index {self.last_index}")
        stored_term = self._entries[meta.index - base - 1].term
        if stored_term != meta.term:
            raise ValueError(
                f"snapshot term {meta.term} at index {meta.index} disagrees with the stored entry "
                f"(term {stored_term})"
            )
        rollover = self._size >= self._segment_bytes
        flag = 0 if rollover else BATCH_BEGIN
        parts = [
            frame(
                RecordType.SNAPSHOT_MARKER | flag, wal.encode_marker(meta.index, meta.term, False)
            )
        ]
        self._write_snapshot_file(snapshot)
        self._append(parts, rollover)
        del self._entries[: meta.index - base]
        self._base_index = meta.index
        self._base_term = meta.term
        self._snapshot = snapshot
        self._compact()

    def close(self) -> None:
        """Release the directory. Idempotent. Nothing is buffered: every save is already durable."""
        self._closed = True
        self._release()

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------ writing
    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"storage {self._dir} is closed")
        if self._failed is not None:
            raise StorageError(
                f"storage {self._dir} failed earlier ({self._failed!r}); reopen it to recover"
            ) from self._failed

    def _fail(self, exc: OSError, what: str) -> NoReturn:
        self._failed = exc
        raise StorageError(f"{what} failed in {self._dir}: {exc}") from exc

    def _write_snapshot_file(self, snapshot: Snapshot) -> None:
        try:
            snapfile.write_snapshot(self._snap_dir, snapshot)
        except OSError as e:
            self._fail(e, "writing a snapshot file")

    def _segment_head(self, seq: int, first_index: int) -> bytes:
        """The records a new segment starts with (see the invariants in :mod:`.wal`)."""
        head = [
            frame(RecordType.HEADER | BATCH_BEGIN, wal.encode_header(seq, first_index)),
            frame(RecordType.HARD_STATE, wal.encode_hard_state(self._hard_state)),
        ]
        if self._base_index > 0:
            head.append(
                frame(
                    RecordType.SNAPSHOT_MARKER,
                    wal.encode_marker(self._base_index, self._base_term, False),
                )
            )
        return b"".join(head)

    def _create_segment(self, seq: int, first_index: int, body: bytes) -> None:
        """Create segment ``seq`` holding its head and ``body``, durably, and append to it next."""
        path = os.path.join(self._wal_dir, wal.segment_name(seq, first_index))
        data = self._segment_head(seq, first_index) + body
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            write_all(fd, data)
            sync_file(fd)
            fsync_dir(self._wal_dir)
        except BaseException:
            os.close(fd)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._size = len(data)
        self._segments.append(_Segment(seq, first_index, path))

    def _append(self, parts: list[bytes], rollover: bool, sync: bool = True) -> None:
        """Write one batch with one write and one fdatasync (plus a directory fsync on rollover)."""
        try:
            if rollover:
                if self._dirty:
                    # Every segment but the last must be fully durable before a new one starts.
                    sync_file(self._fd)
                    self._dirty = False
                self._create_segment(
                    self._segments[-1].seq + 1, self.last_index + 1, b"".join(parts)
                )
            else:
                data = b"".join(parts)
                write_all(self._fd, data)
                if sync:
                    sync_file(self._fd)
                self._dirty = not sync
                self._size += len(data)
        except OSError as e:
            self._fail(e, "appending to the WAL")

    def _compact(self) -> None:
        """Delete WAL segments and snapshot files no longer needed after the base moved."""
        base = self._base_index
        try:
            while len(self._segments) > 1 and self._segments[0].live_max <= base:
                seg = self._segments[0]
                os.unlink(seg.path)
                fsync_dir(self._wal_dir)
                del self._segments[0]
                log.debug("deleted WAL segment %s (compacted to %d)", seg.path, base)
            older = [s for s in snapfile.list_snapshots(self._snap_dir) if s[0] < base]
            doomed = older[: max(0, len(older) - (KEEP_SNAPSHOTS - 1))]
            for index, term in doomed:
                os.unlink(os.path.join(self._snap_dir, snapfile.snapshot_name(index, term)))
            if doomed:
                fsync_dir(self._snap_dir)
        except OSError as e:
            self._fail(e, "deleting compacted files")

    def _release(self) -> None:
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                setattr(self, attr, -1)
                with contextlib.suppress(OSError):
                    os.close(fd)

    # ------------------------------------------------------------------------------ recovery
    def _lock(self) -> None:
        path = os.path.join(self._dir, "LOCK")
        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise StorageError(f"storage directory {self._dir} is already open (LOCK held)") from e

    def _load(self) -> None:
        for d in (self._dir, self._wal_dir, self._snap_dir):
            make_dirs(d)
        self._lock()
        for path in snapfile.clean_temp_files(self._snap_dir):
            log.warning("removed leftover temporary snapshot file %s", path, extra={"path": path})
        scans = self._scan_segments()
        snaps = snapfile.list_snapshots(self._snap_dir)
        if not scans:
            if snaps:
                raise StorageError(
                    f"{self._wal_dir} has no WAL segments but {self._snap_dir} has snapshots"
                )
            self._create_segment(1, 1, b"")
            return
        self._replay(scans)
        self._load_snapshot(snaps)
        last = scans[-1]
        self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        self._size = last.valid_end

    def _scan_segments(self) -> list[wal.SegmentScan]:
        """Read and verify every segment; cut off a torn tail of the last one."""
        found = []
        for name in os.listdir(self._wal_dir):
            parsed = wal.parse_segment_name(name)
            if parsed is None:
                log.warning("ignoring unexpected file %s in %s", name, self._wal_dir)
                continue
            found.append((parsed[0], os.path.join(self._wal_dir, name)))
        found.sort()
        for (prev, _), (seq, path) in itertools.pairwise(found):
            if seq == prev:
                raise WalCorruptionError(path, 0, f"two segment files with sequence {seq}")
            if seq != prev + 1:
                raise WalCorruptionError(path, 0, f"segment {prev + 1} is missing before it")
        scans: list[wal.SegmentScan] = []
        for i, (_, path) in enumerate(found):
            is_last = i == len(found) - 1
            with open(path, "rb") as f:
                buf = f.read()
            scan = wal.scan_segment(path, buf, last=is_last)
            if not scan.records and not is_last:
                raise WalCorruptionError(path, 0, "empty segment")
            scans.append(scan)
        if scans:
            last = scans[-1]
            if not last.records:
                # Crashed while creating this segment: nothing in it was acknowledged.
                log.warning(
                    "removing WAL segment %s with no complete record (%s)",
                    last.path,
                    last.torn or "empty file",
                    extra={"path": last.path, "offset": 0, "reason": last.torn},
                )
                os.unlink(last.path)
                fsync_dir(self._wal_dir)
                scans.pop()
            elif last.torn is not None:
                log.warning(
                    "truncating torn tail of WAL segment %s at offset %d (%d bytes dropped): %s",
                    last.path,
                    last.valid_end,
                    last.size - last.valid_end,
                    last.torn,
                    extra={
                        "path": last.path,
                        "offset": last.valid_end,
                        "dropped_bytes": last.size - last.valid_end,
                        "reason": last.torn,
                    },
                )
                fd = os.open(last.path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, last.valid_end)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return scans

    def _replay(self, scans: list[wal.SegmentScan]) -> None:
        """Rebuild hard state, snapshot base and entries from verified records.

        Two passes: the last marker fixes the base, and the last reset marker is the point before
        which every entry is dead; then entries are applied in order (see the module docstring).
        """
        base = base_term = 0
        last_reset: tuple[int, int] | None = None
        for si, scan in enumerate(scans):
            for ri, rec in enumerate(scan.records):
                if rec.type is RecordType.SNAPSHOT_MARKER:
                    m = rec.value
                    assert isinstance(m, wal.Marker)
                    if m.index < base or (m.index == base and base and m.term != base_term):
                        raise WalCorruptionError(
                            scan.path,
                            rec.offset,
                            f"snapshot marker {m.index}/{m.term} goes back from {base}/{base_term}",
                        )
                    base, base_term = m.index, m.term
                    if m.reset:
                        last_reset = (si, ri)
        entries: list[Entry] = []
        hard_state = HardState()
        live = last_reset is None
        segments: list[_Segment] = []
        for si, scan in enumerate(scans):
            seg = _Segment(scan.seq, scan.first_index, scan.path)
            segments.append(seg)
            for ri, rec in enumerate(scan.records):
                t = rec.type
                if t is RecordType.ENTRY:
                    if not live:
                        continue
                    e = rec.value
                    assert isinstance(e, Entry)
                    i = e.index
                    if i > seg.live_max:
                        seg.live_max = i
                    if i <= base:
                        entries.clear()
                        continue
                    k = i - base - 1
                    if k < len(entries):
                        del entries[k:]
                    elif k > len(entries):
                        raise WalCorruptionError(
                            scan.path,
                            rec.offset,
                            f"entry {i} leaves a gap after index {base + len(entries)}",
                        )
                    entries.append(e)
                elif t is RecordType.HARD_STATE:
                    hs = rec.value
                    assert isinstance(hs, HardState)
                    hard_state = hs
                elif t is RecordType.SNAPSHOT_MARKER and (si, ri) == last_reset:
                    live = True
                    entries.clear()
                    for s in segments:
                        s.live_max = 0
        self._segments = segments
        self._hard_state = hard_state
        self._base_index = base
        self._base_term = base_term
        self._entries = entries

    def _load_snapshot(self, snaps: list[tuple[int, int]]) -> None:
        """Load the snapshot the WAL's last marker names; delete newer, unreferenced files."""
        base, term = self._base_index, self._base_term
        orphans = [s for s in snaps if s[0] > base or (s[0] == base and s[1] != term)]
        for index, t in orphans:
            path = os.path.join(self._snap_dir, snapfile.snapshot_name(index, t))
            log.warning(
                "removing snapshot file %s: the WAL has no marker for it (interrupted save)",
                path,
                extra={"path": path},
            )
            os.unlink(path)
        if orphans:
            fsync_dir(self._snap_dir)
        if base == 0:
            return
        path = os.path.join(self._snap_dir, snapfile.snapshot_name(base, term))
        if not os.path.exists(path):
            raise SnapshotCorruptionError(
                path, f"missing, but the WAL's snapshot marker names index {base} term {term}"
            )
        self._snapshot = snapfile.read_snapshot(path)
