# SPDX-License-Identifier: AGPL-3.0-only
"""UnixFS importer whose CIDs match kubo's `ipfs add` byte for byte.

kubo's import, reproduced here for either CID profile (`mercato.storage.profiles`:
unixfs-v0-2015, kubo's default, and unixfs-v1-2025):

- fixed-size chunks (256 KiB or 1 MiB; the last one shorter; an empty file is one empty
  chunk);
- dag-pb leaves (unixfs-v0-2015) hold `Data{Type: File, Data: chunk, filesize:
  len(chunk)}`; raw leaves (unixfs-v1-2025, or `--cid-version=1`) are the chunk bytes
  themselves under a CIDv1 `raw` CID, and the dag-pb nodes above them get base32 CIDv1;
- balanced layout, at most 174 (or 1,024) links per node: leaves are grouped that many at
  a time into parents, parents into grandparents, until one node is left. A parent holds
  `Data{Type: File, filesize, blocksizes: [file bytes under each link]}` and links with an
  empty name and `Tsize` = the child's block size plus its own links' Tsize;
- a file of one chunk is that chunk's leaf itself (no parent): under unixfs-v1-2025 a
  file up to 1 MiB is a single raw block.

The importer streams: it holds at most a few chunks plus one pending link list per tree
level, whatever the file size. Leaves are hashed (and written) on a thread pool, since
hashlib and file writes release the GIL; they go to the pool a few at a time, because a
hand-off per chunk (a future, a lock, a thread wake-up) costs CPU comparable to
writing the block. A chunk that spans several input pieces (an encryption stream's
messages are not chunk-sized) is hashed and written piece by piece, never joined.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from multiformats import CID

from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import CODEC_DAG_PB, CODEC_RAW, cid_from_bytes, sha256_cid_bytes
from mercato.storage.dagpb import (
    UNIXFS_FILE,
    PBLink,
    UnixFSData,
    encode_node,
    encode_unixfs,
    encode_varint,
)
from mercato.storage.profiles import CidProfile, profile_for

CHUNK_SIZE = 262_144
"""kubo's default chunker, `size-262144` (unixfs-v0-2015)."""

MAX_LINKS = 174
"""kubo's default balanced layout puts at most this many links in one node."""

_BYTES_PER_TASK = 1 << 20
"""Chunk bytes handed to a pool thread at once (1 MiB): fewer hand-offs, still
fine-grained enough to spread a file over every worker."""

_Chunk = Sequence[bytes | memoryview]
"""One chunk's bytes, in the pieces they arrived in."""

ImportSource = Path | str | BinaryIO | Iterable[bytes]
"""A file path, a binary file object, or any iterable of byte strings."""


@dataclass(frozen=True)
class ImportResult:
    """The outcome of an import.

    Attributes:
        cid: The root CID, as `ipfs add` prints it.
        size: The file's size in bytes (a directory's: all its files' bytes).
        dag_size: Bytes of every block in the DAG, counted as dag-pb `Tsize` counts them
            (what a parent's link to this root says).
    """

    cid: CID
    size: int
    dag_size: int = 0


@dataclass(frozen=True)
class _Link:
    cid: bytes  # binary CID
    tsize: int  # block bytes of the whole sub-DAG (dag-pb Tsize)
    filesize: int  # file bytes under it (UnixFS blocksizes entry)


