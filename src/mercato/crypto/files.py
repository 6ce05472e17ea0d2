# SPDX-License-Identifier: AGPL-3.0-only
"""File-to-file encryption and decryption with atomic writes.

The destination appears only when everything succeeded: output goes to a temporary
file in the destination's directory (same file system, so the rename is atomic), is
fsynced, and is renamed over the destination only after the final chunk and, for
decryption, the plaintext sha256 were checked. On any failure the temporary file is
removed and the destination is left as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from mercato.crypto.stream import (
    DEFAULT_CHUNK_SIZE,
    DecryptionResult,
    EncryptionResult,
    StreamDecryptor,
    StreamEncryptor,
)
from mercato.fsutil import write_atomically

StrPath = str | os.PathLike[str]


def read_chunks(file: BinaryIO, size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """Read a binary file object in pieces of ``size`` bytes (the last may be shorter).

    Args:
        file: A file object opened in binary mode.
        size: Bytes per read.

    Returns:
        An iterator over the pieces, until end of file.
    """
    while piece := file.read(size):
        yield piece


def encrypt_file(
    content_key: bytes, src: StrPath, dst: StrPath, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> EncryptionResult:
    """Encrypt the file ``src`` into ``dst``, atomically.

    Args:
        content_key: The 32-byte content key.
        src: Plaintext file.
        dst: Where the encrypted stream goes; replaced only on success.
        chunk_size: Plaintext bytes per chunk.

    Returns:
        The plaintext sha256 and the sizes.

    Raises:
        InvalidKeyMaterialError: ``content_key`` is not 32 bytes.
        ConfigError: ``chunk_size`` is outside 1..MAX_CHUNK_SIZE.
        OSError: ``src`` cannot be read or ``dst`` cannot be written.
    """
    encryptor = StreamEncryptor(content_key, chunk_size=chunk_size)
    with open(src, "rb") as f:
        _write_atomically(dst, encryptor.encrypt(read_chunks(f, chunk_size)))
    # Internal invariant, not input validation: a fully consumed stream sets its result.
    assert encryptor.result is not None
    return encryptor.result


def decrypt_file(
    content_key: bytes, src: StrPath, dst: StrPath, *, expected_sha256: bytes
) -> DecryptionResult:
    """Decrypt the encrypted stream ``src`` into ``dst``, atomically and verified.

    ``dst`` is written only after the final chunk authenticated and the plaintext
    hashed to ``expected_sha256``; on any error nothing is written to it.

    Args:
        content_key: The 32-byte content key.
        src: Encrypted stream file.
        dst: Where the plaintext goes; replaced only on success.
        expected_sha256: The plaintext sha256 the chain commits to (32 bytes).

    Returns:
        The plaintext sha256 and size.

    Raises:
        InvalidKeyMaterialError: ``content_key`` or ``expected_sha256`` has a wrong length.
        CiphertextFormatError: ``src`` is not a version-1 Mercato stream.
        WrongContentKeyError: The key does not match the stream.
        CiphertextTamperedError: A chunk failed authentication (altered or reordered).
        CiphertextTruncatedError: The stream ended before its final chunk.
        PlaintextHashMismatchError: The plaintext does not hash to ``expected_sha256``.
        OSError: ``src`` cannot be read or ``dst`` cannot be written.
    """
    decryptor = StreamDecryptor(content_key, expected_sha256=expected_sha256)
    with open(src, "rb") as f:
        _write_atomically(dst, decryptor.decrypt(read_chunks(f, DEFAULT_CHUNK_SIZE)))
    assert decryptor.result is not None
    return decryptor.result


def _write_atomically(dst: StrPath, pieces: Iterable[bytes]) -> None:
    write_atomically(Path(dst), pieces)
