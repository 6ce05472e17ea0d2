# SPDX-License-Identifier: AGPL-3.0-only
"""Streaming encryption of paid artifacts with libsodium secretstream.

A paid artifact is encrypted with ``crypto_secretstream_xchacha20poly1305`` (libsodium,
through PyNaCl) under a 32-byte random content key. The plaintext is cut into chunks of
a fixed size; each chunk becomes one secretstream message, so memory stays constant
whatever the file size, every chunk is authenticated on its own, reordering is detected
by the construction (each message's nonce follows from the previous one) and the last
chunk carries ``TAG_FINAL``, so a truncated stream is detected.

Format, version 1 (all integers big-endian)::

    offset  size  field
    ------  ----  ---------------------------------------------------------------
         0     7  magic             b"MERCENC"
         7     1  version           0x01
         8     4  chunk_size        plaintext bytes per chunk (default 65,536)
        12    24  stream_header     crypto_secretstream_xchacha20poly1305 header
        36    32  key_check         BLAKE2b-256(bytes 0..35, key=content key,
                                               person=b"Mercato-keycheck")
        68     .  chunk 0           chunk_size + 17 bytes, tag TAG_MESSAGE
         .     .  ...
         .     .  chunk n-1         0..chunk_size + 17 bytes, tag TAG_FINAL

    +---------+---+------------+---------------+-----------+---------+-----+-----------+
    | MERCENC | 1 | chunk_size | stream_header | key_check | chunk 0 | ... | chunk n-1 |
    +---------+---+------------+---------------+-----------+---------+-----+-----------+
    '------------------- header, 68 bytes --------------------'

Every chunk but the last holds exactly ``chunk_size`` plaintext bytes and is tagged
``TAG_MESSAGE``; the last holds 0..chunk_size bytes and is tagged ``TAG_FINAL`` (0 bytes
only for an empty artifact). No additional data is passed to secretstream. Each chunk
adds 17 bytes (1 encrypted tag byte and a 16-byte Poly1305 MAC).

``key_check`` is a keyed BLAKE2b (libsodium ``crypto_generichash``) over the first 36
bytes. It lets a reader tell a wrong content key from a damaged first chunk, check a
delivered key against the first 68 bytes before downloading the rest, and it
authenticates the fields before the first chunk.

To reproduce with libsodium elsewhere (libsodium.js): check the magic, version and
``key_check``, ``crypto_secretstream_xchacha20poly1305_init_pull(header, key)``, then
``pull`` blocks of ``chunk_size + 17`` bytes until a message tagged ``TAG_FINAL``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.encoding
import nacl.exceptions
import nacl.hash

from mercato.errors import (
    CiphertextFormatError,
    CiphertextTamperedError,
    CiphertextTruncatedError,
    ConfigError,
    InvalidKeyMaterialError,
    PlaintextHashMismatchError,
    WrongContentKeyError,
)

MAGIC = b"MERCENC"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 64 * 1024
# A reader allocates one chunk; cap what a header may ask for so memory stays bounded.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
CONTENT_KEY_SIZE = sodium.crypto_secretstream_xchacha20poly1305_KEYBYTES
CHUNK_OVERHEAD = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
SHA256_SIZE = 32

_PREFIX = struct.Struct(">7sBI")
_STREAM_HEADER_SIZE = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_KEY_CHECK_SIZE = 32
_KEY_CHECK_PERSON = b"Mercato-keycheck"
HEADER_SIZE = _PREFIX.size + _STREAM_HEADER_SIZE + _KEY_CHECK_SIZE

_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL


@dataclass(frozen=True)
class EncryptionResult:
    """What an encryption produced.

    Attributes:
        plaintext_sha256: sha256 of the plaintext, the digest the chain commits to.
        plaintext_size: Plaintext length in bytes.
        ciphertext_size: Length of the encrypted stream in bytes, header included.
        chunk_count: Number of secretstream messages (at least 1).
    """

    plaintext_sha256: bytes
    plaintext_size: int
    ciphertext_size: int
    chunk_count: int


@dataclass(frozen=True)
class DecryptionResult:
    """What a decryption produced.

    Attributes:
        plaintext_sha256: sha256 of the decrypted plaintext.
        plaintext_size: Plaintext length in bytes.
        chunk_count: Number of secretstream messages read.
    """

    plaintext_sha256: bytes
    plaintext_size: int
    chunk_count: int


def ciphertext_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Length of the encrypted stream for a plaintext of ``plaintext_size`` bytes.

    Args:
        plaintext_size: Plaintext length in bytes (>= 0).
        chunk_size: Plaintext bytes per chunk.

    Returns:
        The exact ciphertext length, header included.

    Raises:
        ConfigError: ``chunk_size`` is out of range or ``plaintext_size`` is negative.
    """
    _check_chunk_size(chunk_size)
    if plaintext_size < 0:
        raise ConfigError(f"plaintext_size must be >= 0, got {plaintext_size}.")
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_SIZE + plaintext_size + chunks * CHUNK_OVERHEAD


