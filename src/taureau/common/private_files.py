"""The data directory is owner-only: directories 0700, files 0600.

Topic data and metadata are nobody else's business on a shared machine. Modes are given at
creation (the umask can only take bits away); a directory that already exists is left as
it is, except the data directory's root, which the standalone tightens.
"""

from __future__ import annotations

import os

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dirs(path: str) -> None:
    """os.makedirs with owner-only modes for every directory it creates."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)


def open_private(path: str, flags: int) -> int:
    """os.open whose O_CREAT makes an owner-only file."""
    return os.open(path, flags, FILE_MODE)


def touch_private(path: str) -> None:
    """Create `path` owner-only if absent (for files a library will create otherwise)."""
    os.close(open_private(path, os.O_WRONLY | os.O_CREAT))


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a create, rename or delete in `path` durable (a file's fsync does not cover it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
