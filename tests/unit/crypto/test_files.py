# SPDX-License-Identifier: AGPL-3.0-only
"""File helpers: verified, atomic writes that leave nothing behind on failure."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from eth_account import Account

from mercato.crypto import (
    decrypt_file,
    derive_buyer_key,
    encrypt_file,
    generate_content_key,
    wrap_content_key,
)
from mercato.crypto.stream import CHUNK_OVERHEAD, HEADER_SIZE
from mercato.errors import (
    CiphertextTamperedError,
    CiphertextTruncatedError,
    PlaintextHashMismatchError,
    WrongContentKeyError,
)


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(os.urandom(2 * 1024 * 1024 + 123))  # > 1 MiB: threaded hashing
    return path


@pytest.fixture
def encrypted(tmp_path: Path, plain: Path, content_key: bytes) -> Path:
    path = tmp_path / "model.onnx.enc"
    encrypt_file(content_key, plain, path)
    return path


def sha256(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def test_round_trip(tmp_path: Path, plain: Path, content_key: bytes) -> None:
    enc_path, out_path = tmp_path / "a.enc", tmp_path / "out" / "a.onnx"
    out_path.parent.mkdir()

    enc = encrypt_file(content_key, plain, enc_path)
    dec = decrypt_file(content_key, enc_path, out_path, expected_sha256=sha256(plain))

    assert enc.plaintext_sha256 == sha256(plain)
    assert enc.ciphertext_size == enc_path.stat().st_size
    assert dec.plaintext_size == plain.stat().st_size
    assert out_path.read_bytes() == plain.read_bytes()
    assert sorted(p.name for p in out_path.parent.iterdir()) == ["a.onnx"]


def test_empty_file(tmp_path: Path, content_key: bytes) -> None:
    src, enc, out = tmp_path / "empty", tmp_path / "empty.enc", tmp_path / "empty.out"
    src.write_bytes(b"")

    result = encrypt_file(content_key, src, enc)
    decrypt_file(content_key, enc, out, expected_sha256=hashlib.sha256(b"").digest())

    assert result.ciphertext_size == HEADER_SIZE + CHUNK_OVERHEAD
    assert out.read_bytes() == b""


def assert_nothing_written(directory: Path, dst: Path) -> None:
    assert not dst.exists()
    assert not [p for p in directory.iterdir() if p.name.endswith(".part")]


def test_wrong_key_writes_nothing(tmp_path: Path, plain: Path, encrypted: Path) -> None:
    dst = tmp_path / "out.onnx"

    with pytest.raises(WrongContentKeyError):
        decrypt_file(generate_content_key(), encrypted, dst, expected_sha256=sha256(plain))
    assert_nothing_written(tmp_path, dst)


def test_tampered_chunk_writes_nothing(
    tmp_path: Path, plain: Path, encrypted: Path, content_key: bytes
) -> None:
    data = bytearray(encrypted.read_bytes())
    data[len(data) // 2] ^= 0x01  # a chunk well after the first ones were written out
    encrypted.write_bytes(bytes(data))
    dst = tmp_path / "out.onnx"

    with pytest.raises(CiphertextTamperedError):
        decrypt_file(content_key, encrypted, dst, expected_sha256=sha256(plain))
    assert_nothing_written(tmp_path, dst)


def test_truncated_stream_writes_nothing(
    tmp_path: Path, plain: Path, encrypted: Path, content_key: bytes
) -> None:
    data = encrypted.read_bytes()
    encrypted.write_bytes(data[: len(data) - 1000])
    dst = tmp_path / "out.onnx"

    with pytest.raises(CiphertextTruncatedError):
        decrypt_file(content_key, encrypted, dst, expected_sha256=sha256(plain))
    assert_nothing_written(tmp_path, dst)


def test_wrong_hash_keeps_existing_destination(
    tmp_path: Path, encrypted: Path, content_key: bytes
) -> None:
    dst = tmp_path / "out.onnx"
    dst.write_bytes(b"previous version")

    with pytest.raises(PlaintextHashMismatchError):
        decrypt_file(content_key, encrypted, dst, expected_sha256=bytes(32))
    assert dst.read_bytes() == b"previous version"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_missing_source_writes_nothing(tmp_path: Path, content_key: bytes) -> None:
    dst = tmp_path / "out.enc"

    with pytest.raises(FileNotFoundError):
        encrypt_file(content_key, tmp_path / "absent", dst)
    assert_nothing_written(tmp_path, dst)


def test_purchase_flow(tmp_path: Path, plain: Path) -> None:
    """Seller encrypts and wraps; buyer derives from the wallet, unwraps and decrypts."""
    wallet = Account.create()
    posted_public_key = derive_buyer_key(wallet, 8453).public_key  # sent with purchase
    content_key = generate_content_key()
    commit = encrypt_file(content_key, plain, tmp_path / "artifact.enc").plaintext_sha256
    wrapped = wrap_content_key(content_key, posted_public_key)  # delivered on-chain

    buyer = derive_buyer_key(wallet, 8453)  # later, on another machine
    out = tmp_path / "bought.onnx"
    decrypt_file(buyer.unwrap(wrapped), tmp_path / "artifact.enc", out, expected_sha256=commit)

    assert out.read_bytes() == plain.read_bytes()
