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
    │                                    once completely written
    ├── quarantine/                      blocks found damaged, moved aside; gc empties it
    ├── journal/
    │   └── 3f9c0a...e1.intent           an import in progress: its start time (ns); its
    │                                    writer holds an flock on it until it is durable
    └── lock                             flock: writers hold it shared, gc exclusive

Guarantees and why they hold:

- *A kill never leaves a partial or wrong block under a key.* A file under blocks/ is
  only ever created by `rename` of a temp file whose every byte was already written.
  A killed process stops before or after the rename, never in the middle of one, and
  the page cache (which holds the written bytes) survives the process.
- *A power cut never leaves a wrong block that goes unnoticed.* Blocks are not fsynced
  one by one: that made imports 10x slower than hashing. Instead an import makes
  everything it wrote durable once, at the end (`flush`: one `syncfs` of the store's
  file system, or `sync` where there is no `syncfs`), *before* it records its pin or
  returns a CID. So the blocks an import wrote survive a power cut after it reported
  success. A power cut during an import can leave a block file with missing or stale
  bytes under its key (the rename reached the journal, the data did not); that import
  never reported success and its root is not pinned, but a later import of the same
  bytes may find the file and keep it. Such a file is caught because every read
  re-hashes the block: `get` raises `BlockHashMismatchError` naming the CID and moves
  the file to quarantine/; `put`/import of the same bytes rewrites a block whose size
  is wrong (the usual damage: an empty file) and any block that was quarantined; and
  `verify` re-hashes the whole store.
- *After an unclean stop, what an interrupted import wrote is re-checked before it can
  be reused*: see `mercato.storage.journal` for the intents and `recover`.
- Blocks are written with O_DIRECT where the file system allows it: the bytes go to
  the disk once instead of filling the page cache and being flushed again at the end,
  which is what makes the final `flush` cheap. Other file systems use ordinary writes.
- `gc` deletes every block not reachable from a pin. Imports hold the lock shared from
  their first block until their root is pinned, so gc never collects a DAG mid-import.

The pieces live beside this class: `blockio` (writing block files), `journal` (intents
and recovery), `verification` (re-hashing) and `pinning` (pins and gc).
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import hashlib
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from multiformats import CID

from mercato.errors import BlockHashMismatchError, BlockNotFoundError, BlockWriteError
from mercato.storage import journal, pinning, verification
from mercato.storage.blockio import O_DIRECT as _O_DIRECT
from mercato.storage.blockio import BlockFileWriter, load_syncfs, read_with_inode, wrap_write_error
from mercato.storage.cids import (
    MAX_BLOCK_SIZE,
    BlockKey,
    block_key,
    check_block_size,
    cid_from_bytes,
    key_from_multihash,
    split_sha256_cid,
    verify_block,
)
from mercato.storage.journal import RECOVER_SLACK_NS, Intent, RecoverResult
from mercato.storage.pinning import GCResult
from mercato.storage.verification import ProgressCallback, VerifyResult

__all__ = [
    "RECOVER_SLACK_NS",
    "Blockstore",
    "GCResult",
    "ProgressCallback",
    "RecoverResult",
    "VerifyResult",
    "wrap_write_error",
]

# Looked up here at each `flush`, so that it can be stood in for (tests fake a failure).
_SYNCFS = load_syncfs()


