# SPDX-License-Identifier: AGPL-3.0-only
"""Durability: what a power cut can leave behind is detected, reported and repaired.

Blocks are not fsynced one by one (see the blockstore docstring); an import is made
durable once, before its pin is written. A power cut mid-import can therefore leave a
block file with wrong bytes under its key. These tests fake exactly that file.
"""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest

from mercato.errors import BlockHashMismatchError
from mercato.storage import blockstore as blockstore_module
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import cid_from_bytes
from mercato.storage.dagpb import decode_node
from mercato.storage.exporter import export_file, iter_file
from mercato.storage.unixfs import CHUNK_SIZE, ImportResult, import_file

from .sample_data import pseudo_random

DATA = pseudo_random(3 * CHUNK_SIZE + 17)


def leaf_paths(store: Blockstore, result: ImportResult) -> list[tuple[str, Path]]:
    """(CID, file) of each leaf under the root, in file order."""
    root = decode_node(store.get(result.cid))
    out = []
    for link in root.links:
        cid = cid_from_bytes(link.hash)
        out.append((str(cid), store._path(blockstore_module.block_key(cid))))
    return out


@pytest.mark.parametrize("version", [0, 1])
def test_stale_block_is_reported_quarantined_and_rewritten(
    store: Blockstore, tmp_path: Path, version: int
) -> None:
    result = import_file(io.BytesIO(DATA), store, cid_version=version)
    cid, path = leaf_paths(store, result)[1]
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)  # right length, wrong bytes: what a lost write leaves

    with pytest.raises(BlockHashMismatchError) as info:
        b"".join(bytes(p) for p in iter_file(result.cid, store))
    assert info.value.cid == cid
    assert not path.exists()  # moved aside, so nothing serves it again
    assert [p.stat().st_size for p in store.quarantine_dir.iterdir()] == [size]

    # Importing the same bytes again writes the missing block back.
    assert import_file(io.BytesIO(DATA), store, cid_version=version).cid == result.cid
    dest = tmp_path / "out.bin"
    assert export_file(result.cid, store, dest) == len(DATA)
    assert dest.read_bytes() == DATA


def test_truncated_block_is_replaced_by_the_next_import(store: Blockstore) -> None:
    result = import_file(io.BytesIO(DATA), store)
    _cid, path = leaf_paths(store, result)[0]
    path.write_bytes(b"")  # ext4 after a power cut: the rename survived, the data did not

    import_file(io.BytesIO(DATA), store)  # no read in between: the size gives it away
    assert b"".join(bytes(p) for p in iter_file(result.cid, store)) == DATA
    assert len(list(store.quarantine_dir.iterdir())) == 1


def test_verify_finds_and_quarantines_every_damaged_block(store: Blockstore) -> None:
    result = import_file(io.BytesIO(DATA), store, cid_version=1)
    assert store.verify().corrupted == []
    leaves = leaf_paths(store, result)
    for _, path in leaves[:2]:
        path.write_bytes(b"x" * path.stat().st_size)

    report = store.verify(repair=False)
    assert report.checked == len(leaves) + 1
    assert sorted(report.corrupted) == sorted(path.name for _, path in leaves[:2])
    assert all(path.exists() for _, path in leaves[:2])  # repair=False moves nothing

    assert len(store.verify().corrupted) == 2
    assert not any(path.exists() for _, path in leaves[:2])
    import_file(io.BytesIO(DATA), store, cid_version=1)
    assert store.verify().corrupted == []
    freed = store.gc().freed_bytes
    assert freed == 2 * CHUNK_SIZE  # gc empties the quarantine
    assert list(store.quarantine_dir.iterdir()) == []


@pytest.mark.parametrize("pin", [True, False])
def test_import_is_made_durable_before_the_pin_is_written(
    store: Blockstore, monkeypatch: pytest.MonkeyPatch, pin: bool
) -> None:
    events: list[str] = []
    real_flush = Blockstore.flush
    real_rename = blockstore_module.os.rename

    def flush(self: Blockstore) -> None:
        events.append("flush")
        real_flush(self)

    def rename(src: Path, dst: Path) -> None:
        events.append(f"rename into {Path(dst).parent.name}")
        real_rename(src, dst)

    monkeypatch.setattr(Blockstore, "flush", flush)
    monkeypatch.setattr(blockstore_module.os, "rename", rename)
    import_file(io.BytesIO(DATA), store, pin=pin)
    pin_renames = [i for i, e in enumerate(events) if e == "rename into pins"]
    assert len(pin_renames) == (1 if pin else 0)
    last_block = max(
        i for i, e in enumerate(events) if e.startswith("rename into") and i not in pin_renames
    )
    flushes = [i for i, e in enumerate(events) if e == "flush"]
    assert len(flushes) == 1  # one sync per import, not one per block
    assert last_block < flushes[0]
    if pin:
        assert flushes[0] < pin_renames[0]


def test_flush_reports_a_failed_sync(store: Blockstore, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_syncfs(fd: int) -> int:
        blockstore_module.ctypes.set_errno(errno.EIO)
        return -1

    if blockstore_module._SYNCFS is None:
        pytest.skip("no syncfs on this platform")
    monkeypatch.setattr(blockstore_module, "_SYNCFS", failing_syncfs)
    with pytest.raises(blockstore_module.BlockWriteError) as info:
        store.flush()
    assert info.value.errno_code == errno.EIO


@pytest.mark.parametrize("direct_io", [True, False])
def test_round_trip_with_and_without_direct_io(tmp_path: Path, direct_io: bool) -> None:
    store = Blockstore(tmp_path / "store", direct_io=direct_io)
    result = import_file(io.BytesIO(DATA), store)
    assert b"".join(bytes(p) for p in iter_file(result.cid, store)) == DATA
    assert store.verify().corrupted == []


def test_file_system_without_o_direct_falls_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not blockstore_module._O_DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    real_open = blockstore_module.os.open
    refused = 0

    def no_direct_open(path: object, flags: int, mode: int = 0o777) -> int:
        nonlocal refused
        if flags & blockstore_module._O_DIRECT:
            refused += 1
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(blockstore_module.os, "open", no_direct_open)
    store = Blockstore(tmp_path / "store")
    result = import_file(io.BytesIO(DATA), store, workers=1)
    assert refused == 1  # tried once, then remembered
    assert b"".join(bytes(p) for p in iter_file(result.cid, store)) == DATA
