# SPDX-License-Identifier: AGPL-3.0-only
"""CAR v1 (Content Addressable aRchive) export and import.

A CAR v1 stream is::

    varint(len(header)) | header: dag-cbor {"roots": [CID, ...], "version": 1}
    varint(len(cid) + len(block)) | cid (binary) | block       -- repeated to the end

Export writes a DAG depth-first in link order without duplicates, the order kubo's
`ipfs dag export` and trustless gateways use, so `ipfs dag import` accepts the file.
Import verifies every block against its CID before it reaches the store, refuses
blocks above the size limit and reports a stream cut short as `CarTruncatedError`.

A CAR fetched from someone else is imported for one root (`import_car(..., root=X)`):
a block is written only when an earlier block of that DAG links to it (the root
first), so a stream cannot slip other blocks into the store; every CID must be
sha2-256 dag-pb or raw (the only kind a UnixFS file made by kubo's defaults has); and
the blocks may hold little more than the file size the root declares, so a DAG cannot
make the node store much more than the file it describes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import dag_cbor
from dag_cbor.encoding.err import CBORError
from multiformats import CID

from mercato.errors import (
    BlockNotFoundError,
    CarFormatError,
    CarTruncatedError,
    CarUnexpectedBlockError,
    DagFormatError,
    MercatoError,
)
from mercato.fsutil import write_atomically
from mercato.storage.blockstore import Blockstore, wrap_write_error
from mercato.storage.cids import (
    CODEC_DAG_PB,
    MAX_BLOCK_SIZE,
    check_block_size,
    cid_from_bytes,
    parse_cid,
    split_sha256_cid,
    verify_block,
)
from mercato.storage.dagpb import PBNode, decode_unixfs, encode_varint
from mercato.storage.exporter import (
    BlockSource,
    codec_of,
    decode_links,
    raw_fetcher,
    walk_file_range,
)

MAX_HEADER_SIZE = 1024 * 1024
"""A header is a few CIDs; anything bigger is refused rather than read into memory."""

_MAX_CID_SIZE = 128
CAR_CONTENT_TYPE = "application/vnd.ipld.car"


def iter_dag_raw(root: bytes, source: BlockSource) -> Iterator[tuple[bytes, bytes]]:
    """`iter_dag` on binary CIDs: no `CID` object is built for a block or a link.

    Building a `CID` costs more than reading and hashing a 256 KiB block, so CAR export
    of a big DAG walks the links as the bytes they are; every block is still verified
    by the source (`raw_fetcher`).

    Args:
        root: The DAG's root CID (binary).
        source: Where blocks come from.

    Yields:
        (binary cid, block) pairs, root first.

    Raises:
        BlockNotFoundError: If a block is missing.
        BlockHashMismatchError: If a block is corrupted.
        DagFormatError: If a dag-pb node is malformed or links to a non-CID.
    """
    fetch = raw_fetcher(source)
    seen: set[bytes] = set()
    stack = [root]
    while stack:
        raw = stack.pop()
        if raw in seen:
            continue
        seen.add(raw)
        block = fetch(raw)
        yield raw, block
        if codec_of(raw) == CODEC_DAG_PB:
            node = decode_links(raw, block)
            stack.extend(link.hash for link in reversed(node.links))


def iter_dag(root: CID, source: BlockSource) -> Iterator[tuple[CID, bytes]]:
    """Walk a DAG depth-first in link order, each block once, verifying each.

    Args:
        root: The DAG's root.
        source: Where blocks come from.

    Yields:
        (cid, block) pairs, root first.

    Raises:
        BlockNotFoundError: If a block is missing.
        BlockHashMismatchError: If a block is corrupted.
        DagFormatError: If a dag-pb node is malformed.
    """
    for raw, block in iter_dag_raw(bytes(root), source):
        yield cid_from_bytes(raw), block


def iter_file_range(
    root: CID, source: BlockSource, first: int, last: int
) -> Iterator[tuple[CID, bytes]]:
    """The blocks a client needs to verify bytes `first..last` of a UnixFS file.

    That is every node on the way down to the range and the leaves holding it, walked
    depth-first in link order without duplicates: what a trustless gateway sends for
    `?format=car&entity-bytes=first:last` (the descent is `walk_file_range`).

    Args:
        root: The file's root CID.
        source: Where blocks come from.
        first: Offset of the first wanted byte.
        last: Offset of the last wanted byte (inclusive); below `first` for no bytes.

    Yields:
        (cid, block) pairs, root first.

    Raises:
        BlockNotFoundError: If a block is missing.
        BlockHashMismatchError: If a block is corrupted.
        DagFormatError: If a node is not a UnixFS file node.
    """
    for piece in walk_file_range(bytes(root), source, first, last, dedupe=True):
        yield cid_from_bytes(piece.cid), piece.block


def car_header(roots: list[CID]) -> bytes:
    """The varint-prefixed CAR v1 header for `roots`."""
    roots_field: list[Any] = list(roots)
    header = dag_cbor.encode({"roots": roots_field, "version": 1})
    return encode_varint(len(header)) + header


def car_section(cid: CID | bytes, block: bytes) -> bytes:
    """One varint-prefixed CAR section (`cid` as a `CID` or in binary form)."""
    raw = cid if isinstance(cid, bytes) else bytes(cid)
    return encode_varint(len(raw) + len(block)) + raw + block


def iter_car_bytes(
    root: CID, source: BlockSource, byte_range: tuple[int, int] | None = None
) -> Iterator[bytes]:
    """Stream a DAG as CAR v1 bytes (header, then one piece per block).

    Args:
        root: The DAG's root.
        source: Where blocks come from.
        byte_range: (first, last) inclusive file offsets: send only the blocks that
            hold them (see `iter_file_range`); None sends the whole DAG.

    Raises:
        BlockNotFoundError: If a block is missing.
        BlockHashMismatchError: If a block is corrupted.
        DagFormatError: If `byte_range` is given and the DAG is not a UnixFS file.
    """
    yield car_header([root])
    if byte_range is None:
        for raw, block in iter_dag_raw(bytes(root), source):
            yield car_section(raw, block)
    else:
        first, last = byte_range
        for piece in walk_file_range(bytes(root), source, first, last, dedupe=True):
            yield car_section(piece.cid, piece.block)


def export_car(root: CID | str, source: BlockSource, dest: Path | str) -> int:
    """Write the DAG under `root` to a CAR v1 file, atomically.

    Args:
        root: The DAG's root CID.
        source: Where blocks come from.
        dest: The .car path to create or replace.

    Returns:
        Bytes written.

    Raises:
        InvalidCIDError: If `root` is not a CID.
        BlockNotFoundError: If a block is missing (dest is left untouched).
        BlockHashMismatchError: If a block is corrupted (dest is left untouched).
        BlockWriteError: If dest could not be written (StorageFullError when full).
    """
    dest = Path(dest)
    try:
        return write_atomically(dest, iter_car_bytes(parse_cid(root), source))
    except MercatoError:
        # Checked first: backend errors are ConnectionErrors, i.e. OSErrors too.
        raise
    except OSError as exc:
        raise wrap_write_error(exc, dest) from exc


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _IterReader:
    """A minimal `read(n)` over an iterable of byte strings (e.g. an HTTP body)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._it = iter(pieces)
        self._buf = bytearray()

    def read(self, size: int) -> bytes:
        while len(self._buf) < size:
            piece = next(self._it, None)
            if piece is None:
                break
            self._buf += piece
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out


