# SPDX-License-Identifier: AGPL-3.0-only
"""Recovery after an unclean stop: what a cut-off import wrote is re-checked, nothing more.

A writer is a real child process that holds `Blockstore.writing()` and is SIGKILLed. A
real power cut cannot be produced here, so the test then damages one of the blocks the
child wrote (truncates it, or overwrites it with stale bytes of the same size): the
files a power cut can leave under a key whose data never reached the disk.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from multiformats import CID, multihash

from mercato.errors import BlockHashMismatchError, BlockWriteError
from mercato.storage.blockstore import Blockstore, RecoverResult
from mercato.storage.cids import block_key
from mercato.storage.exporter import iter_file
from mercato.storage.unixfs import CHUNK_SIZE, import_file

from .sample_data import pseudo_random

DATA = pseudo_random(3 * CHUNK_SIZE + 17)

# Stores every 256 KiB chunk of a file as a raw block (the leaves `import_file` makes
# with CIDv1) inside `writing()`, prints each block's path, then waits to be killed.
CHILD = """
import sys, time, hashlib
from multiformats import CID, multihash
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import block_key
store = Blockstore(sys.argv[1])
data = open(sys.argv[2], "rb").read()
with store.writing():
    for start in range(0, len(data), 262144):
        chunk = data[start:start + 262144]
        mh = multihash.wrap(hashlib.sha256(chunk).digest(), "sha2-256")
        cid = CID("base32", 1, "raw", mh)
        store.put(cid, chunk)
        print(store._path(block_key(cid)), flush=True)
    print("ready", flush=True)
    time.sleep(120)
"""


class Writer:
    """A child process in the middle of an import."""

    def __init__(self, store_root: Path, source: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store_root), str(source)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.blocks: list[Path] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == "ready":
                break
            self.blocks.append(Path(line.strip()))
        else:
            raise RuntimeError(f"the writer exited early with {self.process.wait()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(DATA)
    return path


@pytest.fixture
def writer(store: Blockstore, source: Path) -> Iterator[Writer]:
    child = Writer(store.root, source)
    try:
        yield child
    finally:
        child.kill()


def raw_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.wrap(hashlib.sha256(data).digest(), "sha2-256"))


def intents(store: Blockstore) -> list[Path]:
    return sorted(store.journal_dir.iterdir())


def backdate(store: Blockstore, keep: list[Path]) -> int:
    """Make the stored blocks not in `keep` look written an hour ago; returns how many."""
    past = time.time() - 3600
    count = 0
    for shard in store.blocks_dir.iterdir():
        for path in shard.iterdir():
            if path not in keep:
                os.utime(path, (past, past))
                count += 1
    return count


def test_recover_quarantines_exactly_the_damaged_block_of_a_killed_import(
    store: Blockstore, writer: Writer
) -> None:
    # An import that finished well before the killed one started.
    import_file(io.BytesIO(pseudo_random(2 * CHUNK_SIZE, seed=b"older")), store)
    assert backdate(store, keep=writer.blocks) == 3
    writer.kill()
    damaged = writer.blocks[1]
    os.truncate(damaged, 1000)

    assert len(intents(store)) == 1
    result = store.recover()

    # Only the four blocks the killed import wrote were re-hashed, not the older three.
    assert result == RecoverResult(intents=1, checked=4, corrupted=[damaged.name])
    assert not damaged.exists()
    assert [p.name.split(".")[0] for p in store.quarantine_dir.iterdir()] == [damaged.name]
    assert intents(store) == []
    assert Blockstore(store.root).recover() == RecoverResult(intents=0, checked=0, corrupted=[])


def test_a_live_writer_is_left_alone(store: Blockstore, writer: Writer) -> None:
    # Its temp files are not partial: tmp/ is left alone while it holds the store.
    assert store.recover() == RecoverResult(intents=0, checked=0, corrupted=[], tmp_busy=True)
    assert len(intents(store)) == 1
    writer.kill()
    # Now its writer is gone: its blocks are checked (all good) and the intent removed.
    assert store.recover() == RecoverResult(intents=1, checked=4, corrupted=[])
    assert intents(store) == []


def test_a_clean_store_checks_nothing(store: Blockstore) -> None:
    import_file(io.BytesIO(DATA), store)
    assert intents(store) == []  # removed once the import was durable
    assert store.recover() == RecoverResult(intents=0, checked=0, corrupted=[])


def test_next_import_recovers_before_it_reuses_a_damaged_block(
    store: Blockstore, writer: Writer
) -> None:
    writer.kill()
    # Stale bytes of the right size: `put` alone would keep this file as it is.
    damaged = writer.blocks[0]
    damaged.write_bytes(b"\0" * damaged.stat().st_size)

    fresh = Blockstore(store.root)  # e.g. the CLI after a reboot
    result = import_file(io.BytesIO(DATA), fresh, cid_version=1)

    assert b"".join(bytes(p) for p in iter_file(result.cid, fresh)) == DATA
    assert intents(fresh) == []


def test_an_import_that_fails_is_made_durable_and_leaves_no_intent(store: Blockstore) -> None:
    with pytest.raises(BlockHashMismatchError), store.writing():
        store.put(raw_cid(b"block"), b"block")
        store.put(raw_cid(b"block"), b"other bytes")
    assert intents(store) == []


def test_an_intent_stays_when_even_the_flush_fails(
    store: Blockstore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A failing disk sync cannot be produced here: the flush is replaced by one that fails.
    def failing_flush() -> None:
        raise BlockWriteError("sync failed", path=str(store.root), errno_code=5)

    monkeypatch.setattr(store, "flush", failing_flush)
    with pytest.raises(BlockHashMismatchError), store.writing():
        store.put(raw_cid(b"kept"), b"kept")
        store.put(raw_cid(b"kept"), b"not it")
    assert len(intents(store)) == 1
    result = Blockstore(store.root).recover()
    assert result.intents == 1
    assert result.checked == 1
    assert intents(store) == []


@pytest.mark.parametrize("repair", [True, False])
def test_full_verify_settles_stale_intents_only_when_repairing(
    store: Blockstore, writer: Writer, repair: bool
) -> None:
    writer.kill()
    os.truncate(writer.blocks[2], 0)
    result = store.verify(repair=repair)
    assert result.corrupted == [writer.blocks[2].name]
    assert len(intents(store)) == (0 if repair else 1)
    assert block_key(raw_cid(DATA[2 * CHUNK_SIZE : 3 * CHUNK_SIZE])) == writer.blocks[2].name
