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
  be reused.* `writing()` (imports hold it from their first block to their pin) first
  makes an intent file durable in journal/, holding an flock on it, and removes it once
  the import has flushed. An intent whose flock can be taken belongs to a writer that
  died (killed, or the machine lost power). `recover` re-hashes only the block files
  modified since the oldest such intent started (minus `RECOVER_SLACK_NS` for clock
  granularity), quarantines the damaged ones and removes those intents. It runs when a
  node starts (`mercato node up`), on the first `writing()` of each `Blockstore`
  (before anything can deduplicate against a damaged block), and on demand
  (`mercato store recover`). With no stale intent it costs one listing of an empty
  directory. A wall clock stepped back by more than the slack during the import could
  hide a block from it; `verify` (`mercato store verify`) checks everything.
- Blocks are written with O_DIRECT where the file system allows it: the bytes go to
  the disk once instead of filling the page cache and being flushed again at the end,
  which is what makes the final `flush` cheap. Other file systems use ordinary writes.
- `gc` deletes every block not reachable from a pin. Imports hold the lock shared from
  their first block until their root is pinned, so gc never collects a DAG mid-import.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from multiformats import CID

from mercato.errors import (
    BlockHashMismatchError,
    BlockNotFoundError,
    BlockWriteError,
    DagFormatError,
    StorageFullError,
)
from mercato.fsutil import fsync_directory
from mercato.storage import dagpb
from mercato.storage.cids import (
    CODEC_DAG_PB,
    MAX_BLOCK_SIZE,
    BlockKey,
    block_key,
    check_block_size,
    cid_from_bytes,
    key_from_multihash,
    split_sha256_cid,
    verify_block,
)

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}

# O_DIRECT wants buffers, lengths and offsets aligned to the device's logical block
# size; 4096 covers every common device. Importer blocks are 256 KiB plus a few bytes of
# framing, so one aligned buffer per writing thread holds any of them.
_ALIGN = 4096
_DIRECT_BUFFER = 256 * 1024 + _ALIGN
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):  # not Linux/glibc: fall back to os.sync
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return cast(Callable[[int], int], func)


_SYNCFS = _load_syncfs()

RECOVER_SLACK_NS = 2 * 10**9
"""How far before an intent's start time `recover` looks: file times come from a coarse
kernel clock that can lag `time.time_ns()` by a tick, and clocks get small corrections."""

_INTENT_SUFFIX = ".intent"

ProgressCallback = Callable[[int, int], None]
"""Called with (blocks checked so far, blocks to check) as `verify` goes."""


@dataclass(frozen=True)
class VerifyResult:
    """What `Blockstore.verify` found.

    Attributes:
        checked: Number of blocks re-hashed.
        corrupted: Keys (base32 multihashes) of the blocks that did not match; they were
            moved to quarantine/ when `repair` was set.
    """

    checked: int
    corrupted: list[str]


@dataclass(frozen=True)
class RecoverResult:
    """What `Blockstore.recover` did.

    Attributes:
        intents: Imports found cut off (stale intents in journal/), now resolved.
        checked: Number of blocks re-hashed (those written since the oldest of them).
        corrupted: Keys (base32 multihashes) of the damaged blocks, moved to quarantine/.
    """

    intents: int
    checked: int
    corrupted: list[str]