class UnixFSImporter:
    """Incremental importer: feed bytes with `update`, get the root from `finish`.

    Use it directly to import a stream that is produced on the fly (an encryption
    stream, an HTTP body); `import_file` wraps it for paths, file objects and iterables.
    Not thread-safe: feed it from one thread.
    """

    def __init__(
        self,
        store: Blockstore | None = None,
        *,
        cid_version: int | None = None,
        profile: CidProfile | str | None = None,
        workers: int | None = None,
    ) -> None:
        """Start an import.

        Args:
            store: Where to write blocks; None only computes the CID (`--only-hash`).
            cid_version: 0 (kubo's default) or 1 (`ipfs add --cid-version=1`: raw
                leaves, base32, the default's chunks and width).
            profile: A CID profile or its name ("unixfs-v0-2015", the default, or
                "unixfs-v1-2025"); see `mercato.storage.profiles`.
            workers: Threads hashing and writing leaves; by default the CPU count, or at
                least 4 when writing, so that disk writes overlap hashing.

        Raises:
            ConfigError: If `cid_version` is not 0 or 1, the profile is unknown, or the
                two disagree.
        """
        self.profile = profile_for(profile, cid_version)
        self._chunk = self.profile.chunk_size
        self._store = store
        self._version = self.profile.cid_version
        self._leaves_per_task = max(1, _BYTES_PER_TASK // self._chunk)
        cpus = os.cpu_count() or 2
        count = workers or (max(4, cpus) if store is not None else cpus)
        # Started with the first batch: a file smaller than a batch (most files of a
        # folder) is hashed on the caller's thread and starts no thread at all.
        self._workers = count
        self._pool: ThreadPoolExecutor | None = None
        # Tasks in flight, each of about _BYTES_PER_TASK: bounds memory whatever the
        # file size.
        self._window = count + 2
        self._pending: deque[Future[list[_Link]]] = deque()
        self._levels: list[list[_Link]] = [[]]
        # Pieces of the next chunk, held by reference (never joined: the leaf hashes and
        # writes them in place), and full chunks waiting to go to the pool together.
        self._parts: list[bytes | memoryview] = []
        self._batch: list[_Chunk] = []
        self._held = 0
        self._size = 0
        self._chunks = 0
        self._closed = False

    def __enter__(self) -> UnixFSImporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop worker threads; pending work is cancelled. Safe to call twice."""
        if not self._closed:
            self._closed = True
            for future in self._pending:
                future.cancel()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            self._pending.clear()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes of the file.

        Args:
            data: Any amount of bytes.

        Raises:
            BlockWriteError: If writing a block failed (StorageFullError when full).
        """
        if not isinstance(data, bytes):
            # Only immutable bytes are held by reference: a caller may reuse its buffer.
            data = bytes(data)
        if not self._held and len(data) == self._chunk:
            # Fast path for readers that already deliver whole chunks.
            self._submit((data,))
            return
        view = memoryview(data)
        while self._held + len(view) >= self._chunk:
            need = self._chunk - self._held
            self._parts.append(view[:need])
            view = view[need:]
            self._submit(self._parts)
            self._parts = []
            self._held = 0
        if len(view):
            self._parts.append(view)
            self._held += len(view)

    def finish(self) -> ImportResult:
        """Flush the last chunk and build the tree up to the root.

        Returns:
            The root CID and file size.

        Raises:
            BlockWriteError: If writing a block failed (StorageFullError when full).
        """
        cid, tsize = self.finish_raw()
        return ImportResult(cid=cid_from_bytes(cid), size=self._size, dag_size=tsize)

    def finish_raw(self) -> tuple[bytes, int]:
        """`finish` for callers that link the root themselves (directory import): the
        binary CID and the DAG's size, without the cost of building a `CID`.

        Returns:
            (binary root CID, DAG size in block bytes); `size` holds the file size.

        Raises:
            BlockWriteError: If writing a block failed (StorageFullError when full).
        """
        try:
            if self._held or self._chunks == 0:
                self._submit(self._parts)
                self._parts = []
                self._held = 0
            if self._pending or self._pool is not None:
                self._send_batch()
            else:
                for link in self._leaves(self._batch):
                    self._add(0, link)
                self._batch = []
            while self._pending:
                self._collect_one()
            root = self._reduce()
        finally:
            self.close()
        return root.cid, root.tsize

    @property
    def size(self) -> int:
        """File bytes fed so far."""
        return self._size

    # --- internals --------------------------------------------------------------------

    def _submit(self, chunk: _Chunk) -> None:
        self._size += sum(len(part) for part in chunk)
        self._chunks += 1
        self._batch.append(chunk)
        if len(self._batch) == self._leaves_per_task:
            self._send_batch()

    def _send_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._workers, thread_name_prefix="unixfs-import"
            )
        self._pending.append(self._pool.submit(self._leaves, batch))
        # Bounded look-ahead keeps memory constant: wait for the oldest task.
        while len(self._pending) > self._window:
            self._collect_one()

    def _collect_one(self) -> None:
        for link in self._pending.popleft().result():
            self._add(0, link)

    def _leaves(self, batch: list[_Chunk]) -> list[_Link]:
        return [self._leaf(chunk) for chunk in batch]

    def _add(self, level: int, link: _Link) -> None:
        if level == len(self._levels):
            self._levels.append([])
        links = self._levels[level]
        links.append(link)
        if len(links) == self.profile.max_links:
            self._levels[level] = []
            self._add(level + 1, self._parent(links))

    def _reduce(self) -> _Link:
        # Same result as kubo's balanced builder: each level's leftovers become one more
        # node on the level above, until a single node remains at the top.
        level = 0
        while True:
            links = self._levels[level]
            higher = any(self._levels[level + 1 :])
            if not higher and len(links) == 1:
                return links[0]
            if links:
                self._levels[level] = []
                self._add(level + 1, self._parent(links))
            level += 1

    def _leaf(self, chunk: _Chunk) -> _Link:
        n = sum(len(part) for part in chunk)
        if self.profile.raw_leaves:
            hasher = hashlib.sha256()
            for part in chunk:
                hasher.update(part)
            digest = hasher.digest()
            if self._store is not None:
                self._store.put_hashed(b"\x12\x20" + digest, chunk)
            return _Link(sha256_cid_bytes(1, CODEC_RAW, digest), n, n)
        # dag-pb leaf: PBNode{Data: UnixFS{Type: File, Data: chunk, filesize: n}}, hashed
        # and written as framing + the chunk's pieces, so the chunk is never copied.
        inner_head = b"\x08\x02" + (b"\x12" + encode_varint(n) if n else b"")
        tail = b"\x18" + encode_varint(n)
        head = b"\x0a" + encode_varint(len(inner_head) + n + len(tail)) + inner_head
        hasher = hashlib.sha256(head)
        for part in chunk:
            hasher.update(part)
        hasher.update(tail)
        digest = hasher.digest()
        if self._store is not None:
            self._store.put_hashed(b"\x12\x20" + digest, [head, *chunk, tail])
        cid = sha256_cid_bytes(self._version, CODEC_DAG_PB, digest)
        return _Link(cid, len(head) + n + len(tail), n)

    def _parent(self, links: list[_Link]) -> _Link:
        filesize = sum(link.filesize for link in links)
        data = encode_unixfs(
            UnixFSData(
                type=UNIXFS_FILE, filesize=filesize, blocksizes=[link.filesize for link in links]
            )
        )
        block = encode_node(
            [PBLink(hash=link.cid, name="", tsize=link.tsize) for link in links], data
        )
        digest = hashlib.sha256(block).digest()
        if self._store is not None:
            self._store.put_hashed(b"\x12\x20" + digest, [block])
        cid = sha256_cid_bytes(self._version, CODEC_DAG_PB, digest)
        return _Link(cid, len(block) + sum(link.tsize for link in links), filesize)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if not data or len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _feed(importer: UnixFSImporter, source: ImportSource) -> None:
    if isinstance(source, str | Path):
        with open(source, "rb", buffering=0) as fh:
            _feed(importer, fh)
        return
    read = getattr(source, "read", None)
    if read is not None:
        stream: BinaryIO = source  # type: ignore[assignment]
        while chunk := _read_exact(stream, importer.profile.chunk_size):
            importer.update(chunk)
        return
    for piece in source:
        importer.update(piece)


