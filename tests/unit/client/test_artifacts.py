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
    ContentKeyMissingError,
    DownloadError,
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


def test_keystore_keeps_keys_private_and_reports_missing_ones(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path)
    cid = only_hash([b"artifact"])
    keys.save(cid, b"k" * 32)
    assert keys.load(cid) == b"k" * 32
    path = tmp_path / "keys" / f"{cid}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ContentKeyMissingError) as caught:
        keys.load(only_hash([b"other"]))
    assert caught.value.artifact_cid == str(only_hash([b"other"]))
