"""Write-ahead log records and segment files: encoding, scanning, torn-tail detection.

Segments live in ``<dir>/wal/`` and are named ``<seq:016x>-<first_index:016x>.wal``: ``seq`` counts
segments from 1 without gaps, ``first_index`` is the index the next appended entry had when the
segment was created (informational; a later record may still rewrite a lower index).

Every record is framed as (integers little-endian)::

    length  u32   length of payload
    crc     u32   zlib.crc32 (CRC-32/ISO-HDLC, not CRC32C) of the type byte followed by payload
    type    u8    RecordType, with BATCH_BEGIN (0x80) set on the first record of each write batch
    payload       msgpack array, by type:
                    HEADER          ["coterie-wal", version, seq, first_index]
                    ENTRY           [term, index, entry_type, data]
                    HARD_STATE      [term, vote, commit]
                    SNAPSHOT_MARKER [index, term, reset]

(The ENTRY encoder writes fixed-width msgpack ints (uint64/uint8) and bin32 so that one
``struct.pack`` produces the prefix; it is ordinary msgpack to any decoder.)

Invariants:

- the first record of a segment is its HEADER, and HEADER appears nowhere else; every segment
  starts with HEADER, HARD_STATE (the hard state when it was created) and, if a snapshot exists,
  SNAPSHOT_MARKER (the snapshot base then), so every segment before it can be deleted once
  compacted; segments are only ever appended to, except that recovery cuts off a torn tail;
- one write batch (one ``save`` call) is appended with one ``write`` and made durable with one
  ``fdatasync``; its first record carries BATCH_BEGIN. A batch that was not fully synced can be torn
  in any way (missing suffix, zeroed or garbage pages, even a later page present without an earlier
  one), but a batch is only started after the previous one was synced;
- therefore at the first bad record of the *last* segment, if no valid BATCH_BEGIN record starts
  anywhere after it, everything from there on belongs to the one unsynced batch and is a torn tail
  (cut off); if one does, an earlier, acknowledged batch was damaged: :class:`WalCorruptionError`.
  Any bad record in an earlier segment is corruption, as is a record with a valid checksum that
  does not decode. (Consequence: damage inside the final batch, with no later batch after it, is
  indistinguishable from a torn write and is cut off even if that batch had been acknowledged.)
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple, TypeAlias

import msgpack

from ..raft.types import Entry, EntryType, HardState
from .errors import WalCorruptionError

WAL_MAGIC = "coterie-wal"
WAL_VERSION = 1
SEGMENT_SUFFIX = ".wal"
BATCH_BEGIN = 0x80


class RecordType(IntEnum):
    """Kinds of WAL record. Append-only: values are on disk."""

    HEADER = 1
    ENTRY = 2
    HARD_STATE = 3
    SNAPSHOT_MARKER = 4


_KNOWN_TYPES = frozenset(int(t) for t in RecordType)
_RECORD_TYPES = {int(t): t for t in RecordType}
_ENTRY_TYPES = {int(t): t for t in EntryType}
FRAME = struct.Struct("<IIB")  # length, crc, type
FRAME_SIZE = FRAME.size
MAX_PAYLOAD = 0xFFFFFFFF
# msgpack prefix of an ENTRY payload: fixarray(4), uint64 term, uint64 index, uint8 type, bin32 len.
_ENTRY_PREFIX = struct.Struct(">BBQBQBBBI")
_ENTRY_MARKS = (0x94, 0xCF, 0xCF, 0xCC, 0xC6)
_CRC_SEED = tuple(zlib.crc32(bytes([t])) for t in range(256))
_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_packer = msgpack.Packer(use_bin_type=True)


@dataclass(frozen=True, slots=True)
class Marker:
    """A SNAPSHOT_MARKER: the snapshot at ``index``/``term`` is now the base of the log.

    ``reset`` (a snapshot received from a leader) discards every entry written before the marker;
    otherwise (local compaction) only entries up to ``index`` are discarded.
    """

    index: int
    term: int
    reset: bool


@dataclass(frozen=True, slots=True)
class Header:
    seq: int
    first_index: int


Payload: TypeAlias = Header | Entry | HardState | Marker


class Record(NamedTuple):
    offset: int
    type: RecordType
    value: Payload


@dataclass
class SegmentScan:
    """The result of reading one segment file.

    ``valid_end`` is the offset after the last good record; ``torn`` describes a torn tail found at
    ``valid_end`` (only ever set for the last segment), or is None if the file ended cleanly.
    """

    path: str
    seq: int
    first_index: int
    size: int
    records: list[Record] = field(default_factory=list)
    valid_end: int = 0
    torn: str | None = None


# ---------------------------------------------------------------------------------- names
def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """``(seq, first_index)`` for a segment file name, or None if ``name`` is not one."""
    m = _NAME_RE.match(name)
    if m is None:
        return None
    return int(m.group(1), 16), int(m.group(2), 16)


# ---------------------------------------------------------------------------------- encoding
def frame(rtype: int, payload: bytes) -> bytes:
    """One framed record. ``rtype`` may include BATCH_BEGIN."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"WAL record of {len(payload)} bytes is too large")
    return FRAME.pack(len(payload), zlib.crc32(payload, _CRC_SEED[rtype]), rtype) + payload


