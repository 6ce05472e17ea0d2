# SPDX-License-Identifier: AGPL-3.0-only
"""Encrypt-and-import / export-and-decrypt: one pass each, verified, nothing on failure."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from mercato.crypto import check_content_key, decrypt_chunks, generate_content_key
from mercato.crypto.stream import CHUNK_OVERHEAD, HEADER_SIZE, ciphertext_size
from mercato.errors import (
    BlockHashMismatchError,
    BlockNotFoundError,
    InvalidKeyMaterialError,
    PlaintextHashMismatchError,
    WrongContentKeyError,
)
from mercato.storage.backends import LocalBackend
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import block_key
from mercato.storage.encrypted import (
    ENCRYPTION_CHUNK_SIZE,
    EncryptedImport,
    encrypt_and_import,
    export_and_decrypt,
)
from mercato.storage.exporter import iter_file
from mercato.storage.unixfs import CHUNK_SIZE, only_hash

from .sample_data import pseudo_random


@pytest.fixture
def key() -> bytes:
    return generate_content_key()


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("size", [0, 1, 3 * CHUNK_SIZE + 5])
def test_round_trip(store: Blockstore, tmp_path: Path, key: bytes, version: int, size: int) -> None:
    data = pseudo_random(size)
    result = encrypt_and_import(write(tmp_path, data), store, key, cid_version=version)
    cid, digest, plain_size = result  # unpacks as the SDK expects
    assert isinstance(result, EncryptedImport)
    assert digest == hashlib.sha256(data).digest()
    assert plain_size == size
    assert store.is_pinned(cid)

    # What is stored is the ciphertext, and its CID is the one `ipfs add` would print.
    ciphertext = b"".join(bytes(p) for p in iter_file(cid, store))
    assert len(ciphertext) == ciphertext_size(size, ENCRYPTION_CHUNK_SIZE)
    if size >= 64:
        assert data[:64] not in ciphertext
    assert only_hash(io.BytesIO(ciphertext), cid_version=version) == cid
    assert b"".join(decrypt_chunks(key, [ciphertext], expected_sha256=digest)) == data

    dest = tmp_path / "out" / "model.onnx"
    dest.parent.mkdir()
    assert export_and_decrypt(cid, store, key, digest, dest) == size
    assert dest.read_bytes() == data
    assert leftovers(dest.parent) == []


def test_export_from_a_backend(store: Blockstore, tmp_path: Path, key: bytes) -> None:
    data = pseudo_random(CHUNK_SIZE + 7)
    cid, digest, _ = encrypt_and_import(write(tmp_path, data), store, key)
    dest = tmp_path / "out.bin"
    assert export_and_decrypt(str(cid), LocalBackend(store), key, digest, dest) == len(data)
    assert dest.read_bytes() == data


def test_wrong_key_writes_nothing(store: Blockstore, tmp_path: Path, key: bytes) -> None:
    cid, digest, _ = encrypt_and_import(write(tmp_path, b"weights"), store, key)
    dest = tmp_path / "out.bin"
    with pytest.raises(WrongContentKeyError):
        export_and_decrypt(cid, store, generate_content_key(), digest, dest)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_wrong_hash_keeps_the_existing_destination(
    store: Blockstore, tmp_path: Path, key: bytes
) -> None:
    data = pseudo_random(2 * CHUNK_SIZE)
    cid, digest, _ = encrypt_and_import(write(tmp_path, data), store, key)
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"previous version")
    other = hashlib.sha256(b"another artifact").digest()
    with pytest.raises(PlaintextHashMismatchError) as info:
        export_and_decrypt(cid, store, key, other, dest)
    assert info.value.actual == digest
    assert dest.read_bytes() == b"previous version"
    assert leftovers(tmp_path) == []


def test_corrupted_ciphertext_block_writes_nothing(
    store: Blockstore, tmp_path: Path, key: bytes
) -> None:
    data = pseudo_random(3 * CHUNK_SIZE)
    cid, digest, _ = encrypt_and_import(write(tmp_path, data), store, key, cid_version=1)
    leaves = [p for shard in store.blocks_dir.iterdir() for p in shard.iterdir()]
    victim = next(p for p in leaves if p.name != block_key(cid))
    victim.write_bytes(b"\0" * victim.stat().st_size)
    dest = tmp_path / "out.bin"
    with pytest.raises(BlockHashMismatchError):
        export_and_decrypt(cid, store, key, digest, dest)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_missing_block_writes_nothing(store: Blockstore, tmp_path: Path, key: bytes) -> None:
    cid, digest, _ = encrypt_and_import(write(tmp_path, b"x" * 10), store, key)
    assert store.unpin(cid)
    store.gc()
    dest = tmp_path / "out.bin"
    with pytest.raises(BlockNotFoundError):
        export_and_decrypt(cid, store, key, digest, dest)
    assert not dest.exists()


def test_bad_key_is_refused_before_anything_is_stored(store: Blockstore, tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyMaterialError):
        encrypt_and_import(write(tmp_path, b"weights"), store, b"short")
    assert store.pins() == []
    assert list(store.blocks_dir.iterdir()) == []


def test_bad_expected_digest_is_refused(store: Blockstore, tmp_path: Path, key: bytes) -> None:
    cid, _, _ = encrypt_and_import(write(tmp_path, b"weights"), store, key)
    with pytest.raises(InvalidKeyMaterialError):
        export_and_decrypt(cid, store, key, b"\0" * 31, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


@pytest.mark.parametrize("chunk_size", [ENCRYPTION_CHUNK_SIZE, 65_536])
def test_ciphertext_has_one_overhead_per_chunk(
    store: Blockstore, tmp_path: Path, key: bytes, chunk_size: int
) -> None:
    # Guards the size the SDK can predict before downloading.
    data = pseudo_random(3 * chunk_size + 1)
    cid, digest, _ = encrypt_and_import(write(tmp_path, data), store, key, chunk_size=chunk_size)
    stored = b"".join(bytes(p) for p in iter_file(cid, store))
    assert len(stored) == HEADER_SIZE + len(data) + 4 * CHUNK_OVERHEAD
    assert check_content_key(key, stored[:HEADER_SIZE]) == chunk_size
    dest = tmp_path / "out.bin"
    assert export_and_decrypt(cid, store, key, digest, dest) == len(data)