def check_content_key(content_key: bytes, header: bytes) -> int:
    """Check a content key against the first bytes of an encrypted stream.

    Only the first ``HEADER_SIZE`` bytes are needed, so a buyer or a seller's agent can
    check a key before fetching the whole artifact.

    Args:
        content_key: The 32-byte content key.
        header: At least the first ``HEADER_SIZE`` bytes of the stream.

    Returns:
        The stream's chunk size.

    Raises:
        InvalidKeyMaterialError: ``content_key`` is not 32 bytes.
        CiphertextFormatError: The bytes do not start a version-1 Mercato stream.
        CiphertextTruncatedError: Fewer than ``HEADER_SIZE`` bytes were given.
        WrongContentKeyError: The key does not match this stream.
    """
    key = _content_key(content_key)
    chunk_size, _ = _parse_header(key, bytes(header[:HEADER_SIZE]))
    return chunk_size


class StreamEncryptor:
    """Encrypts one artifact, chunk by chunk, in constant memory.

    Use it instead of `encrypt_chunks` when you also need the plaintext sha256 (the
    digest the chain commits to) without a second pass over the bytes::

        enc = StreamEncryptor(key)
        for piece in enc.encrypt(read_chunks(f)):
            sink.write(piece)
        digest = enc.result.plaintext_sha256

    Args:
        content_key: The 32-byte content key (`mercato.crypto.generate_content_key`).
        chunk_size: Plaintext bytes per chunk.

    Raises:
        InvalidKeyMaterialError: ``content_key`` is not 32 bytes.
        ConfigError: ``chunk_size`` is outside 1..MAX_CHUNK_SIZE.
    """

    def __init__(self, content_key: bytes, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self._key = _content_key(content_key)
        _check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        self.result: EncryptionResult | None = None

    def encrypt(self, plaintext: Iterable[bytes]) -> Iterator[bytes]:
        """Encrypt a stream of plaintext pieces.

        Args:
            plaintext: Plaintext pieces of any sizes (bytes-like objects).

        Returns:
            An iterator over the ciphertext: first the 68-byte header, then one
            piece per chunk. ``self.result`` is set once it is exhausted.
        """
        state = sodium.crypto_secretstream_xchacha20poly1305_state()
        stream_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, self._key)
        prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, self.chunk_size) + stream_header
        header = prefix + _key_check(self._key, prefix)
        push = sodium.crypto_secretstream_xchacha20poly1305_push
        digest = _ParallelSha256()
        reader = _Reader(plaintext)
        size, count, out = 0, 0, len(header)
        try:
            yield header
            chunk = reader.read(self.chunk_size)
            # Look one chunk ahead: only the last one may carry TAG_FINAL.
            while len(chunk) == self.chunk_size and not reader.at_eof():
                digest.update(chunk)
                sealed = push(state, chunk, None, _TAG_MESSAGE)
                size, count, out = size + len(chunk), count + 1, out + len(sealed)
                yield sealed
                chunk = reader.read(self.chunk_size)
            digest.update(chunk)
            sealed = push(state, chunk, None, _TAG_FINAL)
            size, count, out = size + len(chunk), count + 1, out + len(sealed)
            self.result = EncryptionResult(digest.digest(), size, out, count)
            yield sealed
        finally:
            digest.close()