def encode_header(seq: int, first_index: int) -> bytes:
    return _packer.pack([WAL_MAGIC, WAL_VERSION, seq, first_index])


def encode_hard_state(hs: HardState) -> bytes:
    _check_u64(hs.term, hs.vote, hs.commit)
    return _packer.pack([hs.term, hs.vote, hs.commit])


def encode_marker(index: int, term: int, reset: bool) -> bytes:
    _check_u64(index, term)
    return _packer.pack([index, term, reset])


def _check_u64(*vals: int) -> None:
    for v in vals:
        if not 0 <= v < 1 << 64:
            raise ValueError(f"{v!r} is not a valid term, index or node id")


def encode_entries(
    parts: list[bytes], entries: Sequence[Entry], expect_index: int, *, begin: bool
) -> None:
    """Append framed ENTRY records for ``entries`` to ``parts`` (header, msgpack prefix, data).

    The first record is flagged BATCH_BEGIN if ``begin``. Checks that indices are contiguous from
    ``expect_index`` and raises ValueError otherwise (``parts`` may then hold a partial batch).
    """
    ap = parts.append
    pack_prefix = _ENTRY_PREFIX.pack
    pack_frame = FRAME.pack
    crc32 = zlib.crc32
    seed = _CRC_SEED[RecordType.ENTRY]
    t_entry = int(RecordType.ENTRY)
    t_first = t_entry | BATCH_BEGIN if begin else t_entry
    expect = expect_index
    for e in entries:
        if e.index != expect:
            raise ValueError(f"entries are not contiguous: got index {e.index}, expected {expect}")
        expect += 1
        data = e.data
        try:
            prefix = pack_prefix(0x94, 0xCF, e.term, 0xCF, e.index, 0xCC, e.type, 0xC6, len(data))
        except struct.error as err:
            raise ValueError(f"entry {e.index} cannot be encoded: {err}") from err
        n = len(prefix) + len(data)
        if n > MAX_PAYLOAD:
            raise ValueError(f"entry {e.index} is too large ({n} bytes)")
        if expect == expect_index + 1:
            ap(pack_frame(n, crc32(data, crc32(prefix, _CRC_SEED[t_first])), t_first))
        else:
            ap(pack_frame(n, crc32(data, crc32(prefix, seed)), t_entry))
        ap(prefix)
        ap(data)


# ---------------------------------------------------------------------------------- decoding
def _decode(rtype: int, payload: memoryview) -> Payload:
    """Decode a checksummed payload; raises ValueError/TypeError if it is malformed."""
    raw = msgpack.unpackb(payload, use_list=False, raw=False)
    if type(raw) is not tuple:
        raise ValueError("payload is not an array")
    if rtype == RecordType.ENTRY:
        term, index, etype, data = raw
        if type(term) is not int or type(index) is not int or type(data) is not bytes:
            raise TypeError(f"bad ENTRY field types {raw[:3]!r}")
        if index < 1:
            raise ValueError(f"entry index {index} < 1")
        return Entry(term, index, _ENTRY_TYPES[etype], data)
    if rtype == RecordType.HARD_STATE:
        term, vote, commit = raw
        _ints(term, vote, commit)
        return HardState(term, vote, commit)
    if rtype == RecordType.SNAPSHOT_MARKER:
        index, term, reset = raw
        _ints(index, term)
        if type(reset) is not bool:
            raise TypeError("marker reset flag is not a bool")
        return Marker(index, term, reset)
    if rtype == RecordType.HEADER:
        magic, version, seq, first_index = raw
        if magic != WAL_MAGIC:
            raise ValueError(f"bad magic {magic!r}")
        if version != WAL_VERSION:
            raise ValueError(f"unsupported WAL version {version!r}")
        _ints(seq, first_index)
        return Header(seq, first_index)
    raise ValueError(f"unknown record type {rtype}")


def _ints(*vals: object) -> None:
    for v in vals:
        if type(v) is not int or v < 0:
            raise TypeError(f"expected a non-negative int, got {v!r}")