class Blockstore:
    """Content-addressed block storage in a directory (see the module docstring).

    Thread-safe; several processes may share one directory.
    """

    def __init__(self, root: Path | str, *, direct_io: bool = True) -> None:
        """Open (and create if needed) a blockstore.

        Args:
            root: The data directory that holds the store.
            direct_io: Write blocks with O_DIRECT when the file system supports it
                (see the module docstring); False always uses the page cache.
        """
        self.root = Path(root)
        self.blocks_dir = self.root / "blocks"
        self.pins_dir = self.root / "pins"
        self.tmp_dir = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"
        self.journal_dir = self.root / "journal"
        for directory in (
            self.blocks_dir,
            self.pins_dir,
            self.tmp_dir,
            self.quarantine_dir,
            self.journal_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        self._lock_path.touch(exist_ok=True)
        self._writer = BlockFileWriter(bool(direct_io and _O_DIRECT))
        # `recover` runs once per instance before its first import (see the docstring).
        self._recovered = False
        self._recover_lock = threading.Lock()

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
        """Hold off garbage collection while a DAG is written and then pinned.

        Also records the import in journal/ until it is durable, so that `recover` can
        re-check what it wrote if the process or the machine dies first. The caller
        makes its blocks durable (`pin` or `flush`) before leaving the block; when it
        leaves with an error, the blocks are flushed here, and if even that fails the
        intent stays for `recover`.

        Raises:
            BlockWriteError: If the intent could not be recorded (nothing was written).
        """
        self._recover_once()
        with self._flock(fcntl.LOCK_SH):
            intent = journal.record_intent(self.journal_dir, self.tmp_dir)
            durable = False
            try:
                yield
                durable = True
            finally:
                if not durable:
                    try:
                        self.flush()
                        durable = True
                    except BlockWriteError:
                        pass  # leave the intent: a later `recover` checks these blocks
                intent.release(remove=durable)

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
        try:
            stored = final.stat().st_size
        except FileNotFoundError:
            pass
        else:
            if stored == size:
                return 0
            # A block of the wrong size under this key can only be what a power cut
            # left behind: move it aside and write the right bytes.
            self._quarantine(final, None)
        tmp = self.tmp_dir / f"{key}.{secrets.token_hex(6)}.tmp"
        self._writer.write_block(tmp, final, parts, size)
        return size

    def flush(self) -> None:
        """Make every block written so far durable (data, file names and directories).

        One `syncfs` of the store's file system (Linux), else `os.sync`: cheaper than an
        fsync per block file and per shard directory, and it also covers blocks that
        another import wrote and this one deduplicated.

        Raises:
            BlockWriteError: If the file system reported a write error.
        """
        if _SYNCFS is None:
            os.sync()
            return
        fd = os.open(self.blocks_dir, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                code = ctypes.get_errno()
                raise wrap_write_error(OSError(code, os.strerror(code)), self.blocks_dir)
        finally:
            os.close(fd)

    def _quarantine(self, path: Path, inode: int | None) -> None:
        """Move a damaged block file aside (only if it is still the file that was read)."""
        try:
            if inode is not None and path.stat().st_ino != inode:
                return  # already replaced by a fresh write
            os.rename(path, self.quarantine_dir / f"{path.name}.{secrets.token_hex(4)}")
        except FileNotFoundError:
            pass

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
            BlockHashMismatchError: If the stored bytes are corrupted; the file is moved
                to quarantine/, so re-importing or re-fetching the data repairs it.
        """
        path = self._path(block_key(cid))
        try:
            inode, data = read_with_inode(path)
        except FileNotFoundError:
            raise BlockNotFoundError(
                f"Block {cid} is not in the local store at {self.root}. "
                "Import the file or fetch it from a gateway first.",
                cid=str(cid),
            ) from None
        try:
            verify_block(cid, data, str(path))
        except BlockHashMismatchError:
            # Damaged on disk (a power cut mid-import, bit rot): move it aside so that
            # `has` says it is missing and the next import or fetch writes it again.
            self._quarantine(path, inode)
            raise
        return data

    def get_block(self, cid: CID) -> bytes:
        """Same as `get`; the name the `BlockSource` protocol uses."""
        return self.get(cid)

    def get_raw(self, cid_bytes: bytes) -> bytes:
        """`get` for a binary CID, as found in dag-pb links (the exporter's hot path).

        Args:
            cid_bytes: The block's CID in binary form.

        Returns:
            The verified block bytes.

        Raises:
            InvalidCIDError: If `cid_bytes` is not a CID.
            BlockNotFoundError: If the store has no such block.
            BlockHashMismatchError: If the stored bytes are corrupted (quarantined).
        """
        split = split_sha256_cid(cid_bytes)
        if split is None:
            return self.get(cid_from_bytes(cid_bytes))
        mh = split[1]
        path = self._path(key_from_multihash(mh))
        try:
            inode, data = read_with_inode(path)
        except FileNotFoundError:
            return self.get(cid_from_bytes(cid_bytes))  # raises with the CID's name
        if len(data) > MAX_BLOCK_SIZE or hashlib.sha256(data).digest() != mh[2:]:
            self._quarantine(path, inode)
            verify_block(cid_from_bytes(cid_bytes), data, str(path))  # raises, naming it
        return data

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

    def verify(
        self,
        *,
        repair: bool = True,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> VerifyResult:
        """Re-hash every stored block (e.g. after a disk error, or to be thorough).

        With `repair`, a full check also settles any import cut off by an unclean stop
        (its stale intent is removed, as `recover` would).

        Args:
            repair: Move damaged blocks to quarantine/, so that re-importing or
                re-fetching the data writes them again.
            workers: Hashing threads (default: the CPU count).
            progress: Called with (checked, total) after each block.

        Returns:
            How many blocks were checked and the keys of the damaged ones.
        """
        claim: AbstractContextManager[list[Intent]] = (
            journal.claim_stale_intents(self.journal_dir) if repair else nullcontext([])
        )
        with claim as stale:
            paths = [Path(e.path) for e in verification.block_files(self.blocks_dir)]
            quarantine = self._quarantine if repair else None
            checked, corrupted = verification.rehash(paths, quarantine, workers, progress)
            journal.drop_intents(self.journal_dir, stale)
        return VerifyResult(checked=checked, corrupted=corrupted)

    def recover(self, *, workers: int | None = None) -> RecoverResult:
        """Re-check what imports cut off by an unclean stop wrote (see the docstring).

        Only block files modified since the oldest stale intent started are re-hashed;
        damaged ones go to quarantine/. Intents of live imports are left alone. The
        partial files dead writers left in tmp/ are deleted when no import is live (the
        store's lock can be taken exclusively without waiting); otherwise `tmp_busy`.

        Args:
            workers: Hashing threads (default: the CPU count).

        Returns:
            How many cut-off imports were found, blocks checked, the damaged keys and
            the partial files removed.

        Raises:
            BlockWriteError: If a stale intent or a partial file could not be removed.
        """
        result = journal.recover(self.journal_dir, self.blocks_dir, self._quarantine, workers)
        fd = os.open(self._lock_path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                result = dataclasses.replace(result, tmp_busy=True)
            else:
                removed = journal.remove_partial_files(self.tmp_dir)
                result = dataclasses.replace(result, partial_files=removed)
        finally:
            os.close(fd)  # releases the flock
        self._recovered = True
        return result

    def _recover_once(self) -> None:
        if self._recovered:
            return
        with self._recover_lock:
            if not self._recovered:
                self.recover()

    # --- pins and gc ------------------------------------------------------------------

    def pin(self, cid: CID, *, check_complete: bool = True) -> None:
        """Pin a DAG recursively so `gc` keeps all of it.

        Everything written so far is made durable (`flush`) before the pin is written,
        so a pin never survives a power cut that its blocks did not.

        Args:
            cid: The DAG's root.
            check_complete: Walk the DAG first and refuse to pin it if a block is
                missing. The importer passes False: it has just stored every block,
                under the shared lock that keeps gc out, and the walk would open every
                leaf of the file again.

        Raises:
            BlockNotFoundError: If a block of the DAG is missing (nothing is pinned).
            BlockHashMismatchError: If an inner node is corrupted.
            BlockWriteError: If the pin could not be written.
        """
        if check_complete:
            pinning.mark(cid, set(), self._path, self.get)
        self.flush()
        pinning.write_pin(self.pins_dir, self.tmp_dir, cid)

    def unpin(self, cid: CID) -> bool:
        """Remove a pin; its blocks go at the next `gc` unless another pin holds them.

        Returns:
            True if the CID was pinned.
        """
        try:
            pinning.pin_path(self.pins_dir, cid).unlink()
        except FileNotFoundError:
            return False
        return True

    def is_pinned(self, cid: CID) -> bool:
        """Tell whether `cid` is a pinned root."""
        return pinning.pin_path(self.pins_dir, cid).exists()

    def pins(self) -> list[CID]:
        """List pinned roots, as they were given to `pin`."""
        return pinning.read_pins(self.pins_dir)

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
                pinning.mark(cid, live, self._path, self.get)
            return pinning.sweep(self.blocks_dir, self.tmp_dir, self.quarantine_dir, live)
