"""Errors raised by durable storage.

``StorageError`` is the root. The subclasses name *where* on disk a problem was found, so an
operator can inspect the file; none of them is retryable: the store must be repaired (or the node
rebuilt from a peer) before it can be opened again.
"""

from __future__ import annotations

import os


class StorageError(Exception):
    """Storage cannot continue: an I/O failure, a locked or inconsistent directory, corruption."""


class WalCorruptionError(StorageError):
    """A WAL record failed its checksum or is malformed somewhere other than a torn tail.

    ``path`` is the segment file and ``offset`` the byte offset of the first bad record in it.
    """

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"WAL corruption in {self.path} at offset {offset}: {reason}")


class SnapshotCorruptionError(StorageError):
    """A snapshot file that recovery needs is missing, truncated, or fails its checksum."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"snapshot file {self.path} is unusable: {reason}")