class StreamDecryptor:
    """Decrypts one artifact, chunk by chunk, in constant memory.

    Plaintext is yielded as each chunk authenticates, but the stream as a whole is only
    known to be complete and correct when the iterator is exhausted without an error
    (final tag seen, sha256 checked). Treat what came before as provisional;
    `mercato.crypto.decrypt_file` does.

    Args:
        content_key: The 32-byte content key.
        expected_sha256: The plaintext sha256 the chain commits to; checked after the
            final chunk. ``None`` skips the check.

    Raises:
        InvalidKeyMaterialError: ``content_key`` or ``expected_sha256`` has a wrong length.
    """

    def __init__(self, content_key: bytes, *, expected_sha256: bytes | None = None) -> None:
        self._key = _content_key(content_key)
        if expected_sha256 is not None and len(expected_sha256) != SHA256_SIZE:
            raise InvalidKeyMaterialError("expected_sha256", SHA256_SIZE, len(expected_sha256))
        self._expected = None if expected_sha256 is None else bytes(expected_sha256)
        self.result: DecryptionResult | None = None

    def decrypt(self, ciphertext: Iterable[bytes | memoryview]) -> Iterator[bytes]:
        """Decrypt a stream of ciphertext pieces.

        Args:
            ciphertext: The encrypted stream, in pieces of any sizes.

        Returns:
            An iterator over plaintext chunks. ``self.result`` is set once it is
            exhausted.

        Raises:
            CiphertextFormatError: Not a version-1 stream, an unknown chunk tag, or
                bytes after the final chunk.
            WrongContentKeyError: The key does not match the stream.
            CiphertextTamperedError: A chunk failed authentication (altered or reordered).
            CiphertextTruncatedError: The stream ended before its final chunk.
            PlaintextHashMismatchError: The plaintext does not hash to ``expected_sha256``.
        """
        reader = _Reader(ciphertext)
        chunk_size, state = _parse_header(self._key, reader.read(HEADER_SIZE))
        block_size = chunk_size + CHUNK_OVERHEAD
        pull = sodium.crypto_secretstream_xchacha20poly1305_pull
        digest = _ParallelSha256()
        index, size = 0, 0
        try:
            while True:
                block = reader.read(block_size)
                if len(block) < CHUNK_OVERHEAD:
                    raise CiphertextTruncatedError(index)
                try:
                    chunk, tag = pull(state, block, None)
                except nacl.exceptions.CryptoError:
                    # A short block only happens at the end of the input: either the
                    # download stopped mid-chunk or the last chunk was altered.
                    if len(block) < block_size:
                        raise CiphertextTruncatedError(index) from None
                    raise CiphertextTamperedError(index) from None
                if tag == _TAG_FINAL:
                    if not reader.at_eof():
                        raise CiphertextFormatError(f"bytes follow the final chunk ({index})")
                elif tag != _TAG_MESSAGE:
                    raise CiphertextFormatError(f"chunk {index} has unexpected tag {tag}")
                elif len(block) < block_size:
                    raise CiphertextFormatError(f"chunk {index} is short but not final")
                digest.update(chunk)
                index, size = index + 1, size + len(chunk)
                if tag == _TAG_FINAL:
                    actual = digest.digest()
                    if self._expected is not None and not hmac.compare_digest(
                        actual, self._expected
                    ):
                        raise PlaintextHashMismatchError(self._expected, actual)
                    self.result = DecryptionResult(actual, size, index)
                    yield chunk
                    return
                yield chunk
        finally:
            digest.close()


def encrypt_chunks(
    content_key: bytes, plaintext: Iterable[bytes], *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[bytes]:
    """Encrypt plaintext pieces into the Mercato stream format, lazily.

    Args:
        content_key: The 32-byte content key.
        plaintext: Plaintext pieces of any sizes.
        chunk_size: Plaintext bytes per chunk.

    Returns:
        An iterator over the ciphertext (header first, then one piece per chunk).

    Raises:
        InvalidKeyMaterialError: ``content_key`` is not 32 bytes.
        ConfigError: ``chunk_size`` is outside 1..MAX_CHUNK_SIZE.
    """
    return StreamEncryptor(content_key, chunk_size=chunk_size).encrypt(plaintext)


def decrypt_chunks(
    content_key: bytes,
    ciphertext: Iterable[bytes | memoryview],
    *,
    expected_sha256: bytes | None = None,
) -> Iterator[bytes]:
    """Decrypt a Mercato stream, lazily; see `StreamDecryptor` for what is checked when.

    Args:
        content_key: The 32-byte content key.
        ciphertext: The encrypted stream, in pieces of any sizes.
        expected_sha256: The plaintext sha256 the chain commits to, or ``None``.

    Returns:
        An iterator over plaintext chunks.

    Raises:
        InvalidKeyMaterialError: ``content_key`` or ``expected_sha256`` has a wrong length.
        CiphertextFormatError: Not a version-1 stream or bytes after the final chunk.
        WrongContentKeyError: The key does not match the stream.
        CiphertextTamperedError: A chunk failed authentication (altered or reordered).
        CiphertextTruncatedError: The stream ended before its final chunk.
        PlaintextHashMismatchError: The plaintext does not hash to ``expected_sha256``.
    """
    return StreamDecryptor(content_key, expected_sha256=expected_sha256).decrypt(ciphertext)


def _content_key(key: bytes) -> bytes:
    key = bytes(key)
    if len(key) != CONTENT_KEY_SIZE:
        raise InvalidKeyMaterialError("content key", CONTENT_KEY_SIZE, len(key))
    return key


def _check_chunk_size(chunk_size: int) -> None:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ConfigError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}, got {chunk_size}.")


