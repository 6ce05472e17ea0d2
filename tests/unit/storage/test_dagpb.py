# SPDX-License-Identifier: AGPL-3.0-only
"""dag-pb / UnixFS codec: canonical encoding, strict decoding."""

from __future__ import annotations

import pytest

from mercato.errors import DagFormatError
from mercato.storage.dagpb import (
    UNIXFS_FILE,
    PBLink,
    UnixFSData,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)


def test_links_are_encoded_before_data() -> None:
    block = encode_node([PBLink(hash=b"\x12\x20" + b"\x01" * 32, name="", tsize=7)], b"\x08\x02")
    assert block[0] == 0x12  # Links first: the canonical order, not field-number order
    assert block.endswith(b"\x0a\x02\x08\x02")


def test_node_round_trip() -> None:
    links = [PBLink(hash=b"\x12\x20" + bytes([i]) * 32, name="", tsize=100 + i) for i in range(3)]
    data = encode_unixfs(UnixFSData(type=UNIXFS_FILE, filesize=30, blocksizes=[10, 10, 10]))
    node = decode_node(encode_node(links, data))
    assert node.links == links
    assert node.data is not None
    meta = decode_unixfs(node.data)
    assert (meta.type, meta.filesize, meta.blocksizes) == (UNIXFS_FILE, 30, [10, 10, 10])


def test_empty_file_leaf_matches_kubo_bytes() -> None:
    # kubo's empty file: Data{Type: File, filesize: 0} with no Data field.
    data = encode_unixfs(UnixFSData(type=UNIXFS_FILE, data=b"", filesize=0))
    assert encode_node([], data) == bytes.fromhex("0a0408021800")


def test_decoder_rejects_links_after_data() -> None:
    link = encode_node([PBLink(hash=b"\x12\x20" + b"\x00" * 32)], None)
    with pytest.raises(DagFormatError, match="Links after Data"):
        decode_node(b"\x0a\x00" + link)


def test_decoder_rejects_truncated_block() -> None:
    block = encode_node([], b"\x08\x02\x12\x05hello")
    with pytest.raises(DagFormatError, match="runs past the block"):
        decode_node(block[:-2], "QmTest")


def test_decoder_rejects_unknown_field() -> None:
    with pytest.raises(DagFormatError, match="unexpected field"):
        decode_node(b"\x1a\x00")


def test_unixfs_without_type_is_rejected() -> None:
    with pytest.raises(DagFormatError, match="without Type"):
        decode_unixfs(b"\x18\x05")
