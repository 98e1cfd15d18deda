"""Durable storage tests: round trips, compaction, torn tails, corruption, a model-based test."""

from __future__ import annotations

import logging
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coterie.node.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
)
from coterie.node.storage import (
    DiskStorage,
    LoadedState,
    SnapshotCorruptionError,
    StorageError,
    WalCorruptionError,
    fsutil,
    snapfile,
    wal,
)
from coterie.node.storage import disk as disk_mod

# ------------------------------------------------------------------------------------ helpers


def ent(index: int, term: int = 1, data: bytes | None = None) -> Entry:
    payload = data if data is not None else f"cmd-{index}-{term}".encode()
    return Entry(term=term, index=index, data=payload)


def snap(
    index: int, term: int, data: bytes = b"state", voters: tuple[int, ...] = (1, 2, 3)
) -> Snapshot:
    return Snapshot(SnapshotMetadata(index, term, ConfState(voters=voters, learners=(9,))), data)


def segments(d: Path) -> list[Path]:
    return sorted((d / "wal").glob("*.wal"))


def snap_files(d: Path) -> list[str]:
    return sorted(p.name for p in (d / "snap").iterdir())


def load(d: Path, **kw: int) -> LoadedState:
    with DiskStorage.open(d, **kw) as s:
        return s.initial_state()


def records(path: Path) -> list[wal.Record]:
    return wal.scan_segment(str(path), path.read_bytes(), last=True).records


def flip(path: Path, offset: int) -> None:
    buf = bytearray(path.read_bytes())
    buf[offset] ^= 0x40
    path.write_bytes(bytes(buf))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DiskStorage]:
    s = DiskStorage.open(tmp_path)
    yield s
    s.close()


def fill(d: Path, n: int, *, per_save: int = 1, segment_bytes: int = 64 << 20) -> None:
    """Entries 1..n (term 1), ``per_save`` per call, each save with a hard state."""
    with DiskStorage.open(d, segment_bytes=segment_bytes) as s:
        for start in range(1, n + 1, per_save):
            batch = [ent(i) for i in range(start, min(n, start + per_save - 1) + 1)]
            s.save(HardState(term=1, vote=1, commit=batch[0].index - 1), batch)


# ------------------------------------------------------------------------------------ round trips


