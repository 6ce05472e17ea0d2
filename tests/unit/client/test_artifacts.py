# SPDX-License-Identifier: AGPL-3.0-only
"""From a package to stored artifact bytes and back: determinism, CIDs, all-or-nothing restore."""

from __future__ import annotations

import hashlib
import stat
import tarfile
from pathlib import Path

import pytest

from mercato.client.artifacts import (
    KeyStore,
    cid_digest,
    cid_from_digest,
    package_tar_stream,
    restore_package,
)
from mercato.crypto import StreamEncryptor, generate_content_key
from mercato.errors import (
    BlockNotFoundError,
    ConfigError,
    ContentKeyMissingError,
    DownloadError,
    InvalidKeyMaterialError,
    PlaintextHashMismatchError,
    WrongContentKeyError,
)
from mercato.models.package import ModelPackage, load_package
from mercato.models.samples import build_samples
from mercato.storage.blockstore import Blockstore
from mercato.storage.unixfs import import_file, only_hash


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    return build_samples(tmp_path_factory.mktemp("samples"), ["digits-mlp"])["digits-mlp"]


def _tar_bytes(package: ModelPackage) -> bytes:
    return b"".join(package_tar_stream(package))


def test_tar_is_deterministic_and_a_valid_archive(package: ModelPackage, tmp_path: Path) -> None:
    first = _tar_bytes(package)
    assert _tar_bytes(load_package(package.root)) == first
    path = tmp_path / "a.tar"
    path.write_bytes(first)
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(f.path for f in package.files)
    assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 for m in members)


def test_cid_digest_round_trip_matches_ipfs_vectors() -> None:
    cid = only_hash([b"hello"])
    assert str(cid) == "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"
    assert cid_from_digest(cid_digest(cid)) == cid
    assert len(cid_digest(cid)) == 32


def _store_encrypted(package: ModelPackage, store: Blockstore) -> tuple[bytes, object, bytes]:
    key = generate_content_key()
    encryptor = StreamEncryptor(key)
    result = import_file(encryptor.encrypt(package_tar_stream(package)), store)
    assert encryptor.result is not None
    return key, result.cid, encryptor.result.plaintext_sha256


def test_restore_of_a_paid_artifact_gives_the_package_back(
    package: ModelPackage, tmp_path: Path
) -> None:
    store = Blockstore(tmp_path / "store")
    key, cid, sha = _store_encrypted(package, store)
    seen: list[int] = []
    restore_package(store, cid, key, sha, tmp_path / "out", progress=seen.append)  # type: ignore[arg-type]
    for entry in package.files:
        assert (tmp_path / "out" / entry.path).read_bytes() == (
            package.root / entry.path
        ).read_bytes()
    assert sum(seen) > package.total_size  # the ciphertext is a little longer than the files
    assert sha == hashlib.sha256(_tar_bytes(package)).digest()


def test_wrong_key_or_wrong_hash_writes_nothing(package: ModelPackage, tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "store")
    key, cid, sha = _store_encrypted(package, store)
    dest = tmp_path / "out"
    with pytest.raises(WrongContentKeyError):
        restore_package(store, cid, generate_content_key(), sha, dest)  # type: ignore[arg-type]
    with pytest.raises(PlaintextHashMismatchError):
        restore_package(store, cid, key, bytes(32), dest)  # type: ignore[arg-type]
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no temp folders left behind


def test_clear_artifact_with_another_hash_writes_nothing(
    package: ModelPackage, tmp_path: Path
) -> None:
    store = Blockstore(tmp_path / "store")
    cid = import_file(package_tar_stream(package), store).cid
    with pytest.raises(DownloadError, match="does not match the sha256"):
        restore_package(store, cid, None, bytes(32), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_blocks_are_a_typed_error(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "store")
    absent = only_hash([b"never stored"])
    with pytest.raises(BlockNotFoundError):
        restore_package(store, absent, None, bytes(32), tmp_path / "out")


OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]
    }


def test_keystore_stages_and_binds_keys_by_owner_and_model_privately(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    cid = only_hash([b"artifact"])
    staged_path = keys.stage(cid, b"k" * 32, OWNER.lower())
    staged = keys.load_staged(cid, OWNER)
    assert staged is not None and staged.owner == OWNER and staged.key == b"k" * 32
    assert staged_path == tmp_path / "keys" / "staged" / OWNER / f"{cid}.key"
    # Another owner's stage, or another artifact, is not this key.
    assert keys.load_staged(cid, OTHER) is None
    assert keys.load_staged(only_hash([b"other"]), OWNER) is None

    bound_path = keys.bind(31337, REGISTRY, 7, 2, staged)
    assert bound_path == tmp_path / "keys" / "31337" / REGISTRY / "7" / "2.key"
    assert keys.load_bound(31337, REGISTRY, 7, 2) == staged
    assert keys.load_bound(31337, REGISTRY, 7, 1) is None  # another version
    assert keys.load_bound(1, REGISTRY, 7, 2) is None  # another chain
    # Every folder 0700, every key file 0600, and no temporary file left behind.
    for name, mode in _modes(tmp_path / "keys").items():
        path = tmp_path / "keys" / name
        assert mode == (0o700 if path.is_dir() else 0o600), name
        assert not path.name.startswith(".tmp-")
    assert "k" * 32 not in repr(staged)


def test_keystore_tightens_a_key_folder_an_older_version_left_open(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir(mode=0o755)
    (tmp_path / "keys").chmod(0o755)
    KeyStore(tmp_path).stage(only_hash([b"artifact"]), b"k" * 32, OWNER)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


def test_keystore_refuses_bad_keys_and_reports_unreadable_files(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    cid = only_hash([b"artifact"])
    with pytest.raises(InvalidKeyMaterialError):
        keys.stage(cid, b"short", OWNER)
    with pytest.raises(ConfigError):
        keys.stage(cid, b"k" * 32, "not an address")
    assert not keys.staged_path(cid, OWNER).exists()
    path = keys.bound_path(31337, REGISTRY, 1, 1)
    path.parent.mkdir(parents=True)
    path.write_text('{"owner": "0x00", "artifact_cid": "x", "key": "00"}')
    with pytest.raises(ContentKeyMissingError):
        keys.load_bound(31337, REGISTRY, 1, 1)


def test_keystore_reads_older_cid_keyed_files_only_as_such(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    cid = only_hash([b"artifact"])
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / f"{cid}.key").write_bytes(b"k" * 32)
    assert keys.load_legacy(cid) == b"k" * 32
    assert keys.legacy_files() == [tmp_path / "keys" / f"{cid}.key"]
    # The older file is never a staged or bound key for anyone.
    assert keys.load_staged(cid, OWNER) is None


def test_private_restore_leaves_no_file_readable_by_others(
    package: ModelPackage, tmp_path: Path
) -> None:
    store = Blockstore(tmp_path / "store")
    key, cid, sha = _store_encrypted(package, store)
    restore_package(store, cid, key, sha, tmp_path / "seller", private=True)  # type: ignore[arg-type]
    modes = _modes(tmp_path / "seller")
    assert modes and all(mode & 0o077 == 0 for mode in modes.values()), modes
    # A buyer's download keeps the archive's ordinary modes.
    restore_package(store, cid, key, sha, tmp_path / "buyer")  # type: ignore[arg-type]
    assert any(mode & 0o044 for mode in _modes(tmp_path / "buyer").values())
