# SPDX-License-Identifier: AGPL-3.0-only
"""CID helpers shared by the importer, the blockstore, CAR files and the backends.

`multiformats.CID` is the public type. Building one costs ~150 µs, so the importer's
hot path works on binary CIDs (`bytes`) and turns only the root into a `CID`.
"""

from __future__ import annotations

import base64
import hashlib
from typing import NewType

from multiformats import CID, multihash

from mercato.errors import BlockHashMismatchError, BlockTooLargeError, InvalidCIDError

__all__ = [
    "CID",
    "CODEC_DAG_PB",
    "CODEC_RAW",
    "MAX_BLOCK_SIZE",
    "BlockKey",
    "block_key",
    "check_block_size",
    "cid_from_bytes",
    "key_from_multihash",
    "parse_cid",
    "sha256_cid_bytes",
    "split_sha256_cid",
    "verify_block",
]

CODEC_DAG_PB = 0x70
CODEC_RAW = 0x55
_SHA256_MH_PREFIX = b"\x12\x20"

# 2 MiB: the largest block bitswap moves between IPFS peers (kubo/boxo refuse bigger
# ones), so any block Mercato accepts can also be served to the IPFS network. Our own
# importer never makes blocks above one chunk (1 MiB under unixfs-v1-2025) plus a few
# bytes of framing; the limit only bites on blocks received from CAR files, gateways and
# kubo.
MAX_BLOCK_SIZE = 2 * 1024 * 1024

BlockKey = NewType("BlockKey", str)
"""Blockstore file name for a block: lower-case base32 of its multihash (no padding)."""


def sha256_cid_bytes(version: int, codec: int, digest: bytes) -> bytes:
    """Binary CID for a sha2-256 digest without building a `CID` object.

    Args:
        version: 0 or 1 (version 0 implies dag-pb).
        codec: CODEC_DAG_PB or CODEC_RAW (single-byte varints).
        digest: The 32-byte sha2-256 digest.

    Returns:
        The binary CID.
    """
    if version == 0:
        return _SHA256_MH_PREFIX + digest
    return bytes((1, codec)) + _SHA256_MH_PREFIX + digest


def split_sha256_cid(raw: bytes) -> tuple[int, bytes] | None:
    """Codec and multihash of a binary sha2-256 CID, without building a `CID` object.

    The exporter and the blockstore walk thousands of links per GiB; parsing the two
    forms kubo writes (CIDv0, and CIDv1 dag-pb/raw) by hand keeps that walk at disk and
    sha256 speed.

    Args:
        raw: A binary CID.

    Returns:
        (codec, multihash) for a CIDv0 or a CIDv1 dag-pb/raw sha2-256 CID; None for any
        other CID (the caller then falls back to `cid_from_bytes`).
    """
    if len(raw) == 34 and raw[:2] == _SHA256_MH_PREFIX:
        return CODEC_DAG_PB, raw
    if (
        len(raw) == 36
        and raw[0] == 1
        and raw[1] in (CODEC_DAG_PB, CODEC_RAW)
        and raw[2:4] == _SHA256_MH_PREFIX
    ):
        return raw[1], raw[2:]
    return None


def cid_from_bytes(raw: bytes) -> CID:
    """Decode a binary CID.

    Args:
        raw: CID bytes (a bare sha2-256 multihash is a CIDv0).

    Returns:
        The CID, printed in base58btc (v0) or base32 (v1) like kubo does.

    Raises:
        InvalidCIDError: If the bytes are not a CID.
    """
    try:
        cid = CID.decode(raw)
    except (ValueError, KeyError, IndexError) as exc:  # multiformats raises these for bad input
        raise InvalidCIDError(f"Not a binary CID: {raw[:40].hex()}", value=raw.hex()) from exc
    return cid if cid.version == 0 else cid.set(base="base32")


def parse_cid(value: str | bytes | CID) -> CID:
    """Parse a CID given as text, bytes or a `CID`.

    Args:
        value: e.g. "Qm..." or "bafy...".

    Returns:
        The CID.

    Raises:
        InvalidCIDError: If the value is not a CID.
    """
    if isinstance(value, CID):
        return value
    if isinstance(value, bytes):
        return cid_from_bytes(value)
    try:
        return CID.decode(value.strip())
    # multiformats raises these for bad input (IndexError for a one-character "CID").
    except (ValueError, KeyError, IndexError) as exc:
        raise InvalidCIDError(
            f"Not a CID: {value!r}. Expected something like 'Qm...' or 'bafy...'.",
            value=value,
        ) from exc


def block_key(cid: CID) -> BlockKey:
    """The blockstore key of a CID: base32 of its multihash.

    Keying by multihash (as kubo does) means the CIDv0 and CIDv1 forms of a block, or
    the same bytes reached as raw and as dag-pb, share one file.
    """
    return key_from_multihash(bytes(cid.digest))


def key_from_multihash(multihash_bytes: bytes) -> BlockKey:
    """The blockstore key of a binary multihash (see `block_key`)."""
    return BlockKey(base64.b32encode(multihash_bytes).decode().rstrip("=").lower())


def check_block_size(size: int, cid: CID | None) -> None:
    """Refuse blocks above MAX_BLOCK_SIZE.

    Raises:
        BlockTooLargeError: If `size` is above the limit.
    """
    if size > MAX_BLOCK_SIZE:
        name = str(cid) if cid is not None else None
        raise BlockTooLargeError(
            f"Block {name or '(unknown CID)'} is {size} bytes; the limit is {MAX_BLOCK_SIZE} "
            "bytes (the largest block IPFS peers exchange). Re-chunk the data.",
            cid=name,
            size=size,
            limit=MAX_BLOCK_SIZE,
        )


def verify_block(cid: CID, data: bytes | memoryview, source: str) -> None:
    """Check that `data` hashes to `cid`.

    Args:
        cid: The expected CID.
        data: The block bytes.
        source: Where the bytes came from (a path, a URL), for the error message.

    Raises:
        BlockHashMismatchError: If the bytes do not match the CID.
        BlockTooLargeError: If the block is above MAX_BLOCK_SIZE.
        InvalidCIDError: If the CID uses a hash function Mercato cannot compute.
    """
    check_block_size(len(data), cid)
    mh = bytes(cid.digest)
    # Fast path on the multihash bytes: multiformats' accessors (hashfun, raw_digest)
    # validate their arguments and cost more than hashing a 256 KiB block.
    if mh[:2] == _SHA256_MH_PREFIX:
        ok = hashlib.sha256(data).digest() == mh[2:]
    else:
        name = cid.hashfun.name
        if name == "identity":
            ok = bytes(data) == bytes(cid.raw_digest)
        else:
            try:
                ok = bytes(multihash.digest(bytes(data), name)) == mh
            except (ValueError, KeyError, ImportError) as exc:  # unknown or unavailable hash
                raise InvalidCIDError(
                    f"CID {cid} uses hash function {name}, which Mercato cannot verify.",
                    value=str(cid),
                ) from exc
    if not ok:
        raise BlockHashMismatchError(
            f"Block from {source} does not hash to {cid}: the data is corrupted or was "
            "substituted. Fetch it again from a trusted source.",
            cid=str(cid),
            source=source,
        )