def test_new_directory_is_empty_and_created(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b"
    with DiskStorage.open(d) as s:
        assert s.initial_state() == LoadedState(HardState(), None, [])
        assert (s.first_index, s.last_index) == (1, 0)
    assert len(segments(d)) == 1
    assert load(d) == LoadedState(HardState(), None, [])


def test_round_trip_many_saves(tmp_path: Path) -> None:
    rng = random.Random(1)
    expected: list[Entry] = []
    hs = HardState()
    with DiskStorage.open(tmp_path) as s:
        for _ in range(150):
            n = rng.randint(0, 5)
            first = len(expected) + 1
            batch = [
                Entry(2, i, rng.choice(list(EntryType)), rng.randbytes(rng.randint(0, 64)))
                for i in range(first, first + n)
            ]
            new_hs = HardState(2, 1, len(expected)) if rng.random() < 0.7 else None
            s.save(new_hs, batch)
            expected += batch
            hs = new_hs or hs
        assert s.initial_state() == LoadedState(hs, None, expected)
    st_ = load(tmp_path)
    assert st_ == LoadedState(hs, None, expected)


def test_empty_save_writes_nothing(store: DiskStorage, tmp_path: Path) -> None:
    size = segments(tmp_path)[0].stat().st_size
    store.save(None, [])
    assert segments(tmp_path)[0].stat().st_size == size


def test_one_write_and_one_fdatasync_per_save(
    store: DiskStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_sync, real_write = fsutil.sync_file, fsutil.write_all

    def sync(fd: int) -> None:
        calls.append("sync")
        real_sync(fd)

    def write(fd: int, data: bytes) -> None:
        calls.append("write")
        real_write(fd, data)

    monkeypatch.setattr(disk_mod, "sync_file", sync)
    monkeypatch.setattr(disk_mod, "write_all", write)
    store.save(HardState(1, 1, 0), [ent(i) for i in range(1, 101)])
    assert calls == ["write", "sync"]


def test_conflicting_suffix_truncation_survives_reopen(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path) as s:
        s.save(HardState(1, 1, 3), [ent(i, 1) for i in range(1, 11)])
        s.save(HardState(2, 2, 3), [ent(6, 2), ent(7, 2)])
        assert s.last_index == 7
    want = [ent(i, 1) for i in range(1, 6)] + [ent(6, 2), ent(7, 2)]
    assert load(tmp_path) == LoadedState(HardState(2, 2, 3), None, want)
    with DiskStorage.open(tmp_path) as s:
        s.save(None, [ent(8, 2)])
        s.save(None, [ent(1, 3)])  # rewrite from the very first entry
    assert load(tmp_path).entries == [ent(1, 3)]


def test_segment_rollover_and_truncation_across_segments(tmp_path: Path) -> None:
    fill(tmp_path, 60, segment_bytes=256)
    segs = segments(tmp_path)
    assert len(segs) > 5
    seqs = [wal.parse_segment_name(p.name) for p in segs]
    assert [s[0] for s in seqs if s] == list(range(1, len(segs) + 1))
    for p in segs:  # every segment is self-describing and starts with the hard state
        recs = records(p)
        assert recs[0].type is wal.RecordType.HEADER
        assert recs[1].type is wal.RecordType.HARD_STATE
    st_ = load(tmp_path, segment_bytes=256)
    assert st_.entries == [ent(i) for i in range(1, 61)]
    assert st_.hard_state == HardState(1, 1, 59)
    with DiskStorage.open(tmp_path, segment_bytes=256) as s:
        s.save(HardState(3, 1, 2), [ent(3, 3), ent(4, 3)])
    want = [ent(1), ent(2), ent(3, 3), ent(4, 3)]
    assert load(tmp_path, segment_bytes=256) == LoadedState(HardState(3, 1, 2), None, want)


def test_save_snapshot_compacts_segments_and_snapshot_files(tmp_path: Path) -> None:
    fill(tmp_path, 80, segment_bytes=300)
    before = segments(tmp_path)
    with DiskStorage.open(tmp_path, segment_bytes=300) as s:
        s.save_snapshot(snap(30, 1, b"s30"))
        assert (s.first_index, s.last_index) == (31, 80)
        mid = segments(tmp_path)
        assert before[0] not in mid and len(mid) < len(before)
        s.save_snapshot(snap(50, 1, b"s50"))
        s.save_snapshot(snap(70, 1, b"s70"))
        s.save(None, [ent(81)])
    after = segments(tmp_path)
    assert len(after) < len(mid)
    # The current snapshot and the one before it are kept.
    assert snap_files(tmp_path) == [
        snapfile.snapshot_name(50, 1),
        snapfile.snapshot_name(70, 1),
    ]
    st_ = load(tmp_path, segment_bytes=300)
    assert st_.snapshot == snap(70, 1, b"s70")
    assert st_.entries == [ent(i) for i in range(71, 82)]
    assert st_.hard_state == HardState(1, 1, 79)


def test_compaction_of_everything_then_append(tmp_path: Path) -> None:
    fill(tmp_path, 40, segment_bytes=200)
    with DiskStorage.open(tmp_path, segment_bytes=200) as s:
        s.save_snapshot(snap(40, 1))
        assert s.initial_state().entries == []
        assert len(segments(tmp_path)) == 1
    with DiskStorage.open(tmp_path, segment_bytes=200) as s:
        assert (s.first_index, s.last_index) == (41, 40)
        for i in range(41, 61):
            s.save(HardState(1, 1, i), [ent(i)])
    st_ = load(tmp_path, segment_bytes=200)
    assert st_.snapshot == snap(40, 1)
    assert st_.entries == [ent(i) for i in range(41, 61)]


@pytest.mark.parametrize("snap_index", [5, 20, 35])
def test_snapshot_from_leader_replaces_log(tmp_path: Path, snap_index: int) -> None:
    fill(tmp_path, 20, segment_bytes=250)
    with DiskStorage.open(tmp_path, segment_bytes=250) as s:
        s.save(HardState(3, 2, snap_index), [], snap(snap_index, 3, b"leader"))
        assert (s.first_index, s.last_index) == (snap_index + 1, snap_index)
        s.save(None, [ent(snap_index + 1, 3), ent(snap_index + 2, 3)])
    st_ = load(tmp_path, segment_bytes=250)
    assert st_.snapshot == snap(snap_index, 3, b"leader")
    assert st_.entries == [ent(snap_index + 1, 3), ent(snap_index + 2, 3)]
    assert st_.hard_state == HardState(3, 2, snap_index)


def test_leader_snapshot_with_entries_in_the_same_save(tmp_path: Path) -> None:
    fill(tmp_path, 10)
    with DiskStorage.open(tmp_path) as s:
        s.save(HardState(4, 0, 7), [ent(8, 4), ent(9, 4)], snap(7, 4))
    st_ = load(tmp_path)
    assert (st_.snapshot, st_.entries) == (snap(7, 4), [ent(8, 4), ent(9, 4)])


def test_compaction_after_leader_snapshot_with_stale_log_beyond_it(tmp_path: Path) -> None:
    """The segment holding a leader snapshot's marker also holds dead entries above the snapshot
    index whose predecessors get deleted by a later compaction: replay must skip them, not report
    a gap."""
    fill(tmp_path, 60, segment_bytes=400)
    n_segs = len(segments(tmp_path))
    assert n_segs > 3
    with DiskStorage.open(tmp_path) as s:  # big segments: everything below goes to the last one
        s.save(HardState(5, 0, 30), [], snap(30, 5))
        for i in range(31, 41):
            s.save(HardState(5, 0, i), [ent(i, 5)])
        s.save_snapshot(snap(35, 5, b"s35"))
        assert len(segments(tmp_path)) == 1
    last = segments(tmp_path)[0]
    assert any(isinstance(r.value, Entry) and r.value.index == 60 for r in records(last))
    st_ = load(tmp_path)
    assert st_.snapshot == snap(35, 5, b"s35")
    assert st_.entries == [ent(i, 5) for i in range(36, 41)]


def test_truncation_below_a_later_snapshot_drops_the_old_suffix(tmp_path: Path) -> None:
    """An entry rewritten at or below the snapshot index still truncates what followed it."""
    with DiskStorage.open(tmp_path) as s:
        s.save(None, [ent(i) for i in range(1, 11)])
        s.save(HardState(2, 2, 6), [ent(5, 2), ent(6, 2)])
        s.save_snapshot(snap(6, 2))
        assert (s.first_index, s.last_index) == (7, 6)
    st_ = load(tmp_path)
    assert (st_.snapshot, st_.entries) == (snap(6, 2), [])


def test_invalid_arguments_raise_before_writing(store: DiskStorage, tmp_path: Path) -> None:
    store.save(None, [ent(i) for i in range(1, 6)])
    size = segments(tmp_path)[-1].stat().st_size
    with pytest.raises(ValueError, match="contiguous"):
        store.save(HardState(1, 1, 1), [ent(6), ent(8)])
    with pytest.raises(ValueError, match="writable range"):
        store.save(None, [ent(7)])
    with pytest.raises(ValueError, match="cannot be encoded"):
        store.save(None, [ent(6, term=-1)])
    with pytest.raises(ValueError, match="not a valid term"):
        store.save(HardState(-1, 0, 0), [ent(6)])
    with pytest.raises(ValueError, match="beyond last index"):
        store.save_snapshot(snap(6, 1))
    with pytest.raises(ValueError, match="disagrees"):
        store.save_snapshot(snap(3, 2))
    store.save_snapshot(snap(3, 1))
    with pytest.raises(ValueError, match="writable range"):
        store.save(None, [ent(3, 2)])
    with pytest.raises(ValueError, match="not newer"):
        store.save(None, [], snap(2, 1))
    store.save_snapshot(snap(2, 1))  # stale host snapshot: ignored
    assert store.first_index == 4
    assert store.initial_state().entries == [ent(4), ent(5)]
    assert segments(tmp_path)[-1].stat().st_size > size  # only the marker was added


def test_second_open_is_refused_while_locked(store: DiskStorage, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="already open"):
        DiskStorage.open(tmp_path)


def test_closed_storage_refuses_calls(tmp_path: Path) -> None:
    s = DiskStorage.open(tmp_path)
    s.close()
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.save(None, [ent(1)])


def test_failed_fsync_poisons_the_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = DiskStorage.open(tmp_path)
    s.save(None, [ent(1)])

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(disk_mod, "sync_file", broken)
    with pytest.raises(StorageError, match="Input/output error"):
        s.save(None, [ent(2)])
    monkeypatch.undo()
    with pytest.raises(StorageError, match="failed earlier"):
        s.save(None, [ent(2)])
    s.close()
    assert load(tmp_path).entries[0] == ent(1)


# ------------------------------------------------------------------------------------ torn tails


def _pristine(tmp_path: Path) -> tuple[Path, int, list[Entry]]:
    """A store whose last batch is [entry 6, entry 7, hard state]; returns (dir, batch offset)."""
    d = tmp_path / "pristine"
    fill(d, 5)
    with DiskStorage.open(d) as s:
        s.save(HardState(1, 1, 5), [ent(6, 1, b"x" * 40), ent(7, 1, b"y" * 3)])
    recs = records(segments(d)[-1])
    batch = next(r for r in recs if isinstance(r.value, Entry) and r.value.index == 6)
    return (
        d,
        batch.offset,
        [ent(i) for i in range(1, 6)] + [ent(6, 1, b"x" * 40), ent(7, 1, b"y" * 3)],
    )


def test_torn_tail_cut_at_every_offset_of_the_last_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d, batch_off, full = _pristine(tmp_path)
    seg = segments(d)[-1]
    pristine = seg.read_bytes()
    boundaries = [r.offset for r in records(seg)] + [len(pristine)]
    caplog.set_level(logging.WARNING, logger="coterie.node.storage")
    for cut in range(batch_off, len(pristine)):
        seg.write_bytes(pristine[:cut])
        keep = max(b for b in boundaries if b <= cut)
        caplog.clear()
        with DiskStorage.open(d) as s:
            st_ = s.initial_state()
            assert seg.stat().st_size == keep, cut  # the file itself was truncated
            n_entries = sum(1 for b in boundaries[:-1] if batch_off <= b < keep)
            assert st_.entries == full[: 5 + min(n_entries, 2)], cut
            # The hard state is the batch's last record: it never survives without its entries.
            assert st_.hard_state == HardState(1, 1, 4), cut
            if keep != cut:
                assert any(
                    getattr(r, "path", None) == str(seg) and getattr(r, "offset", None) == keep
                    for r in caplog.records
                ), cut
            s.save(HardState(2, 2, 3), [ent(len(st_.entries) + 1, 2)])
        st2 = load(d)
        assert st2.entries == [*st_.entries, ent(len(st_.entries) + 1, 2)], cut
        assert st2.hard_state == HardState(2, 2, 3), cut
    seg.write_bytes(pristine)
    assert load(d) == LoadedState(HardState(1, 1, 5), None, full)


@pytest.mark.parametrize("garbage", [bytes(4096), bytes(3), b"\x01\x02\x03garbage" * 50])
def test_garbage_tail_is_cut_off(tmp_path: Path, garbage: bytes) -> None:
    fill(tmp_path, 10)
    seg = segments(tmp_path)[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(garbage)
    assert load(tmp_path).entries == [ent(i) for i in range(1, 11)]
    assert seg.stat().st_size == size
    with DiskStorage.open(tmp_path) as s:
        s.save(None, [ent(11)])
    assert load(tmp_path).entries == [ent(i) for i in range(1, 12)]


def test_torn_batch_with_a_hole_and_a_surviving_later_page(tmp_path: Path) -> None:
    """A crash during one big write may persist a later page of it but not an earlier one."""
    fill(tmp_path, 5)
    with DiskStorage.open(tmp_path) as s:
        s.save(HardState(1, 1, 5), [ent(i, 1, bytes(100)) for i in range(6, 60)])
    seg = segments(tmp_path)[-1]
    recs = records(seg)
    hole = next(r.offset for r in recs if isinstance(r.value, Entry) and r.value.index == 20)
    buf = bytearray(seg.read_bytes())
    buf[hole + 3 : hole + 700] = bytes(697)
    seg.write_bytes(bytes(buf))
    st_ = load(tmp_path)
    assert st_.entries == [ent(i) for i in range(1, 6)] + [
        ent(i, 1, bytes(100)) for i in range(6, 20)
    ]
    assert seg.stat().st_size == hole


def test_torn_new_segment_is_removed(tmp_path: Path) -> None:
    fill(tmp_path, 30, segment_bytes=300)
    segs = segments(tmp_path)
    seq, _ = wal.parse_segment_name(segs[-1].name) or (0, 0)
    torn = tmp_path / "wal" / wal.segment_name(seq + 1, 31)
    header = wal.frame(wal.RecordType.HEADER | wal.BATCH_BEGIN, wal.encode_header(seq + 1, 31))
    torn.write_bytes(header[:7])
    with DiskStorage.open(tmp_path, segment_bytes=300) as s:
        assert not torn.exists()
        assert s.last_index == 30
        s.save(None, [ent(31)])
    assert load(tmp_path, segment_bytes=300).entries == [ent(i) for i in range(1, 32)]


def test_bit_flip_in_the_final_record_is_a_torn_tail(tmp_path: Path) -> None:
    fill(tmp_path, 10)
    seg = segments(tmp_path)[-1]
    last = records(seg)[-1]
    flip(seg, last.offset + wal.FRAME_SIZE + 1)
    st_ = load(tmp_path)
    assert st_.entries == [ent(i) for i in range(1, 11)]
    assert st_.hard_state == HardState(1, 1, 8)  # the final save's hard state is gone
    assert seg.stat().st_size == last.offset


# ------------------------------------------------------------------------------------ corruption


@pytest.mark.parametrize("where", ["payload", "length", "crc", "type"])
def test_bit_flip_mid_last_segment_is_corruption(tmp_path: Path, where: str) -> None:
    fill(tmp_path, 20)
    seg = segments(tmp_path)[-1]
    victim = next(r for r in records(seg) if isinstance(r.value, Entry) and r.value.index == 10)
    delta = {"payload": wal.FRAME_SIZE + 4, "length": 2, "crc": 5, "type": 8}[where]
    flip(seg, victim.offset + delta)
    size = seg.stat().st_size
    with pytest.raises(WalCorruptionError) as info:
        DiskStorage.open(tmp_path)
    assert info.value.path == str(seg)
    assert info.value.offset == victim.offset
    assert str(seg) in str(info.value) and f"offset {victim.offset}" in str(info.value)
    assert seg.stat().st_size == size  # nothing was "repaired"
    with pytest.raises(WalCorruptionError):  # and the lock was released
        DiskStorage.open(tmp_path)


def test_bit_flip_in_earlier_segment_is_corruption(tmp_path: Path) -> None:
    fill(tmp_path, 40, segment_bytes=300)
    segs = segments(tmp_path)
    victim = records(segs[1])[-1]  # even the last record of a non-last segment
    flip(segs[1], victim.offset + wal.FRAME_SIZE)
    with pytest.raises(WalCorruptionError) as info:
        DiskStorage.open(tmp_path, segment_bytes=300)
    assert (info.value.path, info.value.offset) == (str(segs[1]), victim.offset)


def test_truncated_earlier_segment_is_corruption(tmp_path: Path) -> None:
    fill(tmp_path, 40, segment_bytes=300)
    seg = segments(tmp_path)[0]
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 3)
    with pytest.raises(WalCorruptionError, match="runs past end of file"):
        DiskStorage.open(tmp_path)


def test_missing_middle_segment_is_corruption(tmp_path: Path) -> None:
    fill(tmp_path, 40, segment_bytes=300)
    segments(tmp_path)[2].unlink()
    with pytest.raises(WalCorruptionError, match="missing"):
        DiskStorage.open(tmp_path)


def test_renamed_segment_header_mismatch_is_corruption(tmp_path: Path) -> None:
    fill(tmp_path, 40, segment_bytes=300)
    seg = segments(tmp_path)[1]
    seq, _first = wal.parse_segment_name(seg.name) or (0, 0)
    seg.rename(seg.with_name(wal.segment_name(seq, 999)))
    with pytest.raises(WalCorruptionError, match="does not match the file name"):
        DiskStorage.open(tmp_path)


def test_index_gap_is_corruption(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    seg = segments(tmp_path)[-1]
    offset = seg.stat().st_size
    parts: list[bytes] = []
    wal.encode_entries(parts, [ent(7)], 7, begin=True)
    with open(seg, "ab") as f:
        f.write(b"".join(parts))
    with pytest.raises(WalCorruptionError, match="gap") as info:
        DiskStorage.open(tmp_path)
    assert info.value.offset == offset


def test_valid_checksum_but_malformed_payload_is_corruption(tmp_path: Path) -> None:
    fill(tmp_path, 3)
    seg = segments(tmp_path)[-1]
    with open(seg, "ab") as f:
        f.write(wal.frame(wal.RecordType.ENTRY | wal.BATCH_BEGIN, b"\x93\x01\x02\x03"))
    with pytest.raises(WalCorruptionError, match="malformed ENTRY"):
        DiskStorage.open(tmp_path)


# ------------------------------------------------------------------------------------ snapshots


def _with_snapshot(d: Path) -> Path:
    fill(d, 20)
    with DiskStorage.open(d) as s:
        s.save_snapshot(snap(12, 1, b"image" * 100))
    return d / "snap" / snapfile.snapshot_name(12, 1)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupt_snapshot_file_is_an_error_naming_it(tmp_path: Path, damage: str) -> None:
    path = _with_snapshot(tmp_path)
    if damage == "flip":
        flip(path, 40)
    elif damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(100)
    else:
        path.write_bytes(b"")
    with pytest.raises(SnapshotCorruptionError) as info:
        DiskStorage.open(tmp_path)
    assert isinstance(info.value, StorageError)
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_missing_snapshot_file_is_an_error(tmp_path: Path) -> None:
    path = _with_snapshot(tmp_path)
    path.unlink()
    with pytest.raises(SnapshotCorruptionError, match="missing"):
        DiskStorage.open(tmp_path)


def test_leftover_temp_snapshot_file_is_removed(tmp_path: Path) -> None:
    _with_snapshot(tmp_path)
    tmp = tmp_path / "snap" / (snapfile.snapshot_name(18, 1) + snapfile.TEMP_SUFFIX)
    tmp.write_bytes(b"half a snapsh")
    st_ = load(tmp_path)
    assert not tmp.exists()
    assert st_.snapshot == snap(12, 1, b"image" * 100)


def test_snapshot_file_without_wal_marker_is_discarded(tmp_path: Path) -> None:
    """A crash after the snapshot file was renamed into place but before the WAL marker synced."""
    _with_snapshot(tmp_path)
    orphan = snapfile.write_snapshot(str(tmp_path / "snap"), snap(18, 1, b"unacknowledged"))
    st_ = load(tmp_path)
    assert not os.path.exists(orphan)
    assert st_.snapshot == snap(12, 1, b"image" * 100)
    assert st_.entries == [ent(i) for i in range(13, 21)]


def test_snapshot_file_round_trip_and_checks(tmp_path: Path) -> None:
    s = Snapshot(SnapshotMetadata(7, 3, ConfState((1, 2), (4,))), os.urandom(10_000))
    path = snapfile.write_snapshot(str(tmp_path), s)
    assert snapfile.read_snapshot(path) == s
    wrong = tmp_path / snapfile.snapshot_name(8, 3)
    shutil.copy(path, wrong)
    with pytest.raises(SnapshotCorruptionError, match="do not match the file name"):
        snapfile.read_snapshot(str(wrong))


def test_wal_without_segments_but_with_snapshots_is_refused(tmp_path: Path) -> None:
    _with_snapshot(tmp_path)
    for seg in segments(tmp_path):
        seg.unlink()
    with pytest.raises(StorageError, match="no WAL segments"):
        DiskStorage.open(tmp_path)


# ------------------------------------------------------------------------------------ model test


class Model:
    def __init__(self) -> None:
        self.hs = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []

    @property
    def base(self) -> int:
        return self.snapshot.metadata.index if self.snapshot else 0

    @property
    def last(self) -> int:
        return self.base + len(self.entries)

    def state(self) -> LoadedState:
        return LoadedState(self.hs, self.snapshot, list(self.entries))


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 6), st.integers(0, 8), st.booleans()),
        st.tuples(st.just("compact"), st.floats(0, 1), st.just(0), st.just(False)),
        st.tuples(st.just("install"), st.integers(1, 6), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("reopen"), st.just(0), st.just(0), st.just(False)),
    ),
    max_size=30,
)
_example = 0


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=ops, segment_bytes=st.sampled_from([150, 600, 1 << 20]), seed=st.integers(0, 2**32))
def test_random_saves_match_in_memory_model(
    tmp_path: Path, ops: list[tuple[str, int | float, int, bool]], segment_bytes: int, seed: int
) -> None:
    global _example
    _example += 1
    d = tmp_path / f"ex{_example}"
    rng = random.Random(seed)
    m = Model()
    term = 1
    s = DiskStorage.open(d, segment_bytes=segment_bytes)
    try:
        for op, a, b, flag in ops:
            if op == "append":
                back, count = int(a), b
                start = max(m.base + 1, m.last + 1 - back)
                if back and flag:
                    term += 1  # a new leader overwrote a suffix
                batch = [
                    ent(i, term, rng.randbytes(rng.randint(0, 40)))
                    for i in range(start, start + count)
                ]
                hs = HardState(term, rng.randint(0, 3), m.base) if rng.random() < 0.5 else None
                s.save(hs, batch)
                if batch:
                    del m.entries[start - m.base - 1 :]
                    m.entries += batch
                m.hs = hs or m.hs
            elif op == "compact":
                if m.last > m.base:
                    idx = m.base + 1 + int(float(a) * (m.last - m.base - 1))
                    t = m.entries[idx - m.base - 1].term
                    sn = snap(idx, t, rng.randbytes(20))
                    s.save_snapshot(sn)
                    del m.entries[: idx - m.base]
                    m.snapshot = sn
            elif op == "install":
                term += 1
                idx = m.base + int(a) + (m.last - m.base if flag else 0)
                sn = snap(idx, term, rng.randbytes(20), voters=(1, 2))
                batch = [ent(i, term) for i in range(idx + 1, idx + 1 + b)]
                hs = HardState(term, 0, idx)
                s.save(hs, batch, sn)
                m.snapshot, m.entries, m.hs = sn, batch, hs
            else:
                s.close()
                s = DiskStorage.open(d, segment_bytes=segment_bytes)
            assert s.initial_state() == m.state()
            assert (s.first_index, s.last_index) == (m.base + 1, m.last)
        s.close()
        s = DiskStorage.open(d, segment_bytes=segment_bytes)
        assert s.initial_state() == m.state()
        kept = snap_files(d)
        assert len(kept) <= 2
        if m.snapshot:
            assert kept[-1] == snapfile.snapshot_name(m.base, m.snapshot.metadata.term)
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)
