# SPDX-License-Identifier: AGPL-3.0-only
"""Our CIDs against an independent implementation: the npm `ipfs-unixfs-importer`, run
by node with kubo's settings (unixfs_cid.mjs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mercato.storage.unixfs import CHUNK_SIZE, MAX_LINKS, only_hash

from .helpers import pseudo_random

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("unixfs_cid.mjs")
REPO = Path(__file__).resolve().parents[3]
SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, MAX_LINKS * CHUNK_SIZE + 1, 50_000_000]


def reference_cid(path: Path, version: int) -> str:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "ipfs-unixfs-importer").is_dir():
        pytest.fail("node and the npm packages are needed: run scripts/bootstrap")
    done = subprocess.run(
        [node, str(SCRIPT), str(path), str(version)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


@pytest.mark.parametrize("size", SIZES)
def test_cids_match_the_js_importer(tmp_path: Path, size: int) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(pseudo_random(size, seed=str(size).encode()))
    for version in (0, 1):
        assert str(only_hash(path, cid_version=version)) == reference_cid(path, version)
