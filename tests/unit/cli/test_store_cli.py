# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato store verify | gc | pins | unpin | recover` on a real store in a data directory."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mercato.cli.app import _register_commands, app
from mercato.cli.store import EXIT_DAMAGED_BLOCKS, EXIT_NO_STORE, EXIT_NOT_PINNED
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import block_key, cid_from_bytes
from mercato.storage.dagpb import decode_node
from mercato.storage.unixfs import CHUNK_SIZE, ImportResult, import_file

_register_commands()
runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Blockstore:
    return Blockstore(data_dir / "store")  # where the node keeps it


@pytest.fixture
def imported(store: Blockstore) -> ImportResult:
    data = b"".join(i.to_bytes(4, "big") * (CHUNK_SIZE // 4) for i in range(3))
    return import_file(io.BytesIO(data), store, cid_version=1)


def leaf(store: Blockstore, root: ImportResult, index: int) -> tuple[str, Path]:
    """(CID as the CLI prints it, file) of a raw leaf."""
    cid = cid_from_bytes(decode_node(store.get(root.cid)).links[index].hash)
    key = block_key(cid)
    return str(cid), store.blocks_dir / key[-3:-1] / key


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["store", *args])
    return result.exit_code, result.stdout


def test_verify_of_an_intact_store(data_dir: Path, imported: ImportResult) -> None:
    code, out = run("verify", "--data-dir", str(data_dir))
    assert code == 0
    assert out.strip() == "Checked 4 blocks: all intact."


def test_verify_names_the_damaged_block_and_quarantines_it(
    data_dir: Path, store: Blockstore, imported: ImportResult
) -> None:
    cid, path = leaf(store, imported, 1)
    path.write_bytes(b"\0" * 10)
    code, out = run("verify", "--data-dir", str(data_dir))
    assert code == EXIT_DAMAGED_BLOCKS
    assert f"damaged: {cid}" in out
    assert not path.exists()
    assert len(list(store.quarantine_dir.iterdir())) == 1


def test_verify_no_repair_only_reports(
    data_dir: Path, store: Blockstore, imported: ImportResult
) -> None:
    cid, path = leaf(store, imported, 2)
    path.write_bytes(b"\0" * 10)
    code, out = run("verify", "--no-repair", "--json", "--data-dir", str(data_dir))
    assert code == EXIT_DAMAGED_BLOCKS
    assert json.loads(out) == {"checked": 4, "damaged": [cid], "repaired": False}
    assert path.exists()


def test_gc_removes_what_no_pin_holds(
    data_dir: Path, store: Blockstore, imported: ImportResult
) -> None:
    loose = import_file(io.BytesIO(b"not pinned"), store, pin=False)
    size = store.size(loose.cid)  # one small dag-pb leaf
    code, out = run("gc", "--json", "--data-dir", str(data_dir))
    assert code == 0
    assert json.loads(out) == {"removed_blocks": 1, "freed_bytes": size}
    assert not store.has(loose.cid)
    assert store.has(imported.cid)


def test_pins_lists_and_unpin_releases_a_root_for_gc(
    data_dir: Path, store: Blockstore, imported: ImportResult
) -> None:
    other = import_file(io.BytesIO(b"another pinned file"), store, cid_version=1)
    code, out = run("pins", "--json", "--data-dir", str(data_dir))
    assert code == 0
    assert json.loads(out) == {"pins": sorted([str(imported.cid), str(other.cid)])}
    code, out = run("unpin", str(other.cid), "--data-dir", str(data_dir))
    assert code == 0 and f"Unpinned {other.cid}" in out
    assert store.has(other.cid)  # only the next gc frees it
    code, out = run("gc", "--json", "--data-dir", str(data_dir))
    assert json.loads(out)["removed_blocks"] == 1 and not store.has(other.cid)
    assert store.has(imported.cid)
    code, out = run("pins", "--data-dir", str(data_dir))
    assert (code, out.split()) == (0, [str(imported.cid)])


def test_unpin_of_what_is_not_pinned_or_not_a_cid(data_dir: Path, imported: ImportResult) -> None:
    loose = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    result = runner.invoke(app, ["store", "unpin", loose, "--data-dir", str(data_dir)])
    assert result.exit_code == EXIT_NOT_PINNED
    said = " ".join(result.stderr.split())  # the console wraps long lines
    assert f"{loose} is not pinned here; 'mercato store pins' lists the pins" in said
    result = runner.invoke(app, ["store", "unpin", "not-a-cid", "--data-dir", str(data_dir)])
    assert result.exit_code == 32 and "not-a-cid" in result.stderr  # InvalidCIDError


def test_recover_with_nothing_to_do(data_dir: Path, imported: ImportResult) -> None:
    code, out = run("recover", "--data-dir", str(data_dir))
    assert (code, out.strip()) == (0, "Nothing to recover: no import was cut off.")


def test_recover_after_a_cut_off_import(
    data_dir: Path, store: Blockstore, imported: ImportResult
) -> None:
    # What a writer that died leaves behind: an intent file nobody holds a lock on
    # (the killed-process version of this is in tests/unit/storage/test_recover.py).
    (store.journal_dir / "0123456789abcdef.intent").write_text(f"{time.time_ns() - 10**9} 1\n")
    cid, path = leaf(store, imported, 0)
    path.write_bytes(b"")
    code, out = run("recover", "--json", "--data-dir", str(data_dir))
    assert code == 0
    assert json.loads(out) == {
        "interrupted_imports": 1,
        "checked": 4,
        "damaged": [cid],
        "partial_files_removed": 0,
        "busy": False,
    }
    assert list(store.journal_dir.iterdir()) == []


def test_a_data_dir_without_a_store_is_refused(tmp_path: Path) -> None:
    code, _ = run("verify", "--data-dir", str(tmp_path / "empty"))
    assert code == EXIT_NO_STORE
    assert not (tmp_path / "empty" / "store").exists()  # nothing was created