def _check_frame(buf: bytes, off: int) -> str | None:
    """Why the record at ``off`` is unreadable, or None if its frame and checksum are good."""
    n = len(buf)
    if n - off < FRAME_SIZE:
        return f"truncated frame header ({n - off} bytes left)"
    length, crc, rtype = FRAME.unpack_from(buf, off)
    end = off + FRAME_SIZE + length
    if end > n:
        return f"record length {length} runs past end of file ({n} bytes)"
    if zlib.crc32(memoryview(buf)[off + FRAME_SIZE : end], _CRC_SEED[rtype]) != crc:
        return "checksum mismatch"
    return None


def find_batch_begin(buf: bytes, start: int) -> int | None:
    """Offset of the first valid (checksummed) BATCH_BEGIN record starting at or after ``start``."""
    best: int | None = None
    for t in _KNOWN_TYPES:
        needle = bytes([t | BATCH_BEGIN])
        pos = buf.find(needle, start + FRAME_SIZE - 1)
        while pos != -1 and (best is None or pos - (FRAME_SIZE - 1) < best):
            rec = pos - (FRAME_SIZE - 1)
            if _check_frame(buf, rec) is None:
                best = rec
                break
            pos = buf.find(needle, pos + 1)
    return best


def scan_segment(path: str, buf: bytes, *, last: bool) -> SegmentScan:
    """Parse and verify every record of one segment held in ``buf``.

    For the last segment a torn tail is reported in the result (the caller truncates the file);
    anything else that is wrong raises :class:`WalCorruptionError`. The header is checked against
    the file name.
    """
    parsed = parse_segment_name(os.path.basename(path))
    if parsed is None:
        raise WalCorruptionError(path, 0, "not a segment file name")
    seq, first_index = parsed
    scan = SegmentScan(path=path, seq=seq, first_index=first_index, size=len(buf))
    append = scan.records.append
    view = memoryview(buf)
    unpack_prefix = _ENTRY_PREFIX.unpack_from
    prefix_size = _ENTRY_PREFIX.size
    entry_types = _ENTRY_TYPES
    record_types = _RECORD_TYPES
    t_entry = int(RecordType.ENTRY)
    unpack = FRAME.unpack_from
    crc32 = zlib.crc32
    seeds = _CRC_SEED
    n = len(buf)
    off = 0
    while off < n:
        bad: str | None = None
        if n - off < FRAME_SIZE:
            bad = f"truncated frame header ({n - off} bytes left)"
        else:
            length, crc, rtype = unpack(buf, off)
            end = off + FRAME_SIZE + length
            if end > n:
                bad = f"record length {length} runs past end of file ({n} bytes)"
            elif crc32(view[off + FRAME_SIZE : end], seeds[rtype]) != crc:
                bad = "checksum mismatch"
        if bad is not None:
            if not last:
                raise WalCorruptionError(path, off, bad)
            if buf.count(0, off) != n - off:
                follower = find_batch_begin(buf, off + 1)
                if follower is not None:
                    raise WalCorruptionError(
                        path, off, f"{bad}; a later batch starts at offset {follower}"
                    )
            else:
                bad = f"{bad} (zero-filled tail)"
            scan.torn = bad
            break
        base_type = rtype & ~BATCH_BEGIN
        value: Payload | None = None
        if base_type == t_entry and length >= prefix_size:
            # Fast path for the fixed-width encoding this module writes (see encode_entries).
            a, b, term, c, index, d, etype, f, dlen = unpack_prefix(buf, off + FRAME_SIZE)
            et = entry_types.get(etype)
            if (
                (a, b, c, d, f) == _ENTRY_MARKS
                and dlen == length - prefix_size
                and index >= 1
                and et is not None
            ):
                value = Entry(term, index, et, buf[off + FRAME_SIZE + prefix_size : end])
        if value is None:
            if base_type not in _KNOWN_TYPES:
                raise WalCorruptionError(path, off, f"unknown record type {rtype}")
            try:
                value = _decode(base_type, view[off + FRAME_SIZE : end])
            except (ValueError, TypeError, KeyError) as e:
                raise WalCorruptionError(
                    path, off, f"malformed {RecordType(base_type).name}: {e}"
                ) from e
        is_header = base_type == RecordType.HEADER
        if is_header != (off == 0):
            raise WalCorruptionError(
                path, off, "segment does not start with a header" if off == 0 else "stray header"
            )
        if is_header and value != Header(seq, first_index):
            raise WalCorruptionError(path, off, f"header {value} does not match the file name")
        append(Record(off, record_types[base_type], value))
        off = end
    scan.valid_end = off
    return scan
