# SPDX-License-Identifier: AGPL-3.0-only
"""Our CIDs against an independent implementation: the npm `ipfs-unixfs-importer`, run
by node with each CID profile's parameters spelled out (unixfs_cid.mjs), which also
checks them against the library's own `profile` option.

Sizes sit on the chunk and link boundaries of each profile: 0, 1, a chunk -1/0/+1, and
as many chunks as a node holds links, and one more (the tree grows a level). The large
inputs are a seeded pattern both sides generate, never written to disk. Directories
cover nesting, empty files and folders, hidden entries, and the HAMT threshold: exactly
at it (a plain directory) and one byte past it (sharded), under each profile's own way
of estimating a directory's size.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mercato.storage.blockstore import Blockstore
from mercato.storage.dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_HAMT_SHARD,
    decode_node,
    decode_unixfs,
)
from mercato.storage.directory import import_directory
from mercato.storage.profiles import UNIXFS_V0_2015, UNIXFS_V1_2025
from mercato.storage.unixfs import CHUNK_SIZE, MAX_LINKS, only_hash

from .helpers import pseudo_random

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("unixfs_cid.mjs")
REPO = Path(__file__).resolve().parents[3]
SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, MAX_LINKS * CHUNK_SIZE + 1, 50_000_000]
MIB = UNIXFS_V1_2025.chunk_size
V1_SIZES = [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + 7]
_UNIT = 262_144


def reference_cid(kind: str, target: str, profile: str, timeout: int = 120) -> str:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "ipfs-unixfs-importer").is_dir():
        pytest.fail("node and the npm packages are needed: run scripts/bootstrap")
    done = subprocess.run(
        [node, str(SCRIPT), kind, target, profile],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    return done.stdout.strip()


def pattern(size: int) -> Iterator[bytes]:
    """The seeded pattern unixfs_cid.mjs generates: 256 KiB units, unit i = i (8 bytes,
    big-endian) + the rest of a base block of sha256(seed || counter) in counter mode."""
    base = b"".join(
        hashlib.sha256(b"mercato-cid-pattern" + n.to_bytes(8, "big")).digest()
        for n in range(_UNIT // 32)
    )
    for i in range(0, (size + _UNIT - 1) // _UNIT):
        yield (i.to_bytes(8, "big") + base[8:])[: min(_UNIT, size - i * _UNIT)]


@pytest.mark.parametrize("size", SIZES)
def test_cids_match_the_js_importer(tmp_path: Path, size: int) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(pseudo_random(size, seed=str(size).encode()))
    for version in (0, 1):
        assert str(only_hash(path, cid_version=version)) == reference_cid(
            "file", str(path), str(version)
        )


@pytest.mark.parametrize("size", V1_SIZES)
def test_unixfs_v1_2025_cids_match_the_js_importer(tmp_path: Path, size: int) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(pseudo_random(size, seed=str(size).encode()))
    ours = str(only_hash(path, profile="unixfs-v1-2025"))
    assert ours == reference_cid("file", str(path), "unixfs-v1-2025")
    # Up to one chunk the file is a single raw block; past it a dag-pb CIDv1 root.
    assert ours.startswith("bafkrei" if size <= MIB else "bafybei")


@pytest.mark.parametrize(
    ("profile", "chunks"),
    [
        ("unixfs-v0-2015", UNIXFS_V0_2015.max_links),
        ("unixfs-v0-2015", UNIXFS_V0_2015.max_links + 1),
        ("unixfs-v1-2025", UNIXFS_V1_2025.max_links),
        ("unixfs-v1-2025", UNIXFS_V1_2025.max_links + 1),
    ],
)
def test_link_boundaries_match_the_js_importer(profile: str, chunks: int) -> None:
    # A full node of links (one level under the root) and one chunk more (two levels):
    # 1,024 and 1,025 MiB under unixfs-v1-2025, so generated, never stored.
    size = chunks * (UNIXFS_V1_2025 if profile == "unixfs-v1-2025" else UNIXFS_V0_2015).chunk_size
    ours = str(only_hash(pattern(size), profile=profile))
    assert ours == reference_cid("pattern", str(size), profile, timeout=900)


def _tree(root: Path) -> Path:
    (root / "model" / "weights" / "deeper").mkdir(parents=True)
    (root / "model" / "empty-folder").mkdir()
    (root / "model" / "README.md").write_text("# A model\n")
    (root / "model" / "empty.bin").write_bytes(b"")
    (root / "model" / ".hidden").write_text("left out, as ipfs add leaves it out")
    (root / "model" / "weights" / "w.bin").write_bytes(pseudo_random(MIB + 5, seed=b"w"))
    (root / "model" / "weights" / "deeper" / "café ☕.txt").write_text("UTF-8 names")
    return root / "model"


@pytest.mark.parametrize("profile", ["unixfs-v0-2015", "1", "unixfs-v1-2025"])
def test_directories_match_the_js_importer(tmp_path: Path, profile: str) -> None:
    folder = _tree(tmp_path)
    if profile == "1":
        ours = import_directory(folder, None, cid_version=1).cid
    else:
        ours = import_directory(folder, None, profile=profile).cid
    assert str(ours) == reference_cid("dir", str(folder), profile)


def _names_at_threshold(profile: str, extra: int) -> list[str]:
    """Names of one-byte files whose directory estimate is 256 KiB + `extra`.

    unixfs-v0-2015 counts name + CID bytes (a CIDv0 is 34 bytes): 4,096 names of 30
    characters are 262,144. unixfs-v1-2025 counts the encoded node: 4 bytes of Data, and
    per link 2 bytes of framing + Hash (2 + 36) + Name (2 + length) + Tsize (2), so 74
    bytes for a 30-character name; 3,542 links make 262,112, and 32 names one character
    longer reach 262,144.
    """
    lengths = [30] * 4096 if profile == "unixfs-v0-2015" else [31] * 32 + [30] * 3510
    for i in range(extra):
        lengths[-1 - i] += 1
    return [f"{i:0{length}d}" for i, length in enumerate(lengths)]


@pytest.mark.parametrize("profile", ["unixfs-v0-2015", "unixfs-v1-2025"])
@pytest.mark.parametrize("extra", [0, 1])
def test_hamt_threshold_matches_the_js_importer(tmp_path: Path, profile: str, extra: int) -> None:
    folder = tmp_path / "wide"
    folder.mkdir()
    for name in _names_at_threshold(profile, extra):
        (folder / name).write_bytes(b"x")
    store = Blockstore(tmp_path / "store")
    result = import_directory(folder, store, profile=profile)
    root = decode_node(store.get(result.cid))
    assert root.data is not None
    kind = decode_unixfs(root.data).type
    # At the threshold the directory stays plain; one byte past it, it is a HAMT.
    assert kind == (UNIXFS_HAMT_SHARD if extra else UNIXFS_DIRECTORY)
    assert str(result.cid) == reference_cid("dir", str(folder), profile)
