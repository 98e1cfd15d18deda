"""Durable storage for a coterie node: an append-only, checksummed WAL plus snapshot files.

See :mod:`coterie.node.storage.disk` for the directory layout and recovery rules,
:mod:`coterie.node.storage.wal` for the record format and
:mod:`coterie.node.storage.snapfile` for the snapshot file format.
"""

from .disk import DiskStorage, LoadedState
from .errors import SnapshotCorruptionError, StorageError, WalCorruptionError

__all__ = [
    "DiskStorage",
    "LoadedState",
    "SnapshotCorruptionError",
    "StorageError",
    "WalCorruptionError",
]