@dataclass(frozen=True)
class _Intent:
    path: Path
    fd: int
    start_ns: int


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
        self._direct = bool(direct_io and _O_DIRECT)
        self._buffers = threading.local()
        # Shard directories known to exist (at most 1024): saves a mkdir per block.
        self._shards: set[str] = set()
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
            intent = self._record_intent()
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
                if durable:
                    intent.path.unlink(missing_ok=True)
                os.close(intent.fd)  # releases the flock

    def _record_intent(self) -> _Intent:
        name = secrets.token_hex(8)
        tmp = self.tmp_dir / f"intent.{name}.tmp"
        final = self.journal_dir / f"{name}{_INTENT_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise wrap_write_error(exc, final) from exc
        try:
            # Locked before it appears in journal/, so `recover` never takes a live
            # import for a dead one; durable before the first block is written.
            fcntl.flock(fd, fcntl.LOCK_EX)
            start = time.time_ns()
            os.write(fd, f"{start} {os.getpid()}\n".encode())
            os.fsync(fd)
            os.rename(tmp, final)
            fsync_directory(self.journal_dir)
        except OSError as exc:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise wrap_write_error(exc, final) from exc
        return _Intent(final, fd, start)

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
        try:
            if not (self._direct and self._write_direct(tmp, parts, size)):
                self._write_buffered(tmp, parts)
            if final.parent.name not in self._shards:
                final.parent.mkdir(exist_ok=True)
                self._shards.add(final.parent.name)
            # No fsync here: see the module docstring; `flush` makes the import durable.
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
        return size

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
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_DIRECT, 0o644)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct = False  # e.g. tmpfs: remember, and use the page cache
                return False
            try:
                try:
                    _write_all(fd, [view[:aligned]])
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._direct = False
                    os.close(fd)
                    fd = -1
                    tmp.unlink(missing_ok=True)
                    return False
                if aligned < size:
                    # The unaligned tail goes through the page cache.
                    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)
                    _write_all(fd, [view[aligned:size]])
            finally:
                if fd >= 0:
                    os.close(fd)
        finally:
            view.release()
        return True

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
            with open(path, "rb", buffering=0) as fh:
                inode = os.fstat(fh.fileno()).st_ino
                data = fh.read()
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
            with open(path, "rb", buffering=0) as fh:
                inode = os.fstat(fh.fileno()).st_ino
                data = fh.read()
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

    def _block_files(self) -> Iterator[os.DirEntry[str]]:
        for shard in os.scandir(self.blocks_dir):
            if shard.is_dir():
                yield from os.scandir(shard.path)

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
        claim: AbstractContextManager[list[_Intent]] = (
            self._claim_stale_intents() if repair else nullcontext([])
        )
        with claim as stale:
            paths = [Path(entry.path) for entry in self._block_files()]
            checked, corrupted = self._rehash(paths, repair, workers, progress)
            self._drop_intents(stale)
        return VerifyResult(checked=checked, corrupted=corrupted)

    def recover(self, *, workers: int | None = None) -> RecoverResult:
        """Re-check what imports cut off by an unclean stop wrote (see the docstring).

        Only block files modified since the oldest stale intent started are re-hashed;
        damaged ones go to quarantine/. Intents of live imports are left alone.

        Args:
            workers: Hashing threads (default: the CPU count).

        Returns:
            How many cut-off imports were found, blocks checked, and the damaged keys.

        Raises:
            BlockWriteError: If a stale intent could not be removed.
        """
        with self._claim_stale_intents() as stale:
            if not stale:
                self._recovered = True
                return RecoverResult(intents=0, checked=0, corrupted=[])
            since = min(intent.start_ns for intent in stale) - RECOVER_SLACK_NS
            paths = []
            for entry in self._block_files():
                try:
                    if entry.stat().st_mtime_ns >= since:
                        paths.append(Path(entry.path))
                except FileNotFoundError:
                    continue  # removed meanwhile (gc)
            checked, corrupted = self._rehash(paths, True, workers, None)
            self._drop_intents(stale)
        self._recovered = True
        return RecoverResult(intents=len(stale), checked=checked, corrupted=corrupted)

    def _recover_once(self) -> None:
        if self._recovered:
            return
        with self._recover_lock:
            if not self._recovered:
                self.recover()

    @contextmanager
    def _claim_stale_intents(self) -> Iterator[list[_Intent]]:
        """Lock the intents whose writers died; held until the caller has checked."""
        claimed: list[_Intent] = []
        try:
            for entry in os.scandir(self.journal_dir):
                if not entry.name.endswith(_INTENT_SUFFIX):
                    continue
                intent = _claim_intent(Path(entry.path))
                if intent is not None:
                    claimed.append(intent)
            yield claimed
        finally:
            for intent in claimed:
                os.close(intent.fd)

    def _drop_intents(self, intents: Iterable[_Intent]) -> None:
        dropped = False
        for intent in intents:
            try:
                intent.path.unlink(missing_ok=True)
            except OSError as exc:
                raise wrap_write_error(exc, intent.path) from exc
            dropped = True
        if dropped:
            fsync_directory(self.journal_dir)

    def _rehash(
        self,
        paths: list[Path],
        repair: bool,
        workers: int | None,
        progress: ProgressCallback | None,
    ) -> tuple[int, list[str]]:
        """Re-hash block files; returns (checked, keys of the damaged ones)."""

        def check(path: Path) -> str | None:
            try:
                mh = base64.b32decode(path.name.upper() + "=" * (-len(path.name) % 8))
            except ValueError:
                return path.name  # not a block name at all
            if mh[:2] != b"\x12\x20":
                return None  # only sha2-256 blocks are written here; others pass as is
            try:
                with open(path, "rb", buffering=0) as fh:
                    inode = os.fstat(fh.fileno()).st_ino
                    data = fh.read()
            except FileNotFoundError:
                return None  # removed meanwhile (gc, another verify)
            if hashlib.sha256(data).digest() == mh[2:]:
                return None
            if repair:
                self._quarantine(path, inode)
            return path.name

        checked = 0
        corrupted: list[str] = []
        if not paths:
            return 0, corrupted
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            for bad in pool.map(check, paths):
                checked += 1
                if bad is not None:
                    corrupted.append(bad)
                if progress is not None:
                    progress(checked, len(paths))
        return checked, corrupted

    # --- pins and gc ------------------------------------------------------------------

    def _pin_path(self, cid: CID) -> Path:
        v1 = cid.set(version=1, base="base32") if cid.version == 0 else cid
        return self.pins_dir / str(v1.set(base="base32"))

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
            fsync_directory(self.pins_dir)
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
            for entry in self.quarantine_dir.iterdir():
                freed += entry.stat().st_size
                entry.unlink(missing_ok=True)
            return GCResult(removed_blocks=removed, freed_bytes=freed)


def _claim_intent(path: Path) -> _Intent | None:
    """Lock an intent file if its writer is gone; None while it lives (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # its import just finished
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A finished writer unlinks, then unlocks: the lock alone may be on a file that
        # is no longer in journal/.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
        text = os.pread(fd, 64, 0)
        mtime = os.fstat(fd).st_mtime_ns
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    try:
        start = int(text.split()[0])
    except (ValueError, IndexError):
        start = 0  # unreadable: assume the worst and check every block
    # The file's own time comes from the same clock as the blocks' times.
    return _Intent(path, fd, min(start, mtime))


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
