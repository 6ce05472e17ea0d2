# SPDX-License-Identifier: AGPL-3.0-only
"""Low-level I/O on single block files: O_DIRECT writes, writev loops, syncfs, errors.

`Blockstore` (see `mercato.storage.blockstore` for the layout and its guarantees) names
the files and decides when to flush; this module only moves bytes. Blocks are written
with O_DIRECT where the file system allows it, so the bytes go to the disk once instead
of filling the page cache and being flushed again at the end of an import.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from mercato.errors import BlockWriteError, StorageFullError

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}

# O_DIRECT wants buffers, lengths and offsets aligned to the device's logical block
# size; 4096 covers every common device. Importer blocks are 256 KiB plus a few bytes of
# framing, so one aligned buffer per writing thread holds any of them.
_ALIGN = 4096
_DIRECT_BUFFER = 256 * 1024 + _ALIGN
O_DIRECT = getattr(os, "O_DIRECT", 0)
"""The O_DIRECT open flag, or 0 where the platform has none."""


def load_syncfs() -> Callable[[int], int] | None:
    """Find libc's `syncfs`, which flushes one file system instead of all of them.

    Returns:
        The function (it takes a descriptor on the file system, returns -1 and sets
        errno on failure), or None where there is none (then callers use `os.sync`).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):  # not Linux/glibc: fall back to os.sync
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return cast(Callable[[int], int], func)


def read_with_inode(path: Path) -> tuple[int, bytes]:
    """Read a whole block file, with the inode it was read from.

    The inode lets a caller quarantine the file only if it was not replaced meanwhile.

    Args:
        path: The block file.

    Returns:
        (inode, bytes).

    Raises:
        FileNotFoundError: If there is no such file.
        OSError: If it could not be read.
    """
    with open(path, "rb", buffering=0) as fh:
        inode = os.fstat(fh.fileno()).st_ino
        data = fh.read()
    return inode, data


class BlockFileWriter:
    """Writes a block to a temp file, then renames it under its key in one shard.

    Thread-safe: each writing thread gets its own aligned buffer.
    """

    def __init__(self, direct: bool) -> None:
        """Set up a writer.

        Args:
            direct: Try O_DIRECT first; turned off for good the first time the file
                system refuses it.
        """
        self.direct = direct
        self._buffers = threading.local()
        # Shard directories known to exist (at most 1024): saves a mkdir per block.
        self._shards: set[str] = set()

    def write_block(
        self, tmp: Path, final: Path, parts: Sequence[bytes | memoryview], size: int
    ) -> None:
        """Write `parts` to `tmp` (which must not exist), then rename it to `final`.

        Args:
            tmp: The temp file to create.
            final: The block's file; its shard directory is created if needed.
            parts: The block bytes, possibly in pieces (written with one writev).
            size: Their total length.

        Raises:
            BlockWriteError: If the write failed (StorageFullError when full); the temp
                file is removed.
        """
        try:
            if not (self.direct and self._write_direct(tmp, parts, size)):
                self._write_buffered(tmp, parts)
            if final.parent.name not in self._shards:
                final.parent.mkdir(exist_ok=True)
                self._shards.add(final.parent.name)
            # No fsync here: see `mercato.storage.blockstore`; `flush` makes the import
            # durable.
            try:
                os.rename(tmp, final)
            except FileNotFoundError:
                if not tmp.exists():
                    raise
                final.parent.mkdir(exist_ok=True)  # the shard was removed behind our back
                os.rename(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise wrap_write_error(exc, final) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _write_buffered(self, tmp: Path, parts: Sequence[bytes | memoryview]) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, parts)
        finally:
            os.close(fd)

    def _write_direct(self, tmp: Path, parts: Sequence[bytes | memoryview], size: int) -> bool:
        """Write with O_DIRECT; False (nothing written) if this file system refuses it."""
        if size > _DIRECT_BUFFER or size < _ALIGN:
            return False
        buffer: mmap.mmap | None = getattr(self._buffers, "buffer", None)
        if buffer is None:
            # Anonymous mmap memory is page-aligned, as O_DIRECT requires.
            buffer = mmap.mmap(-1, _DIRECT_BUFFER)
            self._buffers.buffer = buffer
        view = memoryview(buffer)
        try:
            offset = 0
            for part in parts:
                view[offset : offset + len(part)] = part
                offset += len(part)
            aligned = size - size % _ALIGN
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_DIRECT, 0o644)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct = False  # e.g. tmpfs: remember, and use the page cache
                return False
            try:
                try:
                    _write_all(fd, [view[:aligned]])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self.direct = False
                    os.close(fd)
                    fd = -1
                    tmp.unlink(missing_ok=True)
                    return False
                if aligned < size:
                    # The unaligned tail goes through the page cache.
                    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~O_DIRECT)
                    _write_all(fd, [view[aligned:size]])
            finally:
                if fd >= 0:
                    os.close(fd)
        finally:
            view.release()
        return True


def _write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write all of `parts`; writev may write less than asked, so loop."""
    views = [memoryview(p) for p in parts if len(p)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def wrap_write_error(exc: OSError, path: Path) -> BlockWriteError:
    """Turn an OSError from a write into the typed error (StorageFullError when full).

    Args:
        exc: The error the write raised.
        path: The file that was being written.

    Returns:
        The error to raise.
    """
    if exc.errno in _FULL_ERRNOS:
        return StorageFullError(
            f"The disk holding {path.parent} is full; the write was rolled back and no "
            "partial block was kept. Free some space (or run gc) and retry.",
            path=str(path),
            errno_code=exc.errno,
        )
    return BlockWriteError(
        f"Could not write {path}: {exc.strerror or exc}. Nothing partial was kept.",
        path=str(path),
        errno_code=exc.errno,
    )