def _key_check(key: bytes, prefix: bytes) -> bytes:
    return nacl.hash.blake2b(
        prefix,
        digest_size=_KEY_CHECK_SIZE,
        key=key,
        person=_KEY_CHECK_PERSON,
        encoder=nacl.encoding.RawEncoder,
    )


def _parse_header(
    key: bytes, header: bytes
) -> tuple[int, sodium.crypto_secretstream_xchacha20poly1305_state]:
    if len(header) < HEADER_SIZE:
        probe = header[: len(MAGIC)]
        if probe and MAGIC.startswith(probe):
            raise CiphertextTruncatedError(0)
        raise CiphertextFormatError("it does not start with the Mercato magic bytes")
    magic, version, chunk_size = _PREFIX.unpack_from(header)
    if magic != MAGIC:
        raise CiphertextFormatError("it does not start with the Mercato magic bytes")
    if version != FORMAT_VERSION:
        raise CiphertextFormatError(
            f"format version {version} is not supported (this Mercato reads {FORMAT_VERSION})"
        )
    prefix_end = _PREFIX.size + _STREAM_HEADER_SIZE
    if not hmac.compare_digest(_key_check(key, header[:prefix_end]), header[prefix_end:]):
        raise WrongContentKeyError()
    # Only trusted once the keyed check passed: a forged size cannot make us allocate.
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise CiphertextFormatError(f"chunk size {chunk_size} is out of range")
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(
        state, header[_PREFIX.size : prefix_end], key
    )
    return chunk_size, state


class _Reader:
    """Reads exact-size pieces out of an iterable of arbitrarily sized byte strings."""

    def __init__(self, pieces: Iterable[bytes | memoryview]) -> None:
        self._pieces = iter(pieces)
        self._current: bytes = b""
        self._view = memoryview(b"")
        self._pos = 0

    def _advance(self) -> bool:
        """Load the next non-empty piece; False at the end of the input."""
        for piece in self._pieces:
            view = memoryview(piece).cast("B")
            if len(view):
                self._current = piece if isinstance(piece, bytes) else b""
                self._view, self._pos = view, 0
                return True
        return False

    def at_eof(self) -> bool:
        return self._pos >= len(self._view) and not self._advance()

    def read(self, size: int) -> bytes:
        """Return ``size`` bytes, or fewer only at the end of the input."""
        if self._pos >= len(self._view) and not self._advance():
            return b""
        # Fast path: a whole input piece of exactly the wanted size, no copy.
        if self._pos == 0 and len(self._view) == size and self._current:
            self._pos = size
            return self._current
        parts: list[memoryview] = []
        need = size
        while need:
            if self._pos >= len(self._view) and not self._advance():
                break
            take = min(need, len(self._view) - self._pos)
            parts.append(self._view[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return b"".join(parts)


class _ParallelSha256:
    """sha256 on a helper thread, so hashing overlaps the cipher on a second core.

    Both hashlib and libsodium (through cffi) release the GIL. Chunks are handed over in
    batches of about 1 MiB because a thread hand-off per 64 KiB chunk costs more than it
    saves; at most two batches are in memory at once.
    """

    _BATCH_BYTES = 1024 * 1024

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._batch: list[bytes] = []
        self._batched = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= self._BATCH_BYTES:
            self._flush()

    def digest(self) -> bytes:
        if self._pool is None:
            # Small input: not worth a thread.
            for data in self._batch:
                self._hash.update(data)
        else:
            self._flush()
            self._wait()
        self._batch = []
        return self._hash.digest()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _flush(self) -> None:
        self._wait()
        batch, self._batch, self._batched = self._batch, [], 0
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="mercato-sha256")
        self._pending = self._pool.submit(self._hash_all, batch)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def _hash_all(self, batch: list[bytes]) -> None:
        for data in batch:
            self._hash.update(data)
