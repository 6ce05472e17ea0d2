# SPDX-License-Identifier: AGPL-3.0-only
"""The dag-pb codec and the UnixFS `Data` message, following the IPLD and UnixFS specs.

dag-pb blocks are protobuf messages, but the spec demands one canonical byte form:
`Links` (field 2) are written *before* `Data` (field 1), link fields in order Hash,
Name, Tsize, and decoders must reject anything else. General protobuf serializers
write fields in field-number order (Data first), so they produce different bytes and
therefore different CIDs. This module is a small encoder/decoder that follows the spec
byte for byte instead. The UnixFS `Data` message inside uses a handful of scalar
fields; it is encoded with the same helpers so that one codec covers both layers.

    PBNode { repeated PBLink Links = 2; optional bytes Data = 1; }
    PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }
    Data   { required DataType Type = 1; optional bytes Data = 2; optional uint64 filesize = 3;
             repeated uint64 blocksizes = 4; optional uint64 hashType = 5;
             optional uint64 fanout = 6; ... }
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mercato.errors import DagFormatError

# UnixFS DataType values (unixfs.proto).
UNIXFS_RAW = 0
UNIXFS_DIRECTORY = 1
UNIXFS_FILE = 2
UNIXFS_METADATA = 3
UNIXFS_SYMLINK = 4
UNIXFS_HAMT_SHARD = 5

MAX_BLOCKSIZES = 1 << 16
"""More blocksizes than a 2 MiB block could hold links for (kubo writes at most 174 under
unixfs-v0-2015, 1,024 under unixfs-v1-2025)."""


def encode_varint(value: int) -> bytes:
    """Encode an unsigned integer as a protobuf / multiformats varint.

    Args:
        value: A non-negative integer below 2**64.

    Returns:
        The LEB128 bytes.

    Raises:
        ValueError: If the value is negative or too large.
    """
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(buf: memoryview, pos: int, cid: str | None) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise DagFormatError("dag-pb: truncated varint", cid=cid)
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise DagFormatError("dag-pb: varint longer than 64 bits", cid=cid)


def _read_bytes(buf: memoryview, pos: int, cid: str | None) -> tuple[memoryview, int]:
    length, pos = _read_varint(buf, pos, cid)
    end = pos + length
    if end > len(buf):
        raise DagFormatError("dag-pb: length-delimited field runs past the block", cid=cid)
    return buf[pos:end], end


@dataclass(frozen=True)
class PBLink:
    """One dag-pb link.

    Attributes:
        hash: The child's CID in binary form (a bare multihash for CIDv0).
        name: The link name; kubo writes an empty name for file chunks.
        tsize: Cumulative size of the child's sub-DAG in bytes (blocks included).
    """

    hash: bytes
    name: str | None = ""
    tsize: int | None = None


@dataclass(frozen=True)
class PBNode:
    """A decoded dag-pb node. `data` is a view into the block to avoid copying chunks."""

    links: list[PBLink] = field(default_factory=list)
    data: memoryview | bytes | None = None


def encode_link(link: PBLink) -> bytes:
    """Encode one PBLink message (without its outer tag)."""
    body = b"\x0a" + encode_varint(len(link.hash)) + link.hash
    if link.name is not None:
        name = link.name.encode()
        body += b"\x12" + encode_varint(len(name)) + name
    if link.tsize is not None:
        body += b"\x18" + encode_varint(link.tsize)
    return body


def encode_node(links: list[PBLink], data: bytes | None) -> bytes:
    """Encode a PBNode in the canonical dag-pb byte form (links first, then data).

    Args:
        links: The links, in order.
        data: The Data field, or None to omit it.

    Returns:
        The block bytes.
    """
    parts = []
    for link in links:
        body = encode_link(link)
        parts.append(b"\x12" + encode_varint(len(body)) + body)
    if data is not None:
        parts.append(b"\x0a" + encode_varint(len(data)) + data)
    return b"".join(parts)


def decode_node(block: bytes | memoryview, cid: str | None = None) -> PBNode:
    """Decode a dag-pb block strictly, as the spec requires.

    Args:
        block: The block bytes.
        cid: The block's CID, only to name it in errors.

    Returns:
        The node; `data` is a memoryview into `block`.

    Raises:
        DagFormatError: If the bytes are not canonical dag-pb.
    """
    buf = memoryview(block)
    pos = 0
    links: list[PBLink] = []
    data: memoryview | None = None
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos, cid)
        if tag == 0x12:
            if data is not None:
                raise DagFormatError("dag-pb: Links after Data (not canonical)", cid=cid)
            raw, pos = _read_bytes(buf, pos, cid)
            links.append(_decode_link(raw, cid))
        elif tag == 0x0A:
            if data is not None:
                raise DagFormatError("dag-pb: duplicate Data field", cid=cid)
            data, pos = _read_bytes(buf, pos, cid)
        else:
            raise DagFormatError(f"dag-pb: unexpected field tag {tag:#x}", cid=cid)
    return PBNode(links=links, data=data)


def _decode_link(buf: memoryview, cid: str | None) -> PBLink:
    pos = 0
    hash_: bytes | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos, cid)
        number = tag >> 3
        if number <= last:
            raise DagFormatError("dag-pb: link fields out of order or repeated", cid=cid)
        last = number
        if tag == 0x0A:
            raw, pos = _read_bytes(buf, pos, cid)
            hash_ = bytes(raw)
        elif tag == 0x12:
            raw, pos = _read_bytes(buf, pos, cid)
            try:
                name = bytes(raw).decode()
            except UnicodeDecodeError as exc:
                raise DagFormatError("dag-pb: link name is not UTF-8", cid=cid) from exc
        elif tag == 0x18:
            tsize, pos = _read_varint(buf, pos, cid)
        else:
            raise DagFormatError(f"dag-pb: unexpected link field tag {tag:#x}", cid=cid)
    if hash_ is None:
        raise DagFormatError("dag-pb: link without Hash", cid=cid)
    return PBLink(hash=hash_, name=name, tsize=tsize)


@dataclass(frozen=True)
class UnixFSData:
    """The fields of a UnixFS `Data` message that files, directories and symlinks use.

    Attributes:
        type: The DataType (UNIXFS_FILE, UNIXFS_RAW, ...).
        data: Inline file bytes (a view into the block when decoded); a symlink's
            target; a HAMT shard's bitfield.
        filesize: Total file bytes under this node.
        blocksizes: File bytes under each link, in link order.
        hash_type: A HAMT shard's hash function (0x22, murmur3-x64-64).
        fanout: A HAMT shard's number of slots.
    """

    type: int
    data: memoryview | bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)
    hash_type: int | None = None
    fanout: int | None = None


def encode_unixfs(node: UnixFSData) -> bytes:
    """Encode a UnixFS Data message as kubo does (an empty data field is omitted).

    Args:
        node: The message.

    Returns:
        The protobuf bytes.
    """
    out = b"\x08" + encode_varint(node.type)
    if node.data:
        out += b"\x12" + encode_varint(len(node.data)) + bytes(node.data)
    if node.filesize is not None:
        out += b"\x18" + encode_varint(node.filesize)
    for size in node.blocksizes:
        out += b"\x20" + encode_varint(size)
    if node.hash_type is not None:
        out += b"\x28" + encode_varint(node.hash_type)
    if node.fanout is not None:
        out += b"\x30" + encode_varint(node.fanout)
    return out


def decode_unixfs(buf: memoryview | bytes, cid: str | None = None) -> UnixFSData:
    """Decode the UnixFS Data message of a dag-pb node.

    Args:
        buf: The PBNode's Data field.
        cid: The block's CID, only to name it in errors.

    Returns:
        The decoded message; mode and mtime are skipped.

    Raises:
        DagFormatError: If the message is malformed.
    """
    view = memoryview(buf)
    pos = 0
    type_: int | None = None
    data: memoryview | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    hash_type: int | None = None
    fanout: int | None = None
    while pos < len(view):
        tag, pos = _read_varint(view, pos, cid)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(view, pos, cid)
            if number == 1:
                type_ = value
            elif number == 3:
                filesize = value
            elif number == 5:
                hash_type = value
            elif number == 6:
                fanout = value
            elif number == 4:
                blocksizes.append(value)
                if len(blocksizes) > MAX_BLOCKSIZES:
                    raise DagFormatError("unixfs: too many blocksizes", cid=cid)
        elif wire == 2:
            raw, pos = _read_bytes(view, pos, cid)
            if number == 2:
                data = raw
            elif number == 4:  # packed blocksizes, accepted when reading
                inner = 0
                while inner < len(raw):
                    value, inner = _read_varint(raw, inner, cid)
                    blocksizes.append(value)
                    if len(blocksizes) > MAX_BLOCKSIZES:
                        raise DagFormatError("unixfs: too many blocksizes", cid=cid)
        elif wire == 1 and pos + 8 <= len(view):
            pos += 8
        elif wire == 5 and pos + 4 <= len(view):
            pos += 4
        else:
            raise DagFormatError(f"unixfs: bad field tag {tag:#x}", cid=cid)
    if type_ is None:
        raise DagFormatError("unixfs: Data message without Type", cid=cid)
    return UnixFSData(
        type=type_,
        data=data,
        filesize=filesize,
        blocksizes=blocksizes,
        hash_type=hash_type,
        fanout=fanout,
    )
