# SPDX-License-Identifier: AGPL-3.0-only
"""Atomic, durable small-file writes shared by every component that keeps state on disk.

A crash or kill at any moment leaves the old file or the new one, never half of one:
the bytes go to a temporary file in the same directory, are flushed to disk, and the
file is renamed into place; then the directory entry itself is flushed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Makes a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename stands
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Writes `data` to `path` atomically, readable by its owner only (mode 0600).

    Args:
        path: The destination; its directory must exist.
        data: The content.
        replace: Whether an existing file may be replaced.

    Raises:
        FileExistsError: `path` exists and `replace` is False.
        OSError: The file system refused the write; nothing is left behind.
    """
    if not replace and path.exists():
        raise FileExistsError(path)
    # mkstemp creates the file with mode 0600 from the start: no window where it is
    # readable by others.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)
