"""Snapshot files: one self-checking file per snapshot in ``<dir>/snap/``.

File name: ``<index:016x>-<term:016x>.snap`` (lexicographic order is index order). Content, all
integers little-endian::

    magic    8 bytes  b"COTSNAP\\x00"
    version  u16      1
    flags    u16      0 (reserved)
    meta_len u32
    meta     msgpack  [index, term, [voters...], [learners...]]
    data_len u64
    data     data_len bytes (opaque state machine image)
    digest   32 bytes SHA-256 of every preceding byte of the file

Invariants:

- a ``.snap`` file is only ever created by :func:`write_snapshot`: written to ``<name>.tmp``,
  fsynced, renamed into place and the directory fsynced, so a file with the final name is complete
  unless the disk corrupted it afterwards (which :func:`read_snapshot` detects);
- ``*.tmp`` files are leftovers of a crash during a write; :func:`clean_temp_files` deletes them;
- the metadata inside a file always matches the index and term in its name.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from typing import Any

import msgpack

from ..raft.types import ConfState, Snapshot, SnapshotMetadata
from .errors import SnapshotCorruptionError
from .fsutil import fsync_dir, sync_file, write_all

MAGIC = b"COTSNAP\x00"
VERSION = 1
SUFFIX = ".snap"
TEMP_SUFFIX = ".tmp"

_HEAD = struct.Struct("<8sHHI")  # magic, version, flags, meta_len
_DATA_LEN = struct.Struct("<Q")
_DIGEST_LEN = 32
_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


def snapshot_name(index: int, term: int) -> str:
    """The file name of the snapshot at ``index``/``term``."""
    return f"{index:016x}-{term:016x}{SUFFIX}"


def parse_snapshot_name(name: str) -> tuple[int, int] | None:
    """``(index, term)`` for a snapshot file name, or None if ``name`` is not one."""
    m = _NAME_RE.match(name)
    if m is None:
        return None
    return int(m.group(1), 16), int(m.group(2), 16)


def list_snapshots(directory: str) -> list[tuple[int, int]]:
    """``(index, term)`` of every snapshot file in ``directory``, oldest (lowest index) first."""
    found = [parse_snapshot_name(n) for n in os.listdir(directory)]
    return sorted(f for f in found if f is not None)


def clean_temp_files(directory: str) -> list[str]:
    """Delete leftover ``*.tmp`` files (interrupted writes); returns the paths removed."""
    removed = []
    for name in os.listdir(directory):
        if name.endswith(TEMP_SUFFIX):
            path = os.path.join(directory, name)
            os.unlink(path)
            removed.append(path)
    if removed:
        fsync_dir(directory)
    return removed


def encode_header(snapshot: Snapshot) -> bytes:
    """Everything before the data: fixed header, metadata and the data length."""
    meta = snapshot.metadata
    packed = msgpack.packb(
        [meta.index, meta.term, list(meta.conf_state.voters), list(meta.conf_state.learners)],
        use_bin_type=True,
    )
    return _HEAD.pack(MAGIC, VERSION, 0, len(packed)) + packed + _DATA_LEN.pack(len(snapshot.data))


def write_snapshot(directory: str, snapshot: Snapshot) -> str:
    """Atomically and durably write ``snapshot`` into ``directory``; returns the final path.

    Write to a temp file, fsync it, rename it over the final name, fsync the directory. An existing
    file with the same name (same index and term) is replaced.
    """
    meta = snapshot.metadata
    name = snapshot_name(meta.index, meta.term)
    final = os.path.join(directory, name)
    tmp = final + TEMP_SUFFIX
    head = encode_header(snapshot)
    digest = hashlib.sha256(head)
    digest.update(snapshot.data)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, head)
        write_all(fd, snapshot.data)
        write_all(fd, digest.digest())
        sync_file(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(directory)
    return final


def read_snapshot(path: str) -> Snapshot:
    """Read and verify a snapshot file. Raises :class:`SnapshotCorruptionError` naming ``path``."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        raise SnapshotCorruptionError(path, f"cannot read: {e}") from e
    if len(buf) < _HEAD.size + _DATA_LEN.size + _DIGEST_LEN:
        raise SnapshotCorruptionError(path, f"too short ({len(buf)} bytes)")
    body, digest = buf[:-_DIGEST_LEN], buf[-_DIGEST_LEN:]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotCorruptionError(path, "SHA-256 checksum mismatch")
    magic, version, _flags, meta_len = _HEAD.unpack_from(body, 0)
    if magic != MAGIC:
        raise SnapshotCorruptionError(path, f"bad magic {magic!r}")
    if version != VERSION:
        raise SnapshotCorruptionError(path, f"unsupported version {version}")
    pos = _HEAD.size
    if pos + meta_len + _DATA_LEN.size > len(body):
        raise SnapshotCorruptionError(path, "metadata runs past the end of the file")
    try:
        raw: Any = msgpack.unpackb(body[pos : pos + meta_len], use_list=True, raw=False)
        index, term, voters, learners = raw
        meta = SnapshotMetadata(
            index=int(index),
            term=int(term),
            conf_state=ConfState(
                voters=tuple(int(v) for v in voters), learners=tuple(int(v) for v in learners)
            ),
        )
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise SnapshotCorruptionError(path, f"malformed metadata: {e}") from e
    pos += meta_len
    (data_len,) = _DATA_LEN.unpack_from(body, pos)
    pos += _DATA_LEN.size
    if pos + data_len != len(body):
        raise SnapshotCorruptionError(
            path, f"data length {data_len} does not match file size {len(buf)}"
        )
    expected = parse_snapshot_name(os.path.basename(path))
    if expected is not None and expected != (meta.index, meta.term):
        raise SnapshotCorruptionError(
            path, f"metadata index/term {meta.index}/{meta.term} do not match the file name"
        )
    return Snapshot(metadata=meta, data=body[pos:])
