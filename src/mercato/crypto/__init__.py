# SPDX-License-Identifier: AGPL-3.0-only
"""Encryption of paid artifacts and delivery of their keys to buyers.

- `mercato.crypto.stream`: the encrypted stream format (libsodium secretstream) and
  streaming encrypt/decrypt generators for the storage importer.
- `mercato.crypto.files`: file-to-file helpers with atomic, verified writes.
- `mercato.crypto.keys`: content keys, wallet-derived X25519 buyer keys and sealed-box
  key wrapping.
"""

from mercato.crypto.files import decrypt_file, encrypt_file, read_chunks
from mercato.crypto.keys import (
    BuyerKey,
    MessageSigner,
    derive_buyer_key,
    generate_content_key,
    key_derivation_message,
    unwrap_content_key,
    validate_buyer_key,
    wrap_content_key,
)
from mercato.crypto.stream import (
    DEFAULT_CHUNK_SIZE,
    HEADER_SIZE,
    DecryptionResult,
    EncryptionResult,
    StreamDecryptor,
    StreamEncryptor,
    check_content_key,
    ciphertext_size,
    decrypt_chunks,
    encrypt_chunks,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "HEADER_SIZE",
    "BuyerKey",
    "DecryptionResult",
    "EncryptionResult",
    "MessageSigner",
    "StreamDecryptor",
    "StreamEncryptor",
    "check_content_key",
    "ciphertext_size",
    "decrypt_chunks",
    "decrypt_file",
    "derive_buyer_key",
    "encrypt_chunks",
    "encrypt_file",
    "generate_content_key",
    "key_derivation_message",
    "read_chunks",
    "unwrap_content_key",
    "validate_buyer_key",
    "wrap_content_key",
]
