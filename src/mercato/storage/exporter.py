# SPDX-License-Identifier: AGPL-3.0-only
"""Read a UnixFS file back from any block source, verifying every block on the way.

The walk is depth-first in link order with a small prefetch window per node, so memory
stays bounded by (window x depth) blocks whatever the file size, while block reads and
hash checks overlap on a thread pool.

`walk_file_range` is the descent for a byte range: it reads the nodes on the way down
and only the leaves that hold the range. It serves both HTTP `Range` requests (the
bytes, `iter_file_range_bytes`) and trustless-gateway `entity-bytes` (the blocks, see
`mercato.storage.car.iter_file_range`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from multiformats import CID

from mercato.errors import DagFormatError, MercatoError
from mercato.fsutil import write_atomically
from mercato.storage.blockstore import wrap_write_error
from mercato.storage.cids import (
    CODEC_DAG_PB,
    CODEC_RAW,
    cid_from_bytes,
    parse_cid,
    split_sha256_cid,
)
from mercato.storage.dagpb import (
    UNIXFS_FILE,
    UNIXFS_RAW,
    PBNode,
    UnixFSData,
    decode_node,
    decode_unixfs,
)

MAX_DEPTH = 32
"""Deeper DAGs are refused; 174**32 chunks is far beyond any real file."""

PREFETCH = 8
"""Blocks fetched ahead of the one being written."""


class BlockSource(Protocol):
    """Anything that returns verified blocks by CID (the store, kubo, a gateway)."""

    def get_block(self, cid: CID) -> bytes:
        """Return the block's bytes, verified against `cid`."""
        ...


def iter_file(cid: CID | str, source: BlockSource) -> Iterator[bytes | memoryview]:
    """Stream a UnixFS file's bytes, verifying every block.

    Args:
        cid: The file's root CID.
        source: Where blocks come from; it verifies each one against its CID.

    Yields:
        Consecutive pieces of the file. A piece may be a view into a block: use it before
        asking for the next one.

    Raises:
        InvalidCIDError: If `cid` is not a CID.
        BlockNotFoundError: If a block is missing.
        BlockHashMismatchError: If a block is corrupted.
        DagFormatError: If the DAG is not a UnixFS file or its sizes disagree.
    """
    root = parse_cid(cid)
    fetch = raw_fetcher(source)
    pool = ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="unixfs-export")
    try:
        raw = bytes(root)
        yield from _emit(raw, fetch(raw), fetch, pool, 0, None)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def declared_size(cid: CID | str, source: BlockSource) -> int:
    """The file size a UnixFS file's root declares, read from the root block alone.

    `iter_file` never yields more than this: every node's sizes are checked against
    what its parent says before anything under it is read. So a caller can refuse a
    file that is too large before a byte of it is written.

    Args:
        cid: The file's root CID.
        source: Where blocks come from.

    Returns:
        The size in bytes.

    Raises:
        InvalidCIDError: If `cid` is not a CID.
        BlockNotFoundError: If the root block is missing.
        BlockHashMismatchError: If the root block is corrupted.
        DagFormatError: If the root is not a UnixFS file node.
    """
    raw = bytes(parse_cid(cid))
    block = raw_fetcher(source)(raw)
    codec = codec_of(raw)
    if codec == CODEC_RAW:
        return len(block)
    if codec != CODEC_DAG_PB:
        raise DagFormatError(f"{_name(raw)} is not a UnixFS file block.", cid=_name(raw))
    meta = _file_meta(raw, decode_links(raw, block))
    if meta.filesize is not None:
        return meta.filesize
    return (len(meta.data) if meta.data is not None else 0) + sum(meta.blocksizes)


def raw_fetcher(source: BlockSource) -> Callable[[bytes], bytes]:
    """A function that returns a verified block by binary CID (as found in links).

    Args:
        source: Where blocks come from.

    Returns:
        The source's own `get_raw` when it has one, else `get_block` on a decoded CID.
    """
    # The local store reads and verifies binary CIDs as they are; other sources
    # (gateways, kubo) get a `CID`, whose cost is small next to a network fetch.
    get_raw = getattr(source, "get_raw", None)
    if callable(get_raw):
        return cast(Callable[[bytes], bytes], get_raw)
    return lambda raw: source.get_block(cid_from_bytes(raw))


def _name(raw: bytes) -> str:
    """The printable CID, only built for error messages."""
    return str(cid_from_bytes(raw))


def codec_of(raw: bytes) -> int:
    """The multicodec of a binary CID, without building a `CID` for the usual forms.

    Raises:
        InvalidCIDError: If `raw` is not a CID.
    """
    split = split_sha256_cid(raw)
    return split[0] if split is not None else cid_from_bytes(raw).codec.code


