# SPDX-License-Identifier: AGPL-3.0-only
"""Paid artifacts: encrypt while importing, export while decrypting, in one pass each.

`encrypt_and_import` reads the plaintext once; libsodium encrypts it on the calling
thread while a helper thread hashes the plaintext (the sha256 the chain commits to) and
the importer's pool hashes and writes the ciphertext blocks. All three release the GIL,
so both cores work; no ciphertext is spooled to disk.

`export_and_decrypt` walks the ciphertext DAG (every block verified against its CID,
fetched ahead on a thread pool), decrypts it chunk by chunk and writes the plaintext to a
temp file beside `dest`. Only after the final chunk authenticated and the plaintext
hashed to the expected sha256 is the temp file fsynced and renamed over `dest`; on any
error it is removed and `dest` is left as it was.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from multiformats import CID

from mercato.crypto.stream import StreamDecryptor, StreamEncryptor
from mercato.errors import MercatoError, PlaintextHashMismatchError
from mercato.fsutil import write_atomically
from mercato.storage.blockstore import Blockstore, wrap_write_error
from mercato.storage.exporter import BlockSource, iter_file
from mercato.storage.profiles import CidProfile
from mercato.storage.unixfs import import_file

ENCRYPTION_CHUNK_SIZE = 256 * 1024
"""Plaintext bytes per secretstream message for artifacts imported here.

Larger than the stream format's 64 KiB default: the Python work around each libsodium
call is per chunk, and 256 KiB chunks cut the CPU time of an encrypted import by about
a fifth. The size is recorded in the stream header, so any reader decrypts either."""


class EncryptedImport(NamedTuple):
    """The outcome of `encrypt_and_import`.

    Attributes:
        cid: The ciphertext's root CID (public; `ipfs add` prints the same).
        plaintext_sha256: sha256 of the plaintext, the digest the chain commits to.
        size: Plaintext size in bytes.
    """

    cid: CID
    plaintext_sha256: bytes
    size: int


def encrypt_and_import(
    path: Path | str,
    store: Blockstore,
    key: bytes,
    *,
    cid_version: int | None = None,
    pin: bool = True,
    chunk_size: int = ENCRYPTION_CHUNK_SIZE,
    profile: CidProfile | str | None = None,
) -> EncryptedImport:
    """Encrypt a file with the content key and import the ciphertext as UnixFS.

    Args:
        path: The plaintext file.
        store: The blockstore to write to.
        key: The 32-byte content key (`mercato.crypto.generate_content_key`).
        cid_version: 0 (kubo's default) or 1 (raw leaves, base32).
        pin: Pin the root so `gc` keeps it.
        chunk_size: Plaintext bytes per encrypted chunk.
        profile: The ciphertext's CID profile or its name (default "unixfs-v0-2015").

    Returns:
        (cid, plaintext_sha256, size): the ciphertext CID, the plaintext digest and size.

    Raises:
        InvalidKeyMaterialError: If `key` is not 32 bytes.
        ConfigError: If `cid_version` is not 0 or 1, the profile is unknown or disagrees
            with it, or `chunk_size` is out of range.
        FileNotFoundError: If `path` does not exist.
        BlockWriteError: If a block could not be written (StorageFullError when full);
            nothing is pinned then.
    """
    encryptor = StreamEncryptor(key, chunk_size=chunk_size)
    with open(path, "rb", buffering=0) as fh:
        # Reads of exactly one chunk reach libsodium without being re-cut or copied.
        pieces = iter(lambda: fh.read(chunk_size), b"")
        result = import_file(
            encryptor.encrypt(pieces), store, cid_version=cid_version, profile=profile, pin=pin
        )
    done = encryptor.result
    # Internal invariant, not input validation: import_file drains the stream, and a
    # drained stream has set its result.
    assert done is not None
    return EncryptedImport(result.cid, done.plaintext_sha256, done.plaintext_size)


def export_and_decrypt(
    cid: CID | str,
    source: BlockSource,
    key: bytes,
    expected_sha256: bytes,
    dest: Path | str,
) -> int:
    """Fetch an encrypted artifact, decrypt it and write the verified plaintext to `dest`.

    Args:
        cid: The ciphertext's root CID.
        source: Where blocks come from: a `Blockstore` or any storage backend (kubo, a
            gateway); every block is verified against its CID.
        key: The 32-byte content key.
        expected_sha256: The plaintext sha256 the chain commits to (32 bytes).
        dest: Where the plaintext goes; created or replaced only on success.

    Returns:
        The plaintext size in bytes.

    Raises:
        InvalidKeyMaterialError: If `key` or `expected_sha256` has a wrong length.
        InvalidCIDError: If `cid` is not a CID.
        BlockNotFoundError: If a block is missing.
        BlockHashMismatchError: If a block does not match its CID.
        DagFormatError: If the DAG is not a UnixFS file.
        StorageBackendError: If a remote backend fails.
        CiphertextFormatError: If the file is not a Mercato encrypted stream.
        WrongContentKeyError: If the key does not match the stream.
        CiphertextTamperedError: If a chunk fails authentication.
        CiphertextTruncatedError: If the stream ends before its final chunk.
        PlaintextHashMismatchError: If the plaintext does not hash to `expected_sha256`.
        BlockWriteError: If `dest` could not be written (StorageFullError when full).
        Nothing is written to `dest` in any of these cases.
    """
    expected = bytes(expected_sha256)
    decryptor = StreamDecryptor(key, expected_sha256=expected)
    dest = Path(dest)

    def checked() -> Iterator[bytes]:
        yield from decryptor.decrypt(iter_file(cid, source))
        done = decryptor.result
        # The decryptor checks the digest itself; checked again here because this is
        # the last line of defence before the plaintext gets a name.
        if done is None or not hmac.compare_digest(done.plaintext_sha256, expected):
            actual = done.plaintext_sha256 if done is not None else b""
            raise PlaintextHashMismatchError(expected, actual)

    try:
        return write_atomically(dest, checked())
    except MercatoError:
        # Checked first: storage errors can also be OSErrors (BlockWriteError, backends).
        raise
    except OSError as exc:
        raise wrap_write_error(exc, dest) from exc


__all__ = ["ENCRYPTION_CHUNK_SIZE", "EncryptedImport", "encrypt_and_import", "export_and_decrypt"]
