# SPDX-License-Identifier: AGPL-3.0-only
"""The encrypted stream format: round trips, boundaries and every way a stream can be bad."""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercato.crypto import (
    HEADER_SIZE,
    StreamDecryptor,
    StreamEncryptor,
    check_content_key,
    ciphertext_size,
    decrypt_chunks,
    encrypt_chunks,
    generate_content_key,
)
from mercato.crypto.stream import CHUNK_OVERHEAD, MAX_CHUNK_SIZE
from mercato.errors import (
    CiphertextFormatError,
    CiphertextTamperedError,
    CiphertextTruncatedError,
    ConfigError,
    CryptoError,
    InvalidKeyMaterialError,
    PlaintextHashMismatchError,
    WrongContentKeyError,
)

CHUNK = 64  # small chunks keep the boundary tests fast; the format is the same


def encrypt(key: bytes, data: bytes, chunk_size: int = CHUNK) -> bytes:
    return b"".join(encrypt_chunks(key, [data], chunk_size=chunk_size))


def decrypt(key: bytes, ct: bytes, expected_sha256: bytes | None = None) -> bytes:
    return b"".join(decrypt_chunks(key, [ct], expected_sha256=expected_sha256))


def blocks(ct: bytes, chunk_size: int = CHUNK) -> tuple[bytes, list[bytes]]:
    """Split a stream into its header and its encrypted chunks."""
    size = chunk_size + CHUNK_OVERHEAD
    body = ct[HEADER_SIZE:]
    return ct[:HEADER_SIZE], [body[i : i + size] for i in range(0, len(body), size)]


# --- round trips --------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 5 * CHUNK]
)
def test_round_trip_at_chunk_boundaries(content_key: bytes, size: int) -> None:
    data = os.urandom(size)
    enc = StreamEncryptor(content_key, chunk_size=CHUNK)
    ct = b"".join(enc.encrypt([data]))

    assert len(ct) == ciphertext_size(size, CHUNK)
    assert enc.result is not None
    assert enc.result.plaintext_size == size
    assert enc.result.ciphertext_size == len(ct)
    assert enc.result.chunk_count == max(1, -(-size // CHUNK))
    assert enc.result.plaintext_sha256 == hashlib.sha256(data).digest()
    assert decrypt(content_key, ct, hashlib.sha256(data).digest()) == data


def test_empty_input_is_one_empty_final_chunk(content_key: bytes) -> None:
    ct = encrypt(content_key, b"")
    header, chunks = blocks(ct)

    assert len(header) == HEADER_SIZE
    assert [len(c) for c in chunks] == [CHUNK_OVERHEAD]
    dec = StreamDecryptor(content_key, expected_sha256=hashlib.sha256(b"").digest())
    assert b"".join(dec.decrypt([ct])) == b""
    assert dec.result is not None
    assert dec.result.plaintext_size == 0
    assert dec.result.chunk_count == 1


def test_exact_multiple_has_no_extra_empty_chunk(content_key: bytes) -> None:
    _, chunks = blocks(encrypt(content_key, os.urandom(3 * CHUNK)))

    assert [len(c) for c in chunks] == [CHUNK + CHUNK_OVERHEAD] * 3


def test_default_chunk_size_round_trip(content_key: bytes) -> None:
    data = os.urandom(3 * 65536 + 7)
    ct = b"".join(encrypt_chunks(content_key, [data]))

    assert len(ct) == ciphertext_size(len(data))
    assert decrypt(content_key, ct, hashlib.sha256(data).digest()) == data


def test_header_layout(content_key: bytes) -> None:
    ct = encrypt(content_key, b"x", chunk_size=4096)

    magic, version, chunk_size = struct.unpack_from(">7sBI", ct)
    assert (magic, version, chunk_size) == (b"MERCENC", 1, 4096)
    assert check_content_key(content_key, ct[:HEADER_SIZE]) == 4096


def test_same_plaintext_encrypts_differently(content_key: bytes) -> None:
    # A fresh secretstream header per stream: equal files do not give equal ciphertexts.
    assert encrypt(content_key, b"same bytes") != encrypt(content_key, b"same bytes")


def test_encryption_is_lazy() -> None:
    """The encryptor reads only what it needs for the chunks it was asked for."""
    pulled = 0

    def pieces() -> Iterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield bytes(65536)

    out = encrypt_chunks(generate_content_key(), pieces())
    list(itertools.islice(out, 4))  # header + 3 chunks

    assert pulled <= 5


def test_decryption_yields_before_the_end(content_key: bytes) -> None:
    data = os.urandom(10 * CHUNK)
    ct = encrypt(content_key, data)
    pieces = iter([ct[i : i + 50] for i in range(0, len(ct), 50)])
    out = decrypt_chunks(content_key, pieces)

    first = next(out)

    assert first == data[:CHUNK]
    assert len(list(pieces)) > 0  # the rest of the input was not read yet


def test_large_input_uses_parallel_hash(content_key: bytes) -> None:
    # Over 1 MiB, hashing moves to a helper thread; the digest must not change.
    data = os.urandom(3 * 1024 * 1024 + 5)
    enc = StreamEncryptor(content_key)
    ct = b"".join(enc.encrypt([data[i : i + 100_000] for i in range(0, len(data), 100_000)]))

    assert enc.result is not None
    assert enc.result.plaintext_sha256 == hashlib.sha256(data).digest()
    assert decrypt(content_key, ct, hashlib.sha256(data).digest()) == data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=600),
    chunk_size=st.integers(min_value=1, max_value=130),
    in_cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=8),
    out_cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_round_trip_any_data_any_splitting(
    data: bytes, chunk_size: int, in_cuts: list[int], out_cuts: list[int]
) -> None:
    key = generate_content_key()
    ct = b"".join(encrypt_chunks(key, split(data, in_cuts), chunk_size=chunk_size))

    assert len(ct) == ciphertext_size(len(data), chunk_size)
    plain = decrypt_chunks(key, split(ct, out_cuts), expected_sha256=hashlib.sha256(data).digest())
    assert b"".join(plain) == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_rejected(data: bytes, position: int, bit: int) -> None:
    key = generate_content_key()
    ct = bytearray(encrypt(key, data, chunk_size=32))
    ct[position % len(ct)] ^= 1 << bit

    with pytest.raises(CryptoError):
        decrypt(key, bytes(ct))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# --- failures -----------------------------------------------------------------------