def decode_links(raw: bytes, block: bytes) -> PBNode:
    """Decode a dag-pb node and check that each link holds a CID.

    Args:
        raw: The node's binary CID (only built into a name when something is wrong).
        block: The node's verified bytes.

    Returns:
        The node.

    Raises:
        DagFormatError: If the node is malformed or links to something that is not a CID.
    """
    try:
        node = decode_node(block)
    except DagFormatError as exc:
        raise DagFormatError(f"{exc} (block {_name(raw)})", cid=_name(raw)) from exc
    for link in node.links:
        if split_sha256_cid(link.hash) is None:  # an unusual CID: check it really is one
            try:
                cid_from_bytes(link.hash)
            except ValueError as exc:
                raise DagFormatError(
                    f"Node {_name(raw)} links to a non-CID.", cid=_name(raw)
                ) from exc
    return node


def _emit(
    raw: bytes,
    block: bytes,
    fetch: Callable[[bytes], bytes],
    pool: ThreadPoolExecutor,
    depth: int,
    expected: int | None,
) -> Generator[bytes | memoryview, None, int]:
    # `expected` is what the parent says this block holds. It is checked before the
    # block yields or descends, so a node cannot stream more than its parent declared
    # (a DAG that repeats one block thousands of times below a small claim fails at
    # once, not after writing gigabytes).
    if depth > MAX_DEPTH:
        raise DagFormatError(
            f"DAG under {_name(raw)} is deeper than {MAX_DEPTH} levels.", cid=_name(raw)
        )
    codec = codec_of(raw)
    if codec == CODEC_RAW:
        if expected is not None and len(block) != expected:
            raise _size_mismatch(raw, len(block), expected)
        if block:
            yield block
        return len(block)
    if codec != CODEC_DAG_PB:
        cid = cid_from_bytes(raw)
        raise DagFormatError(
            f"Block {cid} uses codec {cid.codec.name}; a UnixFS file has only dag-pb and raw "
            "blocks.",
            cid=str(cid),
        )
    try:
        node = decode_node(block)
        if node.data is None:
            raise DagFormatError("dag-pb node has no UnixFS data.", cid=None)
        meta = decode_unixfs(node.data)
    except DagFormatError as exc:
        # Decoded without a name on the hot path; name the block now that it failed.
        raise DagFormatError(f"{exc} (block {_name(raw)})", cid=_name(raw)) from exc
    if meta.type not in (UNIXFS_FILE, UNIXFS_RAW):
        raise DagFormatError(
            f"{_name(raw)} is a UnixFS node of type {meta.type}, not a file.", cid=_name(raw)
        )
    if len(meta.blocksizes) != len(node.links):
        raise DagFormatError(
            f"Node {_name(raw)} has {len(node.links)} links but {len(meta.blocksizes)} blocksizes.",
            cid=_name(raw),
        )
    held = (len(meta.data) if meta.data is not None else 0) + sum(meta.blocksizes)
    if meta.filesize is not None and meta.filesize != held:
        raise DagFormatError(
            f"Node {_name(raw)} says the file has {meta.filesize} bytes, but its data and "
            f"blocksizes add up to {held}.",
            cid=_name(raw),
        )
    if expected is not None and held != expected:
        raise _size_mismatch(raw, held, expected)
    total = 0
    if meta.data is not None and len(meta.data):
        total += len(meta.data)
        yield meta.data
    children = [link.hash for link in node.links]
    window: deque[Future[bytes]] = deque()
    ahead = iter(children)
    for child in ahead:
        window.append(pool.submit(fetch, child))
        if len(window) >= PREFETCH:
            break
    for index, child in enumerate(children):
        child_block = window.popleft().result()
        nxt = next(ahead, None)
        if nxt is not None:
            window.append(pool.submit(fetch, nxt))
        got = yield from _emit(child, child_block, fetch, pool, depth + 1, meta.blocksizes[index])
        if got != meta.blocksizes[index]:
            raise DagFormatError(
                f"Node {_name(raw)} says link {index} holds {meta.blocksizes[index]} bytes, "
                f"but {_name(child)} holds {got}.",
                cid=_name(raw),
            )
        total += got
    if meta.filesize is not None and meta.filesize != total:
        raise DagFormatError(
            f"Node {_name(raw)} says the file has {meta.filesize} bytes, but its blocks hold "
            f"{total}.",
            cid=_name(raw),
        )
    return total


def _size_mismatch(raw: bytes, held: int, expected: int) -> DagFormatError:
    return DagFormatError(
        f"Block {_name(raw)} holds {held} file bytes; its parent says {expected}.",
        cid=_name(raw),
    )


def export_file(cid: CID | str, source: BlockSource, dest: Path | str) -> int:
    """Write a UnixFS file to `dest` atomically (temp file, fsync, rename).

    Args:
        cid: The file's root CID.
        source: Where blocks come from (a `Blockstore`, a backend).
        dest: The path to create or replace.

    Returns:
        The number of bytes written.

    Raises:
        InvalidCIDError: If `cid` is not a CID.
        BlockNotFoundError: If a block is missing (dest is left untouched).
        BlockHashMismatchError: If a block is corrupted (dest is left untouched).
        DagFormatError: If the DAG is not a UnixFS file.
        BlockWriteError: If `dest` could not be written (StorageFullError when full).
    """
    dest = Path(dest)
    try:
        return write_atomically(dest, iter_file(cid, source))
    except MercatoError:
        # Checked first: backend errors are ConnectionErrors, i.e. OSErrors too.
        raise
    except OSError as exc:
        raise wrap_write_error(exc, dest) from exc