def import_file(
    source: ImportSource,
    store: Blockstore,
    *,
    cid_version: int | None = None,
    profile: CidProfile | str | None = None,
    pin: bool = True,
    workers: int | None = None,
) -> ImportResult:
    """Import a file into the blockstore as UnixFS, like `ipfs add`.

    When it returns, every block is durable on disk (one sync for the whole import, see
    the blockstore docstring) and, with `pin`, so is the pin.

    Args:
        source: A path, a binary file object, or an iterable of bytes (e.g. an
            encryption stream: nothing is spooled to a temp file).
        store: The blockstore to write to.
        cid_version: 0 (kubo's default) or 1 (`ipfs add --cid-version=1`).
        profile: A CID profile or its name (default "unixfs-v0-2015").
        pin: Pin the root so `gc` keeps the file (as `ipfs add` does).
        workers: Hashing/writing threads (see `UnixFSImporter`).

    Returns:
        The root CID and file size.

    Raises:
        ConfigError: If `cid_version` is not 0 or 1, or the profile is unknown or
            disagrees with it.
        FileNotFoundError: If `source` is a path that does not exist.
        BlockWriteError: If a block could not be written (StorageFullError when the
            disk is full); the store keeps no partial block and the root is not pinned.
    """
    with (
        store.writing(),
        UnixFSImporter(store, cid_version=cid_version, profile=profile, workers=workers) as imp,
    ):
        _feed(imp, source)
        result = imp.finish()
        if pin:
            # Makes the blocks durable before the pin (one sync); every block was just
            # stored under the shared lock, so the DAG is known to be complete.
            store.pin(result.cid, check_complete=False)
        else:
            store.flush()
    return result


def only_hash(
    source: ImportSource,
    *,
    cid_version: int | None = None,
    profile: CidProfile | str | None = None,
) -> CID:
    """Compute the CID `ipfs add --only-hash -Q` prints, storing nothing.

    Args:
        source: A path, a binary file object, or an iterable of bytes.
        cid_version: 0 or 1 (see `UnixFSImporter`).
        profile: A CID profile or its name (default "unixfs-v0-2015").

    Returns:
        The root CID.

    Raises:
        ConfigError: If `cid_version` is not 0 or 1, or the profile is unknown or
            disagrees with it.
        FileNotFoundError: If `source` is a path that does not exist.
    """
    with UnixFSImporter(None, cid_version=cid_version, profile=profile) as imp:
        _feed(imp, source)
        return imp.finish().cid
