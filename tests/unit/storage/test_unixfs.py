# SPDX-License-Identifier: AGPL-3.0-only
"""The UnixFS importer: kubo's known vectors and the balanced layout's shape."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mercato.errors import ConfigError
from mercato.storage.blockstore import Blockstore
from mercato.storage.dagpb import decode_node, decode_unixfs
from mercato.storage.unixfs import CHUNK_SIZE, MAX_LINKS, import_file, only_hash

from .sample_data import pseudo_random

VECTORS = [
    (b"hello", 0, "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"),
    (b"Hello Worlds!\n", 0, "QmVr26fY1tKyspEJBniVhqxQeEjhF78XerGiqWAwraVLQH"),
    (b"", 1, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
    (b"", 0, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
]


@pytest.mark.parametrize(("data", "version", "expected"), VECTORS)
def test_known_vectors(tmp_path: Path, data: bytes, version: int, expected: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)
    assert str(only_hash(path, cid_version=version)) == expected


def test_path_stream_and_iterable_give_the_same_cid(tmp_path: Path) -> None:
    data = pseudo_random(3 * CHUNK_SIZE + 1234)
    path = tmp_path / "f"
    path.write_bytes(data)
    pieces = [data[i : i + 10_000] for i in range(0, len(data), 10_000)]
    by_path = only_hash(path, cid_version=1)
    assert only_hash(io.BytesIO(data), cid_version=1) == by_path
    assert only_hash(iter(pieces), cid_version=1) == by_path


def test_cid_version_1_uses_base32_and_raw_leaves(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello")
    cid = only_hash(path, cid_version=1)
    assert str(cid).startswith("bafkrei")
    assert cid.codec.name == "raw"


def test_unknown_cid_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cid_version must be 0 or 1"):
        only_hash(io.BytesIO(b"x"), cid_version=2)


def test_root_of_175_chunks_has_two_children_of_174_and_1(store: Blockstore) -> None:
    # Balanced layout: one full node of 174 leaves, then a node wrapping the 175th leaf.
    data = pseudo_random(MAX_LINKS * CHUNK_SIZE + 1)
    result = import_file(iter([data]), store, cid_version=1)
    assert result.size == len(data)
    root = decode_node(store.get(result.cid))
    assert root.data is not None
    meta = decode_unixfs(root.data)
    assert meta.filesize == len(data)
    assert meta.blocksizes == [MAX_LINKS * CHUNK_SIZE, 1]
    assert all(link.name == "" for link in root.links)
    from mercato.storage.cids import cid_from_bytes

    first, second = (decode_node(store.get(cid_from_bytes(link.hash))) for link in root.links)
    assert len(first.links) == MAX_LINKS
    assert len(second.links) == 1
    # Tsize of the root's links: child block size plus everything below it.
    assert root.links[1].tsize == len(store.get(cid_from_bytes(root.links[1].hash))) + 1


def test_import_pins_the_root(store: Blockstore) -> None:
    result = import_file(io.BytesIO(b"model bytes"), store)
    assert store.pins() == [result.cid]


# CIDs of pseudo_random(21 chunks + 12,345 bytes), computed by the importer before leaves
# were batched and split chunks stopped being joined: any change to the bytes shows here.
MULTI_CHUNK_SIZE = 21 * CHUNK_SIZE + 12_345
MULTI_CHUNK_CIDS = {
    0: "Qmadd9PJg7WrCCRizJj3bmBFZbbLjsEy4zyA4kgyavW9Ky",
    1: "bafybeih7naojril73ivtt7xrv45uuxkl4ekeq2a6olnqbxdlb7necrl3su",
}


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("piece", [CHUNK_SIZE, CHUNK_SIZE + 17, 1_000, 3 * CHUNK_SIZE - 5])
def test_multi_chunk_import_is_the_same_however_the_input_is_cut(
    store: Blockstore, version: int, piece: int
) -> None:
    # Pieces that straddle chunk boundaries (an encryption stream's messages are 256 KiB
    # + 17 bytes) are hashed and written without being joined: same CID, same blocks.
    data = pseudo_random(MULTI_CHUNK_SIZE)
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
    result = import_file(iter(pieces), store, cid_version=version)
    assert str(result.cid) == MULTI_CHUNK_CIDS[version]
    assert result.size == len(data)
    root = decode_node(store.get(result.cid))
    from mercato.storage.cids import cid_from_bytes

    leaves = [store.get(cid_from_bytes(link.hash)) for link in root.links]
    if version == 0:
        chunks = [
            bytes(decode_unixfs(decode_node(leaf).data or b"").data or b"") for leaf in leaves
        ]
    else:
        chunks = leaves
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks] == [CHUNK_SIZE] * 21 + [12_345]