def test_wrong_key(content_key: bytes) -> None:
    ct = encrypt(content_key, os.urandom(3 * CHUNK))

    with pytest.raises(WrongContentKeyError):
        decrypt(generate_content_key(), ct)
    with pytest.raises(WrongContentKeyError):
        check_content_key(generate_content_key(), ct[:HEADER_SIZE])


@pytest.mark.parametrize("index", [0, 1, 3])
def test_tampered_chunk(content_key: bytes, index: int) -> None:
    header, chunks = blocks(encrypt(content_key, os.urandom(4 * CHUNK)))
    damaged = bytearray(chunks[index])
    damaged[5] ^= 0x01
    chunks[index] = bytes(damaged)

    with pytest.raises(CiphertextTamperedError) as err:
        decrypt(content_key, header + b"".join(chunks))
    assert type(err.value) is CiphertextTamperedError
    assert err.value.chunk_index == index
    assert err.value.code == "ciphertext_tampered"


def test_tampered_header_is_caught_by_key_check(content_key: bytes) -> None:
    ct = bytearray(encrypt(content_key, os.urandom(CHUNK)))
    ct[20] ^= 0x80  # inside the secretstream header

    with pytest.raises(WrongContentKeyError):
        decrypt(content_key, bytes(ct))


def test_forged_chunk_size_is_rejected_before_use(content_key: bytes) -> None:
    ct = bytearray(encrypt(content_key, os.urandom(CHUNK)))
    struct.pack_into(">I", ct, 8, 0xFFFFFFFF)

    with pytest.raises(WrongContentKeyError):
        decrypt(content_key, bytes(ct))


def test_reordered_chunks(content_key: bytes) -> None:
    header, chunks = blocks(encrypt(content_key, os.urandom(4 * CHUNK)))
    chunks[1], chunks[2] = chunks[2], chunks[1]

    with pytest.raises(CiphertextTamperedError) as err:
        decrypt(content_key, header + b"".join(chunks))
    assert err.value.chunk_index == 1