@dataclass(frozen=True)
class FilePiece:
    """One block met by `walk_file_range`.

    Attributes:
        cid: The block's binary CID.
        block: The verified block bytes.
        offset: File offset of the first byte of `data`.
        data: The file bytes this block carries itself (empty for most inner nodes).
    """

    cid: bytes
    block: bytes
    offset: int
    data: bytes | memoryview


def walk_file_range(
    root: bytes, source: BlockSource, first: int, last: int, *, dedupe: bool
) -> Iterator[FilePiece]:
    """The blocks of a UnixFS file that hold bytes `first..last`, depth-first in order.

    Every node on the way down is read and verified, and only the leaves the range
    touches: a range in the middle of a large file costs a few blocks, not the file.

    Args:
        root: The file's root CID (binary).
        source: Where blocks come from; it verifies each one.
        first: Offset of the first wanted byte.
        last: Offset of the last wanted byte (inclusive); below `first` for no bytes.
        dedupe: Yield each block once (a CAR needs no duplicates), or every time the
            file uses it (the bytes of a file with repeated chunks need all of them).

    Yields:
        The blocks, root first, each with the file bytes it carries and their offset.

    Raises:
        InvalidCIDError: If a link is not a CID.
        BlockNotFoundError: If a block is missing.
        BlockHashMismatchError: If a block is corrupted.
        DagFormatError: If a node is not a UnixFS file node or its sizes disagree.
    """
    fetch = raw_fetcher(source)
    seen: set[bytes] = set()
    # (binary cid, file offset of its first byte, file bytes its parent says it holds)
    stack: list[tuple[bytes, int, int | None]] = [(root, 0, None)]
    while stack:
        raw, offset, expected = stack.pop()
        if dedupe:
            if raw in seen:
                continue
            seen.add(raw)
        block = fetch(raw)
        codec = codec_of(raw)
        if codec == CODEC_RAW:
            data: bytes | memoryview = block
            sizes: list[int] = []
            links: list[bytes] = []
        elif codec == CODEC_DAG_PB:
            node = decode_links(raw, block)
            meta = _file_meta(raw, node)
            data = meta.data if meta.data is not None else b""
            sizes, links = meta.blocksizes, [link.hash for link in node.links]
            if len(sizes) != len(links):
                raise DagFormatError(
                    f"Node {_name(raw)} has {len(links)} links but {len(sizes)} blocksizes.",
                    cid=_name(raw),
                )
        else:
            raise DagFormatError(f"{_name(raw)} is not a UnixFS file block.", cid=_name(raw))
        held = len(data) + sum(sizes)
        if expected is not None and held != expected:
            raise DagFormatError(
                f"Block {_name(raw)} holds {held} file bytes; its parent says {expected}.",
                cid=_name(raw),
            )
        yield FilePiece(raw, block, offset, data)
        children: list[tuple[bytes, int, int | None]] = []
        pos = offset + len(data)
        for link, size in zip(links, sizes, strict=True):
            if pos > last:
                break
            if pos + size > first and size:
                children.append((link, pos, size))
            pos += size
        stack.extend(reversed(children))


def _file_meta(raw: bytes, node: PBNode) -> UnixFSData:
    try:
        meta = decode_unixfs(node.data) if node.data is not None else None
    except DagFormatError as exc:
        raise DagFormatError(f"{exc} (block {_name(raw)})", cid=_name(raw)) from exc
    if meta is None or meta.type not in (UNIXFS_FILE, UNIXFS_RAW):
        raise DagFormatError(f"{_name(raw)} is not a UnixFS file node.", cid=_name(raw))
    return meta


def iter_file_range_bytes(
    cid: CID, source: BlockSource, first: int, last: int
) -> Iterator[bytes | memoryview]:
    """Bytes `first..last` (inclusive) of a UnixFS file, reading only the blocks that
    hold them, each verified.

    Args:
        cid: The file's root CID.
        source: Where blocks come from; it verifies each one.
        first: Offset of the first byte (0-based).
        last: Offset of the last byte, inclusive; clamp it to the file size first.

    Yields:
        Consecutive pieces of the range.

    Raises:
        BlockNotFoundError: If a block is missing.
        BlockHashMismatchError: If a block is corrupted.
        DagFormatError: If the DAG is not a UnixFS file or its sizes disagree.
    """
    for piece in walk_file_range(bytes(cid), source, first, last, dedupe=False):
        start = max(first - piece.offset, 0)
        end = min(last + 1 - piece.offset, len(piece.data))
        if end > start:
            yield piece.data[start:end]
