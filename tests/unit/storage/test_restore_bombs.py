# SPDX-License-Identifier: AGPL-3.0-only
"""Restoring a package someone else made: DAG bombs (one block repeated thousands of
times), nodes that stream more than their parent declared, and tar archives with
links, devices, escaping paths, too many members or oversized headers."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from multiformats import CID, multihash

from mercato.client.artifacts import (
    MAX_ARCHIVE_MEMBERS,
    MAX_ARTIFACT_BYTES,
    artifact_size_limit,
    extract_package_tar,
    restore_package,
)
from mercato.errors import ArtifactTooLargeError, DagFormatError, UnsafeArchiveError
from mercato.storage.blockstore import Blockstore
from mercato.storage.dagpb import UNIXFS_FILE, PBLink, UnixFSData, encode_node, encode_unixfs
from mercato.storage.exporter import declared_size, iter_file

from .sample_data import pseudo_random

LEAF = pseudo_random(256 * 1024)


def _cid(block: bytes, codec: str) -> CID:
    mh = multihash.wrap(hashlib.sha256(block).digest(), "sha2-256")
    return CID("base58btc", 0, codec, mh) if codec == "dag-pb" else CID("base32", 1, codec, mh)


def _node(store: Blockstore, links: list[tuple[CID, int]], filesize: int | None = None) -> CID:
    sizes = [size for _, size in links]
    meta = UnixFSData(
        type=UNIXFS_FILE, filesize=sum(sizes) if filesize is None else filesize, blocksizes=sizes
    )
    block = encode_node([PBLink(bytes(c), "", s) for c, s in links], encode_unixfs(meta))
    cid = _cid(block, "dag-pb")
    store.put(cid, block)
    return cid


@pytest.fixture
def leaf(store: Blockstore) -> CID:
    cid = _cid(LEAF, "raw")
    store.put(cid, LEAF)
    return cid


def _leftovers(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(".mercato-restore-")]


def test_a_dag_repeating_one_block_is_refused_before_anything_is_written(
    store: Blockstore, leaf: CID, tmp_path: Path
) -> None:
    # ~900 KB of DAG: 20,000 links to one 256 KiB block declare a 5 GiB file.
    root = _node(store, [(leaf, len(LEAF))] * 20_000)
    assert declared_size(root, store) == 20_000 * len(LEAF) > MAX_ARTIFACT_BYTES
    dest = tmp_path / "out" / "package"
    with pytest.raises(ArtifactTooLargeError) as info:
        restore_package(store, root, None, bytes(32), dest)
    assert info.value.limit == MAX_ARTIFACT_BYTES
    with pytest.raises(ArtifactTooLargeError) as info:  # a small manifest bounds it tighter
        restore_package(store, root, None, bytes(32), dest, max_size=1024 * 1024)
    assert info.value.limit == 1024 * 1024
    assert not dest.exists()
    assert not (tmp_path / "out").exists() or _leftovers(tmp_path / "out") == []


def test_a_node_that_holds_more_than_its_parent_declares_fails_before_streaming(
    store: Blockstore, leaf: CID, tmp_path: Path
) -> None:
    # The root honestly declares 1 MiB; the node below it repeats the leaf 4,000 times.
    bomb = _node(store, [(leaf, len(LEAF))] * 4_000)
    root = _node(store, [(bomb, 1024 * 1024)])
    assert declared_size(root, store) == 1024 * 1024
    pieces = iter_file(root, store)
    with pytest.raises(DagFormatError, match="its parent says 1048576"):
        next(pieces)
    dest = tmp_path / "package"
    with pytest.raises(DagFormatError):
        restore_package(store, root, None, bytes(32), dest, max_size=2 * 1024 * 1024)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_a_node_whose_own_sizes_disagree_is_refused(store: Blockstore, leaf: CID) -> None:
    root = _node(store, [(leaf, len(LEAF))], filesize=10)
    with pytest.raises(DagFormatError):
        next(iter_file(root, store))


def test_artifact_limits_cover_an_honest_package() -> None:
    assert artifact_size_limit(1000, 2, encrypted=False) >= 1000 + 2 * 3 * 512 + 1024
    assert artifact_size_limit(1000, 2, encrypted=True) > artifact_size_limit(
        1000, 2, encrypted=False
    )


def _tar(path: Path, members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"weights") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, target: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "member",
    [
        _special("model.onnx", tarfile.SYMTYPE, "/etc/passwd"),
        _special("model.onnx", tarfile.LNKTYPE, "README.md"),
        _special("dev", tarfile.CHRTYPE),
        _special("dev", tarfile.BLKTYPE),
        _special("pipe", tarfile.FIFOTYPE),
        _file("/etc/cron.d/evil"),
        _file("../outside.txt"),
        _file("sub/../../outside.txt"),
        _file("C:/windows.txt"),
        _file("a\\..\\b.txt"),
    ],
    ids=["symlink", "hardlink", "chr", "blk", "fifo", "abs", "dotdot", "deep", "drive", "bslash"],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    tar = _tar(tmp_path / "a.tar", [_file("README.md"), member])
    with pytest.raises(UnsafeArchiveError) as info:
        extract_package_tar(tar, tmp_path / "out")
    assert info.value.code == "archive_unsafe"
    assert not (tmp_path / "outside.txt").exists()


def test_too_many_members_are_refused_before_unpacking(tmp_path: Path) -> None:
    members = [_file(f"f{i}.bin", b"") for i in range(MAX_ARCHIVE_MEMBERS + 1)]
    tar = _tar(tmp_path / "a.tar", members)
    with pytest.raises(UnsafeArchiveError):
        extract_package_tar(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_oversized_pax_record_is_refused_before_tarfile_reads_it(tmp_path: Path) -> None:
    info, data = _file("model.onnx")
    info.pax_headers = {"comment": "x" * (100 * 1024)}
    tar = _tar(tmp_path / "a.tar", [(info, data)])
    with pytest.raises(UnsafeArchiveError):
        extract_package_tar(tar, tmp_path / "out")


def test_unpacked_bytes_are_counted_whatever_the_headers_say(tmp_path: Path) -> None:
    tar = _tar(tmp_path / "a.tar", [_file("a.bin", b"a" * 4000), _file("b.bin", b"b" * 4000)])
    with pytest.raises(ArtifactTooLargeError):
        extract_package_tar(tar, tmp_path / "out", max_bytes=6000)
    extract_package_tar(tar, tmp_path / "ok", max_bytes=8000)
    assert (tmp_path / "ok" / "b.bin").read_bytes() == b"b" * 4000


def test_plain_files_and_folders_unpack(tmp_path: Path) -> None:
    folder = tarfile.TarInfo("sub")
    folder.type = tarfile.DIRTYPE
    tar = _tar(tmp_path / "a.tar", [(folder, None), _file("sub/x.bin", b"x"), _file("README.md")])
    extract_package_tar(tar, tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "x.bin").read_bytes() == b"x"
    assert (tmp_path / "out" / "README.md").stat().st_mode & 0o777 == 0o644