class CarReader:
    """Streaming CAR v1 reader; iterating yields verified (cid, block) pairs.

    Memory stays at one block, whatever the file size.
    """

    def __init__(self, stream: BinaryIO | Iterable[bytes], source: str = "CAR stream") -> None:
        """Read and check the header.

        Args:
            stream: A binary file object or an iterable of bytes.
            source: A name for the stream in error messages (a path, a URL).

        Raises:
            CarFormatError: If the header is malformed or not version 1.
            CarTruncatedError: If the stream ends inside the header.
        """
        self._stream: _Readable = (
            cast(_Readable, stream)
            if hasattr(stream, "read")
            else _IterReader(cast(Iterable[bytes], stream))
        )
        self.source = source
        self.offset = 0
        length = self._varint(allow_eof=False)
        if length is None or length == 0 or length > MAX_HEADER_SIZE:
            raise CarFormatError(f"{source}: CAR header length {length} is invalid.", offset=0)
        raw = self._exact(length, "header")
        try:
            header = dag_cbor.decode(raw)
        except (CBORError, ValueError) as exc:
            raise CarFormatError(
                f"{source}: CAR header is not dag-cbor ({exc}).", offset=0
            ) from exc
        if not isinstance(header, dict) or header.get("version") != 1:
            raise CarFormatError(f"{source}: not a CAR version 1 header.", offset=0)
        roots = header.get("roots")
        if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
            raise CarFormatError(f"{source}: CAR header roots are not a list of CIDs.", offset=0)
        self.roots: list[CID] = [root for root in roots if isinstance(root, CID)]

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        self.offset += len(data)
        return data

    def _exact(self, size: int, what: str) -> bytes:
        start = self.offset
        data = self._read(size)
        while len(data) < size:
            more = self._read(size - len(data))
            if not more:
                raise CarTruncatedError(
                    f"{self.source}: the CAR file ends inside a {what} at byte {start} "
                    f"({len(data)} of {size} bytes). The file is truncated; download it again.",
                    offset=start,
                )
            data += more
        return data

    def _varint(self, *, allow_eof: bool) -> int | None:
        start = self.offset
        result = shift = 0
        while True:
            byte = self._read(1)
            if not byte:
                if allow_eof and shift == 0:
                    return None
                raise CarTruncatedError(
                    f"{self.source}: the CAR file ends inside a length prefix at byte {start}.",
                    offset=start,
                )
            result |= (byte[0] & 0x7F) << shift
            if not byte[0] & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise CarFormatError(
                    f"{self.source}: varint too long at byte {start}.", offset=start
                )

    def __iter__(self) -> Iterator[tuple[CID, bytes]]:
        """Yield each section's (cid, block), verified.

        Raises:
            CarTruncatedError: If the stream ends inside a section.
            CarFormatError: If a section is malformed.
            BlockTooLargeError: If a block is above the size limit.
            BlockHashMismatchError: If a block does not hash to its CID.
        """
        while True:
            start = self.offset
            length = self._varint(allow_eof=True)
            if length is None:
                return
            if length == 0:
                raise CarFormatError(f"{self.source}: empty section at byte {start}.", offset=start)
            # Refuse before reading, so an absurd length cannot exhaust memory.
            check_block_size(length - _MAX_CID_SIZE, None)
            section = self._exact(length, "block section")
            cid, cid_len = _split_cid(section, self.source, start)
            block = section[cid_len:]
            check_block_size(len(block), cid)
            verify_block(cid, block, f"{self.source} (byte {start})")
            yield cid, block


