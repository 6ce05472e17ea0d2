# SPDX-License-Identifier: AGPL-3.0-only
"""The local blockstore: one file per block in the node's data directory.

Layout under the directory the caller passes (`Blockstore(root)`)::

    root/
    ├── blocks/
    │   ├── qa/                          shard: the 2 characters before the key's last one
    │   │   └── ciqhxzaa...tqa           a block, named by the base32 of its multihash
    │   └── ...
    ├── pins/
    │   └── bafybei...                   a recursive pin, named by the root's CIDv1;
    │                                    holds the CID as the user gave it
    ├── tmp/                             blocks being written; renamed into blocks/ only
    │                                    once complete and fsynced
    └── lock                             flock: writers hold it shared, gc exclusive

Guarantees:
- A file under blocks/ is only ever created by `rename` of a fully written, fsynced
  temp file, so a crash, kill or full disk never leaves a partial block under a key.
- Every read re-hashes the block and raises `BlockHashMismatchError` naming the CID.
- `gc` deletes every block not reachable from a pin. Imports hold the lock shared from
  their first block until their root is pinned, so gc never collects a DAG mid-import.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from multiformats import CID

from mercato.errors import (
    BlockNotFoundError,
    BlockWriteError,
    DagFormatError,
    StorageFullError,
)
from mercato.storage import dagpb
from mercato.storage.cids import (
    CODEC_DAG_PB,
    BlockKey,
    block_key,
    check_block_size,
    cid_from_bytes,
    key_from_multihash,
    verify_block,
)

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


@dataclass(frozen=True)
class GCResult:
    """What a garbage collection removed.

    Attributes:
        removed_blocks: Number of block files deleted.
        freed_bytes: Their total size.
    """

    removed_blocks: int
    freed_bytes: int


class Blockstore:
    """Content-addressed block storage in a directory (see the module docstring).

    Thread-safe; several processes may share one directory.
    """

    def __init__(self, root: Path | str) -> None:
        """Open (and create if needed) a blockstore.

        Args:
            root: The data directory that holds the store.
        """
        self.root = Path(root)
        self.blocks_dir = self.root / "blocks"
        self.pins_dir = self.root / "pins"
        self.tmp_dir = self.root / "tmp"
        for directory in (self.blocks_dir, self.pins_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        self._lock_path.touch(exist_ok=True)
        self._dirty_dirs: set[Path] = set()
        self._dirty_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"Blockstore({str(self.root)!r})"

    # --- paths and locking ------------------------------------------------------------

    def _path(self, key: BlockKey) -> Path:
        return self.blocks_dir / key[-3:-1] / key

    @contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        # A fresh descriptor per holder: flock locks belong to open file descriptions,
        # so threads of one process exclude each other just like separate processes.
        fd = os.open(self._lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold off garbage collection while a DAG is written and then pinned."""
        with self._flock(fcntl.LOCK_SH):
            yield

    # --- writes -----------------------------------------------------------------------

    def put(self, cid: CID, data: bytes | memoryview) -> None:
        """Verify a block against its CID and store it.

        Args:
            cid: The block's CID.
            data: The block bytes.

        Raises:
            BlockHashMismatchError: If `data` does not hash to `cid`.
            BlockTooLargeError: If the block is above the size limit.
            BlockWriteError: If the disk write failed (StorageFullError when full).
        """
        verify_block(cid, data, "put")
        self.put_hashed(bytes(cid.digest), [data])

    def put_hashed(self, multihash_bytes: bytes, parts: Sequence[bytes | memoryview]) -> int:
        """Store a block whose multihash the caller has just computed over `parts`.

        The importer uses this to avoid hashing every block twice.

        Args:
            multihash_bytes: The block's multihash (binary).
            parts: The block bytes, possibly in pieces (written with one writev).

        Returns:
            The number of bytes written (0 when the block was already stored).

        Raises:
            BlockTooLargeError: If the block is above the size limit.
            BlockWriteError: If the disk write failed (StorageFullError when full).
        """
        size = sum(len(p) for p in parts)
        check_block_size(size, None)
        key = key_from_multihash(multihash_bytes)
        final = self._path(key)
        if final.exists():
            return 0
        tmp = self.tmp_dir / f"{key}.{secrets.token_hex(6)}.tmp"
        fd = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            _write_all(fd, parts)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            final.parent.mkdir(exist_ok=True)
            os.rename(tmp, final)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise wrap_write_error(exc, final) from exc
        except BaseException:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        with self._dirty_guard:
            self._dirty_dirs.add(final.parent)
        return size

    def flush(self) -> None:
        """Make the renames of blocks written so far durable (fsync their directories).

        Raises:
            BlockWriteError: If a directory could not be synced.
        """
        with self._dirty_guard:
            dirs, self._dirty_dirs = self._dirty_dirs, set()
        for directory in dirs:
            try:
                _fsync_dir(directory)
            except OSError as exc:
                raise wrap_write_error(exc, directory) from exc

    def delete(self, cid: CID) -> bool:
        """Remove a block (pins are not consulted; prefer `unpin` + `gc`).

        Returns:
            True if a block was removed.
        """
        path = self._path(block_key(cid))
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    # --- reads ------------------------------------------------------------------------

    def has(self, cid: CID) -> bool:
        """Tell whether the store holds a block for `cid` (without verifying it)."""
        return self._path(block_key(cid)).exists()

    def get(self, cid: CID) -> bytes:
        """Read a block and verify it against its CID.

        Args:
            cid: The block's CID.

        Returns:
            The block bytes.

        Raises:
            BlockNotFoundError: If the store has no such block.
            BlockHashMismatchError: If the stored bytes are corrupted.
        """
        path = self._path(block_key(cid))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlockNotFoundError(
                f"Block {cid} is not in the local store at {self.root}. "
                "Import the file or fetch it from a gateway first.",
                cid=str(cid),
            ) from None
        verify_block(cid, data, str(path))
        return data

    def get_block(self, cid: CID) -> bytes:
        """Same as `get`; the name the `BlockSource` protocol uses."""
        return self.get(cid)

    def size(self, cid: CID) -> int:
        """Size in bytes of a stored block (not verified).

        Raises:
            BlockNotFoundError: If the store has no such block.
        """
        try:
            return self._path(block_key(cid)).stat().st_size
        except FileNotFoundError:
            raise BlockNotFoundError(
                f"Block {cid} is not in the local store.", cid=str(cid)
            ) from None

    def iter_keys(self) -> Iterator[BlockKey]:
        """Yield the key of every stored block (order unspecified)."""
        for shard in self.blocks_dir.iterdir():
            if shard.is_dir():
                for entry in shard.iterdir():
                    yield BlockKey(entry.name)

    # --- pins and gc ------------------------------------------------------------------

    def _pin_path(self, cid: CID) -> Path:
        v1 = cid.set(version=1, base="base32") if cid.version == 0 else cid
        return self.pins_dir / str(v1.set(base="base32"))

    def pin(self, cid: CID) -> None:
        """Pin a DAG recursively so `gc` keeps all of it.

        Args:
            cid: The DAG's root.

        Raises:
            BlockNotFoundError: If a block of the DAG is missing (nothing is pinned).
            BlockHashMismatchError: If an inner node is corrupted.
            BlockWriteError: If the pin could not be written.
        """
        self._mark(cid, set())
        self.flush()
        path = self._pin_path(cid)
        tmp = self.tmp_dir / f"pin.{secrets.token_hex(6)}.tmp"
        try:
            with open(tmp, "w") as fh:
                fh.write(str(cid))
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, path)
            _fsync_dir(self.pins_dir)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise wrap_write_error(exc, path) from exc

    def unpin(self, cid: CID) -> bool:
        """Remove a pin; its blocks go at the next `gc` unless another pin holds them.

        Returns:
            True if the CID was pinned.
        """
        try:
            self._pin_path(cid).unlink()
        except FileNotFoundError:
            return False
        return True

    def is_pinned(self, cid: CID) -> bool:
        """Tell whether `cid` is a pinned root."""
        return self._pin_path(cid).exists()

    def pins(self) -> list[CID]:
        """List pinned roots, as they were given to `pin`."""
        return [CID.decode(p.read_text().strip()) for p in sorted(self.pins_dir.iterdir())]

    def _mark(self, root: CID, live: set[BlockKey]) -> None:
        stack = [root]
        while stack:
            cid = stack.pop()
            key = block_key(cid)
            if key in live:
                continue
            path = self._path(key)
            if cid.codec.code == CODEC_DAG_PB:
                try:
                    with open(path, "rb") as fh:
                        first = fh.read(1)
                except FileNotFoundError:
                    raise BlockNotFoundError(
                        f"Block {cid} of the DAG {root} is missing from the store.",
                        cid=str(cid),
                    ) from None
                # Canonical dag-pb puts Links (tag 0x12) before Data, so a node whose first
                # byte is not 0x12 has no links: leaves are not read, which keeps gc and pin
                # from re-reading every chunk of every file.
                if first == b"\x12":
                    node = dagpb.decode_node(self.get(cid), str(cid))
                    for link in node.links:
                        try:
                            stack.append(cid_from_bytes(link.hash))
                        except ValueError as exc:
                            raise DagFormatError(
                                f"Node {cid} links to something that is not a CID.", cid=str(cid)
                            ) from exc
            elif not path.exists():
                raise BlockNotFoundError(
                    f"Block {cid} of the DAG {root} is missing from the store.", cid=str(cid)
                )
            live.add(key)

    def gc(self) -> GCResult:
        """Delete every block not reachable from a pin, and stale temp files.

        Returns:
            How many blocks and bytes were freed.

        Raises:
            BlockHashMismatchError: If an inner node of a pinned DAG is corrupted (nothing
                is deleted then: a corrupted node hides which blocks are live).
            BlockNotFoundError: If a pinned DAG is incomplete (nothing is deleted).
        """
        with self._flock(fcntl.LOCK_EX):
            live: set[BlockKey] = set()
            for cid in self.pins():
                self._mark(cid, live)
            removed = freed = 0
            for shard in list(self.blocks_dir.iterdir()):
                for entry in list(shard.iterdir()):
                    if entry.name not in live:
                        freed += entry.stat().st_size
                        entry.unlink()
                        removed += 1
            # Writers hold the lock shared, so nothing in tmp/ is in flight right now.
            for entry in self.tmp_dir.iterdir():
                entry.unlink(missing_ok=True)
            return GCResult(removed_blocks=removed, freed_bytes=freed)


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


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
