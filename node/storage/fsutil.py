"""Small POSIX file helpers shared by the WAL and the snapshot store.

Durability rules used throughout the package:

- file contents are durable only after :func:`sync_file` (``fdatasync`` where available; it also
  persists the file size, which is all an append needs);
- creating, renaming or deleting a file is durable only after :func:`fsync_dir` on its directory.
"""

from __future__ import annotations

import os

_fdatasync = getattr(os, "fdatasync", os.fsync)


def sync_file(fd: int) -> None:
    """Flush a file's data (and the metadata needed to read it back) to stable storage."""
    _fdatasync(fd)


def fsync_dir(path: str) -> None:
    """Make creations, renames and deletions of entries in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte of ``data`` is written (a single call in the common case)."""
    n = os.write(fd, data)
    if n == len(data):
        return
    view = memoryview(data)
    while n < len(view):
        n += os.write(fd, view[n:])


def make_dirs(path: str) -> None:
    """Create ``path`` and missing parents, fsyncing each parent whose entries changed."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    make_dirs(parent)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
    fsync_dir(parent)
