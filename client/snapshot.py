"""Snapshot downloads (``AsyncClient.snapshot``, ``coterie snapshot save``): :class:`SnapshotInfo`
and :class:`SnapshotFile`, which writes the chunks of one ``Cluster.Snapshot`` stream to
``<path>.part``, checks them against the final chunk's size and SHA-256, and only then makes the
file durable under ``path`` (fsync, rename, fsync of the directory). Every failure removes the
``.part`` file and leaves ``path`` as it was.

The saved file is the state machine's image (``StateMachine.snapshot()``, msgpack) followed by the
32-byte SHA-256 of the image, as etcd's ``snapshot save`` appends one to its database: ``coterie
snapshot status FILE`` checks it offline."""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any, NamedTuple

from .errors import SnapshotError

__all__ = ["DIGEST_BYTES", "PART_SUFFIX", "SnapshotFile", "SnapshotInfo"]

PART_SUFFIX = ".part"
DIGEST_BYTES = 32
"""The SHA-256 trailer at the end of a saved snapshot file."""


class SnapshotInfo(NamedTuple):
    """A saved snapshot: the size of its image in bytes (the file has :data:`DIGEST_BYTES` more),
    the revision and log index it is at, its SHA-256 (hex) and the state machine's snapshot format
    version."""

    size: int
    revision: int
    applied_index: int
    sha256: str
    version: int


class SnapshotFile:
    """One download into ``path``: :meth:`add` each chunk, then :meth:`finish`; :meth:`discard` on
    any failure (also safe after :meth:`finish`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.part = path + PART_SUFFIX
        self._digest = hashlib.sha256()
        self._size = 0
        self._final: Any = None
        self._f = open(self.part, "wb")  # noqa: SIM115 (closed by finish or discard)

    def add(self, chunk: Any) -> None:
        """Write one ``SnapshotChunk``; the last one (``last`` set) ends the download."""
        if self._final is not None:
            raise SnapshotError("snapshot stream sent data after its final chunk")
        if chunk.data:
            self._f.write(chunk.data)
            self._digest.update(chunk.data)
            self._size += len(chunk.data)
        if chunk.last:
            self._final = chunk

    def finish(self, endpoint: str = "") -> SnapshotInfo:
        """Verify what was received, fsync, rename ``.part`` to ``path`` and fsync the directory."""
        final = self._final
        if final is None:
            raise SnapshotError(f"snapshot stream ended after {self._size} bytes without its final chunk",
                                endpoint=endpoint)
        digest = self._digest.digest()
        if final.size != self._size or final.sha256 != digest:
            raise SnapshotError(
                f"snapshot checksum mismatch: received {self._size} bytes with SHA-256 {digest.hex()}, "
                f"the member announced {final.size} bytes with SHA-256 {final.sha256.hex()}",
                endpoint=endpoint)
        self._f.write(digest)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.part, self.path)
        _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        return SnapshotInfo(size=self._size, revision=int(final.revision),
                            applied_index=int(final.applied_index), sha256=digest.hex(),
                            version=int(final.version))

    def discard(self) -> None:
        """Close and delete the ``.part`` file (if still there)."""
        self._f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
