# SPDX-License-Identifier: AGPL-3.0-only
"""Atomic, durable small-file writes shared by every component that keeps state on disk.

A crash or kill at any moment leaves the old file or the new one, never half of one:
the bytes go to a temporary file in the same directory, are flushed to disk, and the
file is renamed into place; then the directory entry itself is flushed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterable
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


def write_atomically(dest: Path, pieces: Iterable[bytes | memoryview]) -> int:
    """Streams `pieces` into `dest`, which appears only once every piece is on disk.

    The temporary file sits beside `dest` (same file system, so the rename is atomic)
    and is removed on any error, including one raised by the `pieces` iterator itself,
    which is how callers veto a file whose content fails a check at the very end.

    Args:
        dest: The destination; replaced if it exists.
        pieces: The content.

    Returns:
        The number of bytes written.

    Raises:
        OSError: The file system refused the write.
        Whatever `pieces` raises; nothing is left behind either way.
    """
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
    written = 0
    try:
        with open(tmp, "xb") as out:
            for piece in pieces:
                out.write(piece)
                written += len(piece)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-written file behind.
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(dest.parent)
    return written
