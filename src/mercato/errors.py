# SPDX-License-Identifier: AGPL-3.0-only
"""Every error Mercato raises on purpose.

One root, `MercatoError`; each subclass also inherits the standard-library base that
fits, carries the data a caller needs (ids, CIDs, transaction hashes) and has a
`code`: a stable, machine-readable name that never changes meaning once released.
The message is a sentence a person can act on.
"""

from __future__ import annotations


class MercatoError(Exception):
    """Root of every error Mercato raises on purpose."""

    code: str = "mercato_error"


# --- configuration -------------------------------------------------------------------


class ConfigError(MercatoError, ValueError):
    """A setting is missing or malformed."""

    code = "config_error"


# --- crypto (mercato.crypto) -----------------------------------------------------------


class CryptoError(MercatoError):
    """Encrypting, decrypting or delivering a content key failed."""

    code = "crypto_error"


class InvalidKeyMaterialError(CryptoError, ValueError):
    """A key, hash or signature has the wrong type or length."""

    code = "invalid_key_material"

    def __init__(self, what: str, expected_len: int, actual_len: int) -> None:
        self.what = what
        self.expected_len = expected_len
        self.actual_len = actual_len
        super().__init__(
            f"{what} must be {expected_len} bytes, got {actual_len}. "
            "Check that the value was not hex-encoded or truncated on the way."
        )


class CiphertextFormatError(CryptoError, ValueError):
    """The bytes are not a Mercato encrypted stream this version can read."""

    code = "ciphertext_format"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"Not a readable Mercato encrypted stream: {reason}. "
            "Check that you fetched the encrypted artifact, not the plaintext or another file."
        )


class WrongContentKeyError(CryptoError, ValueError):
    """The content key does not match the encrypted stream."""

    code = "wrong_content_key"

    def __init__(self) -> None:
        super().__init__(
            "This content key does not open this artifact (or the stream header was altered). "
            "Check that the key delivered for this purchase belongs to this model version."
        )


class CiphertextTamperedError(CryptoError, ValueError):
    """A chunk of an encrypted stream failed authentication: altered, reordered or lost."""

    code = "ciphertext_tampered"

    def __init__(self, chunk_index: int, detail: str | None = None) -> None:
        self.chunk_index = chunk_index
        super().__init__(
            detail
            or (
                f"Chunk {chunk_index} of the encrypted artifact failed authentication: the "
                "ciphertext was altered, reordered or corrupted. Fetch it again from the "
                "provider or another IPFS node."
            )
        )


class CiphertextTruncatedError(CiphertextTamperedError):
    """The encrypted stream ended before its final chunk."""

    code = "ciphertext_truncated"

    def __init__(self, chunk_index: int) -> None:
        super().__init__(
            chunk_index,
            f"The encrypted artifact ends at chunk {chunk_index} without its final chunk: the "
            "download was cut short (or its last chunk was altered). Fetch it again.",
        )


class PlaintextHashMismatchError(CryptoError, ValueError):
    """The decrypted bytes do not hash to the sha256 the chain commits to."""

    code = "plaintext_hash_mismatch"

    def __init__(self, expected: bytes, actual: bytes) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"The decrypted artifact has sha256 {actual.hex()}, but the chain commits to "
            f"{expected.hex()}. Nothing was written. The seller encrypted other bytes than it "
            "published, or you are checking against the wrong model version."
        )


class KeyUnwrapError(CryptoError, ValueError):
    """A wrapped content key could not be opened with this buyer key."""

    code = "key_unwrap_failed"

    def __init__(self) -> None:
        super().__init__(
            "The wrapped content key cannot be opened with this wallet's decryption key. "
            "Sign the key-derivation message with the wallet that made the purchase, "
            "on the same chain."
        )


class WalletSignatureError(CryptoError, ValueError):
    """A wallet returned a signature that cannot be used to derive a key."""

    code = "wallet_signature_invalid"

    def __init__(self, reason: str, address: str | None = None) -> None:
        self.reason = reason
        self.address = address
        super().__init__(
            f"The wallet signature cannot derive a decryption key: {reason}. "
            "Sign the exact Mercato key-derivation message with a personal_sign (EIP-191) "
            "wallet."
        )
