# SPDX-License-Identifier: AGPL-3.0-only
"""CID profiles (IPIP-499): the published fixtures, profile resolution, kubo's add
parameters, directory import, and reading back DAGs of either profile."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mercato.errors import ConfigError, DagFormatError, UnsupportedImportEntryError
from mercato.storage import directory
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import CODEC_DAG_PB, CODEC_RAW, cid_from_bytes, sha256_cid_bytes
from mercato.storage.dagpb import (
    UNIXFS_FILE,
    UNIXFS_HAMT_SHARD,
    UNIXFS_SYMLINK,
    PBLink,
    UnixFSData,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)
from mercato.storage.directory import (
    MAX_DIRECTORY_DEPTH,
    import_directory,
    murmur3_x64_64,
    only_hash_directory,
)
from mercato.storage.exporter import iter_file
from mercato.storage.profiles import (
    CID_V1_LEGACY,
    UNIXFS_V0_2015,
    UNIXFS_V1_2025,
    get_profile,
    profile_for,
)
from mercato.storage.unixfs import import_file, only_hash

MIB = 1_048_576


def test_hello_world_fixtures_of_ipip_499() -> None:
    # The small-file fixtures IPIP-499 publishes for each profile.
    assert str(only_hash([b"hello world"])) == "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
    assert (
        str(only_hash([b"hello world"], profile="unixfs-v1-2025"))
        == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    )


def test_empty_directory_fixtures(tmp_path: Path) -> None:
    # The well-known empty-directory CIDs the UnixFS spec lists (v0 and v1).
    assert str(only_hash_directory(tmp_path)) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    assert (
        str(only_hash_directory(tmp_path, profile="unixfs-v1-2025"))
        == "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    )


def test_profile_parameters_are_the_published_ones() -> None:
    assert (UNIXFS_V1_2025.cid_version, UNIXFS_V1_2025.raw_leaves) == (1, True)
    assert (UNIXFS_V1_2025.chunk_size, UNIXFS_V1_2025.max_links) == (1_048_576, 1_024)
    assert (UNIXFS_V1_2025.hamt_estimation, UNIXFS_V1_2025.hamt_fanout) == ("block", 256)
    assert (UNIXFS_V0_2015.cid_version, UNIXFS_V0_2015.raw_leaves) == (0, False)
    assert (UNIXFS_V0_2015.chunk_size, UNIXFS_V0_2015.max_links) == (262_144, 174)
    assert UNIXFS_V0_2015.hamt_estimation == "links"
    assert UNIXFS_V0_2015.hamt_threshold == UNIXFS_V1_2025.hamt_threshold == 262_144


def test_profile_for_resolves_names_and_versions() -> None:
    assert profile_for() is UNIXFS_V0_2015
    assert profile_for(cid_version=1) is CID_V1_LEGACY
    assert profile_for("unixfs-v1-2025") is UNIXFS_V1_2025
    assert profile_for("unixfs-v1-2025", 1) is UNIXFS_V1_2025


def test_profile_for_refuses_a_version_the_profile_does_not_make() -> None:
    with pytest.raises(ConfigError, match="makes CIDv1, not CIDv0"):
        profile_for("unixfs-v1-2025", 0)


def test_unknown_profile_is_refused_with_the_known_names() -> None:
    with pytest.raises(ConfigError, match="unixfs-v0-2015, unixfs-v1-2025"):
        get_profile("unixfs-v2-2030")
    with pytest.raises(ConfigError):
        only_hash([b"x"], profile="kubo-latest")


def test_kubo_add_params_ask_for_every_file_parameter() -> None:
    assert UNIXFS_V1_2025.kubo_add_params() == {
        "cid-version": "1",
        "raw-leaves": "true",
        "chunker": "size-1048576",
        "hash": "sha2-256",
        "trickle": "false",
        "max-file-links": "1024",
    }
    # kubo's built-in width is not sent, so a kubo older than 0.40 still takes it.
    assert "max-file-links" not in UNIXFS_V0_2015.kubo_add_params()
    assert UNIXFS_V0_2015.kubo_add_params()["chunker"] == "size-262144"


def test_v1_2025_file_has_raw_leaves_of_one_mib(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "store")
    data = os.urandom(2 * MIB + 3)
    result = import_file([data], store, profile="unixfs-v1-2025")
    assert result.cid.version == 1 and result.cid.codec.code == CODEC_DAG_PB
    node = decode_node(store.get(result.cid))
    assert node.data is not None
    meta = decode_unixfs(node.data)
    assert meta.blocksizes == [MIB, MIB, 3]
    assert [link.hash[:2] for link in node.links] == [bytes((1, CODEC_RAW))] * 3
    assert b"".join(bytes(p) for p in iter_file(result.cid, store)) == data
    assert result.dag_size == len(store.get(result.cid)) + len(data)


def test_v1_2025_small_file_is_one_raw_block() -> None:
    cid = only_hash([b"x" * MIB], profile="unixfs-v1-2025")
    assert cid.codec.code == CODEC_RAW


def test_murmur3_matches_the_js_implementation() -> None:
    # h1 of MurmurHash3 x64-128 as @multiformats/murmur3 gives it (first 8 bytes).
    vectors = {
        b"": "0000000000000000",
        b"hello": "cbd8a7b341bd9b02",
        b"0123456789abcdef": "4be06d94cf4ad1a7",
        b"0123456789abcdefXYZ": "99d375026c4a901d",
        b"a" * 40: "32a6cead6b7128db",
    }
    for data, expected in vectors.items():
        assert murmur3_x64_64(data).to_bytes(8, "big").hex() == expected


def test_hidden_entries_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    before = only_hash_directory(tmp_path)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".env").write_text("SECRET=1")
    assert only_hash_directory(tmp_path) == before


def test_symlinks_are_recorded_never_followed(tmp_path: Path) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "link").symlink_to("/etc/hostname")
    store = Blockstore(tmp_path / "store")
    root = import_directory(folder, store)
    (link,) = decode_node(store.get(root.cid)).links
    child = decode_node(store.get(cid_from_bytes(link.hash)))
    assert child.data is not None
    meta = decode_unixfs(child.data)
    assert (meta.type, bytes(meta.data or b"")) == (UNIXFS_SYMLINK, b"/etc/hostname")
    assert root.size == 0  # nothing was read through the link


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UnsupportedImportEntryError, match="not a file, a directory or a symlink"):
        only_hash_directory(tmp_path)


def test_a_file_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        only_hash_directory(tmp_path / "f")


def test_a_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    os.close(os.open(os.path.join(os.fsencode(tmp_path), b"bad\xff"), os.O_CREAT | os.O_WRONLY))
    with pytest.raises(UnsupportedImportEntryError, match="not UTF-8"):
        only_hash_directory(tmp_path)


def _store_node(store: Blockstore, links: list[PBLink], meta: UnixFSData) -> bytes:
    block = encode_node(links, encode_unixfs(meta))
    cid = cid_from_bytes(sha256_cid_bytes(1, CODEC_DAG_PB, hashlib.sha256(block).digest()))
    store.put(cid, block)
    return bytes(cid)


def test_read_accepts_a_node_of_1025_links_whose_sizes_agree(tmp_path: Path) -> None:
    # Wider than either profile writes, but valid UnixFS (other importers make such
    # DAGs): verification checks hashes and sizes, not the width.
    store = Blockstore(tmp_path / "store")
    leaf = import_file([b"ab"], store, profile="unixfs-v1-2025", pin=False)
    links = [PBLink(hash=bytes(leaf.cid), name="", tsize=2)] * 1025
    root = _store_node(
        store, links, UnixFSData(type=UNIXFS_FILE, filesize=2050, blocksizes=[2] * 1025)
    )
    assert b"".join(bytes(p) for p in iter_file(cid_from_bytes(root), store)) == b"ab" * 1025


def test_read_refuses_a_node_claiming_1025_links_it_does_not_have(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "store")
    leaf = import_file([b"ab"], store, profile="unixfs-v1-2025", pin=False)
    links = [PBLink(hash=bytes(leaf.cid), name="", tsize=2)] * 1024
    root = _store_node(
        store, links, UnixFSData(type=UNIXFS_FILE, filesize=2050, blocksizes=[2] * 1025)
    )
    with pytest.raises(DagFormatError, match="1024 links but 1025 blocksizes"):
        b"".join(bytes(p) for p in iter_file(cid_from_bytes(root), store))


@pytest.mark.parametrize("profile", ["unixfs-v0-2015", "unixfs-v1-2025"])
def test_a_pinned_sharded_directory_survives_gc_and_reads_back(
    tmp_path: Path, profile: str
) -> None:
    folder = tmp_path / "wide"
    folder.mkdir()
    # 2,500 names of 120 bytes: past 256 KiB under either estimate, so a HAMT.
    for i in range(2500):
        (folder / f"{i:0120d}").write_bytes(str(i).encode())
    store = Blockstore(tmp_path / "store")
    result = import_directory(folder, store, profile=profile)
    assert result.cid == only_hash_directory(folder, profile=profile)
    assert result.size == sum(len(str(i)) for i in range(2500))
    import_file([b"unpinned"], store, pin=False)
    assert store.gc().removed_blocks == 1  # only the unpinned file
    root = decode_node(store.get(result.cid))
    assert root.data is not None and decode_unixfs(root.data).type == UNIXFS_HAMT_SHARD
    # Look entry 42 up as a HAMT reader does: slot d is the d-th byte of the name's
    # murmur3 hash; the link is the slot's hex digits plus the name, or a sub-shard.
    name = f"{42:0120d}"
    key = murmur3_x64_64(name.encode()).to_bytes(8, "big")
    node = root
    for depth in range(8):
        label = f"{key[depth]:02X}"
        link = next(x for x in node.links if (x.name or "").startswith(label))
        if link.name == label + name:
            break
        assert link.name == label  # a shard several names share
        node = decode_node(store.get(cid_from_bytes(link.hash)))
    assert b"".join(bytes(p) for p in iter_file(cid_from_bytes(link.hash), store)) == b"42"


def test_nesting_past_the_limit_is_refused(tmp_path: Path) -> None:
    deep = tmp_path
    for _ in range(MAX_DIRECTORY_DEPTH + 1):
        deep = deep / "d"
    deep.mkdir(parents=True)
    with pytest.raises(UnsupportedImportEntryError, match="nested more than 256"):
        only_hash_directory(tmp_path)


def test_names_whose_hashes_collide_in_64_bits_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Finding a real 64-bit murmur3 collision takes a search, so every name is given the
    # same hash here: the shard cannot separate them within the hash's 64 bits.
    monkeypatch.setattr(directory, "_hamt_key", lambda name: 0x1234)
    for i in range(3000):
        (tmp_path / f"{i:0100d}").write_bytes(b"")
    with pytest.raises(UnsupportedImportEntryError, match="collide in all 64 bits"):
        only_hash_directory(tmp_path)
