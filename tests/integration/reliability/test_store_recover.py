# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato store recover` after a real import killed in the middle of a block write.

The importer is a child process running `import_file` on a large file. The test freezes
it (SIGSTOP) at moments of its own until the child is caught with a block half-written
in tmp/ (a temp file not yet renamed under blocks/), then SIGKILLs it there: exactly
what a crash in the middle of a write leaves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mercato.config import load_settings
from mercato.storage.blockstore import Blockstore
from mercato.storage.unixfs import import_file

# 48 MiB: ~190 leaves of 256 KiB, so most of the import's time is spent writing blocks.
SIZE = 48 * 2**20
IMPORTER = """
import sys
from mercato.storage.blockstore import Blockstore
from mercato.storage.unixfs import import_file
print("started", flush=True)
import_file(sys.argv[2], Blockstore(sys.argv[1]), cid_version=1)
print("done", flush=True)
"""


def _block_temp_files(tmp_dir: Path) -> list[Path]:
    # Block temp files are named <key>.<random>.tmp; intents and pins have prefixes.
    return [
        p
        for p in tmp_dir.iterdir()
        if p.name.endswith(".tmp") and not p.name.startswith(("intent.", "pin."))
    ]


def _kill_mid_block_write(store_root: Path, source: Path) -> bool:
    """Run an import and SIGKILL it while a block temp file exists; True if caught so."""
    child = subprocess.Popen(
        [sys.executable, "-c", IMPORTER, str(store_root), str(source)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    tmp_dir = store_root / "tmp"
    try:
        while child.poll() is None:
            os.kill(child.pid, signal.SIGSTOP)
            if _block_temp_files(tmp_dir):
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
                return True
            os.kill(child.pid, signal.SIGCONT)
            time.sleep(0.003)
        return False  # the import finished before it was caught mid-write
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


def _recover(data_dir: Path) -> dict[str, object]:
    command = ["store", "recover", "--json", "--data-dir", str(data_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "mercato.cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_recover_removes_the_partial_files_of_a_killed_import(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store_root = load_settings(data_dir=data_dir).store_dir
    store = Blockstore(store_root)
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(SIZE))

    for _attempt in range(5):
        if _kill_mid_block_write(store_root, source):
            break
        store.gc()  # a finished import: start again from an empty store
        for pin in store.pins():
            store.unpin(pin)
        store.gc()
    else:
        raise AssertionError("the import was never caught in the middle of a block write")
    partial = _block_temp_files(store.tmp_dir)
    assert partial, "the killed import left no temp file"
    assert list(store.journal_dir.iterdir()), "the killed import left no intent"
    left = len(list(store.tmp_dir.iterdir()))

    report = _recover(data_dir)

    assert report["interrupted_imports"] == 1
    assert report["busy"] is False
    assert report["partial_files_removed"] == left
    assert list(store.tmp_dir.iterdir()) == []
    assert list(store.journal_dir.iterdir()) == []
    # The store is whole: a second run finds nothing, and the file imports again.
    assert _recover(data_dir)["partial_files_removed"] == 0
    result = import_file(source, Blockstore(store_root), cid_version=1)
    assert store.verify().corrupted == []
    assert store.is_pinned(result.cid)
