# SPDX-License-Identifier: AGPL-3.0-only
"""Verified export: byte-exact round trips, atomic destination, corrupted DAGs refused."""

from __future__ import annotations

import io
from hashlib import sha256
from pathlib import Path

import pytest
from multiformats import CID, multihash

from mercato.errors import BlockHashMismatchError, BlockNotFoundError, DagFormatError
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import block_key, cid_from_bytes
from mercato.storage.dagpb import (
    UNIXFS_FILE,
    PBLink,
    UnixFSData,
    decode_node,
    encode_node,
    encode_unixfs,
)
from mercato.storage.exporter import export_file, iter_file
from mercato.storage.unixfs import CHUNK_SIZE, import_file

from .sample_data import pseudo_random


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 5 * CHUNK_SIZE + 3])
def test_round_trip(store: Blockstore, tmp_path: Path, version: int, size: int) -> None:
    data = pseudo_random(size)
    result = import_file(io.BytesIO(data), store, cid_version=version)
    dest = tmp_path / "out.bin"
    assert export_file(result.cid, store, dest) == size
    assert dest.read_bytes() == data
    assert b"".join(bytes(p) for p in iter_file(result.cid, store)) == data


def test_corrupted_leaf_fails_export_and_keeps_destination(
    store: Blockstore, tmp_path: Path
) -> None:
    data = pseudo_random(3 * CHUNK_SIZE)
    result = import_file(io.BytesIO(data), store, cid_version=1)
    leaf = cid_from_bytes(decode_node(store.get(result.cid)).links[1].hash)
    key = block_key(leaf)
    (store.blocks_dir / key[-3:-1] / key).write_bytes(b"x" * CHUNK_SIZE)
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"previous version")
    with pytest.raises(BlockHashMismatchError) as info:
        export_file(result.cid, store, dest)
    assert info.value.cid == str(leaf)
    assert dest.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "store"]


def test_missing_block_fails_export(store: Blockstore, tmp_path: Path) -> None:
    result = import_file(io.BytesIO(pseudo_random(2 * CHUNK_SIZE)), store, cid_version=1)
    store.delete(cid_from_bytes(decode_node(store.get(result.cid)).links[0].hash))
    with pytest.raises(BlockNotFoundError):
        export_file(result.cid, store, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_blocksizes_that_lie_are_refused(store: Blockstore, tmp_path: Path) -> None:
    leaf = import_file(io.BytesIO(b"abc"), store, cid_version=1).cid
    meta = encode_unixfs(UnixFSData(type=UNIXFS_FILE, filesize=4, blocksizes=[4]))
    block = encode_node([PBLink(hash=bytes(leaf), name="", tsize=3)], meta)
    root = CID("base32", 1, "dag-pb", multihash.wrap(sha256(block).digest(), "sha2-256"))
    store.put(root, block)
    with pytest.raises(DagFormatError, match="holds 3 file bytes; its parent says 4"):
        export_file(root, store, tmp_path / "out.bin")