def _split_cid(section: bytes, source: str, offset: int) -> tuple[CID, int]:
    if section[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        size = 34
    else:
        pos = 0
        try:
            for _ in range(3):  # version, codec, multihash code
                while section[pos] & 0x80:
                    pos += 1
                pos += 1
            digest_len = 0
            shift = 0
            while True:
                byte = section[pos]
                pos += 1
                digest_len |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
        except IndexError:
            raise CarFormatError(
                f"{source}: section at byte {offset} has a cut CID.", offset=offset
            ) from None
        size = pos + digest_len
    if size > len(section) or size > _MAX_CID_SIZE:
        raise CarFormatError(f"{source}: section at byte {offset} has a bad CID.", offset=offset)
    try:
        return cid_from_bytes(section[:size]), size
    except ValueError as exc:
        raise CarFormatError(
            f"{source}: section at byte {offset} has a bad CID.", offset=offset
        ) from exc


def import_car(
    source: Path | str | BinaryIO | Iterable[bytes],
    store: Blockstore,
    *,
    pin: bool = True,
    name: str | None = None,
    root: CID | None = None,
) -> list[CID]:
    """Import a CAR v1 file or stream into the blockstore, verifying every block.

    Blocks are stored as they arrive; roots are pinned only once the whole stream has
    been read and each root's DAG is complete. On any error nothing is pinned, so the
    blocks stored so far are removed by the next `gc`.

    Args:
        source: A .car path, a binary file object or an iterable of bytes.
        store: The blockstore.
        pin: Pin the roots (as `ipfs dag import` does).
        name: A name for the stream in error messages.
        root: Import only the DAG under this CID (see the module docstring), ignoring
            the roots the header names; give it for every stream someone else made.

    Returns:
        The roots named in the header, or `[root]`.

    Raises:
        CarFormatError: If the stream is malformed.
        CarTruncatedError: If the stream ends early.
        CarUnexpectedBlockError: If `root` is given and a block is not part of its DAG
            (or comes before any block that links to it).
        DagFormatError: If `root` is given and a node is malformed, links to a CID that
            is not sha2-256 dag-pb or raw, or the blocks outgrow the declared file size.
        BlockTooLargeError: If a block is above MAX_BLOCK_SIZE.
        BlockHashMismatchError: If a block does not hash to its CID.
        BlockNotFoundError: If `pin` and a root's DAG is not complete (with `root`: if
            the stream ends before the DAG does).
        BlockWriteError: If the disk write failed (StorageFullError when full).
    """
    if isinstance(source, str | Path):
        with open(source, "rb") as fh:
            return import_car(fh, store, pin=pin, name=name or str(source), root=root)
    with store.writing():
        reader = CarReader(source, name or "CAR stream")
        guard = _DagGuard(root, reader.source) if root is not None else None
        for cid, block in reader:
            if guard is not None and not guard.admit(cid, block, reader.offset):
                continue  # a repeat of a block already written
            store.put_hashed(bytes(cid.digest), [block])
        if guard is not None:
            guard.finish()
        store.flush()
        roots = reader.roots if root is None else [root]
        if pin:
            for each in roots:
                store.pin(each)
    return roots


def _dag_key(raw: bytes) -> bytes | None:
    """(codec, multihash) of a sha2-256 dag-pb/raw CID, the same for CIDv0 and v1."""
    split = split_sha256_cid(raw)
    return None if split is None else bytes((split[0],)) + split[1]


def block_budget(filesize: int) -> int:
    """Block bytes a DAG may hold for a file of `filesize` bytes.

    kubo's balanced layout adds under 0.1% (a 45-byte link per 256 KiB chunk, one
    level of nodes per 174 links); 1/64 plus 64 KiB leaves room for any sane chunker
    and refuses DAGs made of tiny chunks, whose nodes would outweigh the file.
    """
    return filesize + filesize // 64 + 64 * 1024


class _DagGuard:
    """Admits only the blocks of one DAG, each after a block that links to it."""

    def __init__(self, root: CID, source: str) -> None:
        key = _dag_key(bytes(root))
        if key is None:
            raise DagFormatError(
                f"{root} is not a sha2-256 dag-pb or raw CID; Mercato imports no other kind.",
                cid=str(root),
            )
        self.root = root
        self.source = source
        self.wanted: set[bytes] = {key}
        self.seen: set[bytes] = set()
        self.budget: int | None = None
        self.total = 0

    def admit(self, cid: CID, block: bytes, offset: int) -> bool:
        """Check one verified block; True when it is new and may be written."""
        raw = bytes(cid)
        key = _dag_key(raw)
        if key is not None and key in self.seen:
            return False
        if key is None or key not in self.wanted:
            raise CarUnexpectedBlockError(
                f"{self.source}: block {cid} (before byte {offset}) is not part of the DAG "
                f"{self.root} that was asked for, or comes before the block linking to it; "
                "nothing of it was stored.",
                offset=offset,
                cid=str(cid),
                root=str(self.root),
            )
        self.wanted.discard(key)
        self.seen.add(key)
        self.total += len(block)
        declared: int | None = len(block)
        if key[0] == CODEC_DAG_PB:
            node = decode_links(raw, block)
            for link in node.links:
                link_key = _dag_key(link.hash)
                if link_key is None:
                    raise DagFormatError(
                        f"Node {cid} links to a CID that is not sha2-256 dag-pb or raw.",
                        cid=str(cid),
                    )
                if link_key not in self.seen:
                    self.wanted.add(link_key)
            declared = _declared_size(node)
        if self.budget is None:  # the root: it declares the file's size
            self.budget = block_budget(declared) if declared is not None else None
        if self.budget is not None and self.total > self.budget:
            raise DagFormatError(
                f"The DAG {self.root} holds more than {self.budget} bytes of blocks for the "
                "file size its root declares; it was refused.",
                cid=str(self.root),
            )
        return True

    def finish(self) -> None:
        """Refuse a stream that ended before the DAG did."""
        if self.wanted:
            raise BlockNotFoundError(
                f"{self.source}: the CAR stream ended without {len(self.wanted)} block(s) of "
                f"the DAG {self.root}; nothing was pinned.",
                cid=str(self.root),
            )


def _declared_size(node: PBNode) -> int | None:
    if node.data is None:
        return None
    meta = decode_unixfs(node.data)
    if meta.filesize is not None:
        return meta.filesize
    return len(meta.data) if meta.data is not None and not node.links else None


__all__ = [
    "CAR_CONTENT_TYPE",
    "MAX_BLOCK_SIZE",
    "CarReader",
    "block_budget",
    "car_header",
    "car_section",
    "export_car",
    "import_car",
    "iter_car_bytes",
    "iter_dag",
    "iter_dag_raw",
    "iter_file_range",
]