def test_dropped_middle_chunk(content_key: bytes) -> None:
    header, chunks = blocks(encrypt(content_key, os.urandom(4 * CHUNK)))
    del chunks[1]

    with pytest.raises(CiphertextTamperedError) as err:
        decrypt(content_key, header + b"".join(chunks))
    assert err.value.chunk_index == 1


@pytest.mark.parametrize("keep_chunks", [0, 1, 3])
def test_truncated_at_chunk_boundary(content_key: bytes, keep_chunks: int) -> None:
    header, chunks = blocks(encrypt(content_key, os.urandom(4 * CHUNK)))

    with pytest.raises(CiphertextTruncatedError) as err:
        decrypt(content_key, header + b"".join(chunks[:keep_chunks]))
    assert err.value.chunk_index == keep_chunks
    assert err.value.code == "ciphertext_truncated"


@pytest.mark.parametrize("cut", [1, CHUNK_OVERHEAD - 1, CHUNK_OVERHEAD, CHUNK])
def test_truncated_mid_chunk(content_key: bytes, cut: int) -> None:
    ct = encrypt(content_key, os.urandom(3 * CHUNK + 10))

    with pytest.raises(CiphertextTruncatedError):
        decrypt(content_key, ct[:-cut])


@pytest.mark.parametrize("keep", [1, 7, HEADER_SIZE - 1])
def test_truncated_header(content_key: bytes, keep: int) -> None:
    ct = encrypt(content_key, b"abc")

    with pytest.raises(CiphertextTruncatedError) as err:
        decrypt(content_key, ct[:keep])
    assert err.value.chunk_index == 0


def test_trailing_bytes_after_final_chunk(content_key: bytes) -> None:
    ct = encrypt(content_key, os.urandom(2 * CHUNK))

    with pytest.raises(CiphertextFormatError, match="follow the final chunk"):
        decrypt(content_key, ct + b"\x00")


def test_final_chunk_moved_to_the_front(content_key: bytes) -> None:
    header, chunks = blocks(encrypt(content_key, os.urandom(3 * CHUNK)))

    with pytest.raises(CiphertextTamperedError) as err:
        decrypt(content_key, header + chunks[-1] + b"".join(chunks[:-1]))
    assert err.value.chunk_index == 0


def test_wrong_hash_raises_and_final_chunk_is_withheld(content_key: bytes) -> None:
    data = os.urandom(2 * CHUNK + 3)
    ct = encrypt(content_key, data)
    expected = hashlib.sha256(b"other bytes").digest()
    received: list[bytes] = []

    with pytest.raises(PlaintextHashMismatchError) as err:
        received.extend(decrypt_chunks(content_key, [ct], expected_sha256=expected))
    assert err.value.expected == expected
    assert err.value.actual == hashlib.sha256(data).digest()
    assert b"".join(received) == data[: 2 * CHUNK]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "magic"),
        (b"PK\x03\x04" + bytes(100), "magic"),
        (b"MERCENC\x02" + bytes(100), "version 2"),
    ],
)
def test_not_a_mercato_stream(content_key: bytes, data: bytes, match: str) -> None:
    with pytest.raises(CiphertextFormatError, match=match):
        decrypt(content_key, data)


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_content_key_length(length: int) -> None:
    with pytest.raises(InvalidKeyMaterialError) as err:
        StreamEncryptor(bytes(length))
    assert err.value.actual_len == length
    with pytest.raises(InvalidKeyMaterialError):
        StreamDecryptor(bytes(length))


def test_expected_hash_length(content_key: bytes) -> None:
    with pytest.raises(InvalidKeyMaterialError) as err:
        StreamDecryptor(content_key, expected_sha256=bytes.fromhex("ab" * 32)[:20])
    assert err.value.what == "expected_sha256"


@pytest.mark.parametrize("chunk_size", [0, -1, MAX_CHUNK_SIZE + 1])
def test_chunk_size_out_of_range(content_key: bytes, chunk_size: int) -> None:
    with pytest.raises(ConfigError):
        StreamEncryptor(content_key, chunk_size=chunk_size)
