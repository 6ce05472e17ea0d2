# SPDX-License-Identifier: AGPL-3.0-only
"""The blockstore: verified reads, pins and gc, atomic writes under a full disk."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from multiformats import CID, multihash

from mercato.errors import (
    BlockHashMismatchError,
    BlockNotFoundError,
    BlockTooLargeError,
    StorageFullError,
)
from mercato.storage import blockstore as blockstore_module
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import MAX_BLOCK_SIZE, block_key
from mercato.storage.unixfs import CHUNK_SIZE, import_file

from .sample_data import pseudo_random


def raw_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.wrap(hashlib.sha256(data).digest(), "sha2-256"))


def block_files(store: Blockstore) -> list[Path]:
    return [p for shard in store.blocks_dir.iterdir() for p in shard.iterdir()]


def test_put_get_has(store: Blockstore) -> None:
    cid = raw_cid(b"block")
    assert not store.has(cid)
    store.put(cid, b"block")
    assert store.has(cid)
    assert store.get(cid) == b"block"


def test_layout_is_sharded_by_multihash(store: Blockstore) -> None:
    cid = raw_cid(b"block")
    store.put(cid, b"block")
    key = block_key(cid)
    assert (store.root / "blocks" / key[-3:-1] / key).read_bytes() == b"block"


def test_put_refuses_bytes_that_do_not_match(store: Blockstore) -> None:
    with pytest.raises(BlockHashMismatchError) as info:
        store.put(raw_cid(b"expected"), b"other")
    assert info.value.cid == str(raw_cid(b"expected"))
    assert block_files(store) == []


def test_put_refuses_oversized_block(store: Blockstore) -> None:
    data = b"\0" * (MAX_BLOCK_SIZE + 1)
    with pytest.raises(BlockTooLargeError) as info:
        store.put(raw_cid(data), data)
    assert info.value.limit == MAX_BLOCK_SIZE


def test_get_of_missing_block_names_the_cid(store: Blockstore) -> None:
    cid = raw_cid(b"absent")
    with pytest.raises(BlockNotFoundError, match=str(cid)):
        store.get(cid)


def test_corrupted_block_is_reported_on_read(store: Blockstore) -> None:
    cid = raw_cid(b"block")
    store.put(cid, b"block")
    key = block_key(cid)
    (store.blocks_dir / key[-3:-1] / key).write_bytes(b"bit rot")
    with pytest.raises(BlockHashMismatchError) as info:
        store.get(cid)
    assert info.value.cid == str(cid)


def test_gc_keeps_pinned_dags_and_removes_the_rest(store: Blockstore) -> None:
    kept = import_file(io.BytesIO(pseudo_random(3 * CHUNK_SIZE)), store)
    dropped = import_file(io.BytesIO(pseudo_random(2 * CHUNK_SIZE, b"other")), store)
    assert store.unpin(dropped.cid)
    result = store.gc()
    assert result.removed_blocks == 3  # two leaves and their parent
    assert result.freed_bytes > 2 * CHUNK_SIZE
    assert not store.has(dropped.cid)
    assert store.has(kept.cid)
    assert len(block_files(store)) == 4
    assert store.gc().removed_blocks == 0


def test_pin_of_incomplete_dag_is_refused(store: Blockstore) -> None:
    result = import_file(io.BytesIO(pseudo_random(2 * CHUNK_SIZE)), store, pin=False)
    victim = next(p for p in block_files(store) if p.stat().st_size < CHUNK_SIZE)  # the root
    leaves = [p for p in block_files(store) if p != victim]
    leaves[0].unlink()
    with pytest.raises(BlockNotFoundError):
        store.pin(result.cid)
    assert not store.is_pinned(result.cid)


def test_full_disk_mid_import_leaves_no_partial_block(
    store: Blockstore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev
    calls = 0

    def failing_writev(fd: int, buffers: Sequence[bytes]) -> int:
        # The disk fills up on the 6th block: write half of it, then fail as Linux does.
        nonlocal calls
        calls += 1
        if calls >= 6:
            first = memoryview(buffers[0])
            real_writev(fd, [first[: len(first) // 2]])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, buffers)

    monkeypatch.setattr(blockstore_module.os, "writev", failing_writev)
    data = pseudo_random(12 * CHUNK_SIZE)
    with pytest.raises(StorageFullError) as info:
        import_file(io.BytesIO(data), store, cid_version=1, workers=1)
    assert info.value.code == "storage_full"
    monkeypatch.setattr(blockstore_module.os, "writev", real_writev)

    assert list(store.tmp_dir.iterdir()) == []  # no temp file left behind
    assert store.pins() == []  # the half-imported file is not pinned
    left = block_files(store)
    assert len(left) == 5  # the five blocks written before the disk filled up
    for path in left:  # every block that exists is whole and correct
        assert block_key(raw_cid(path.read_bytes())) == path.name
    assert store.gc().removed_blocks == 5  # unpinned leftovers go at the next gc
    assert block_files(store) == []
    # And the same import succeeds once there is space again.
    assert import_file(io.BytesIO(data), store, cid_version=1).size == len(data)
