# SPDX-License-Identifier: AGPL-3.0-only
"""Content keys, wallet-derived buyer keys and sealed-box key wrapping.

A content key (32 random bytes) encrypts one artifact (`mercato.crypto.stream`). A
buyer receives it wrapped in a libsodium sealed box (``crypto_box_seal``, 80 bytes) to
their X25519 public key, which they posted with the purchase. That key pair is derived
from a wallet signature, so the buyer needs nothing but their wallet, on any machine.

Derivation, version 1, reproducible in a browser (viem + libsodium.js or @noble)::

    message   = "Mercato key derivation v1\\n"
                "This signature derives your Mercato decryption key. "
                "Sign it only on Mercato.\\n"
                "Chain: {chain_id}"            # decimal, no trailing newline, UTF-8
    signature = personal_sign(message)         # EIP-191; viem: signMessage({ message })
                                               # 65 bytes r || s || v
    canonical = r || s' || v'                  # s' = min(s, n - s), the low-s form
                                               # (EIP-2); v' in {27, 28}, flipped
                                               # when s was replaced; v 0/1 -> 27/28
    seed      = BLAKE2b-256(canonical, key=b"Mercato X25519 key derivation v1")
                                               # libsodium crypto_generichash(32, sig, key)
    secret    = seed                           # X25519 secret key, used as is
    public    = X25519(secret, basepoint)      # crypto_scalarmult_base(secret)

(n is the secp256k1 group order.) secp256k1 signatures from wallets are deterministic
(RFC 6979), so the same wallet signing the same message gives the same key anywhere;
canonicalising s and v removes the two ways compliant wallets may still differ.
A wallet that signs non-deterministically (some MPC and smart-contract wallets) cannot
use this scheme: the derived public key would differ from the one posted on-chain.

Why the chain id is in the message: a personal_sign signature is not bound to any
chain, so without it every deployment (a local Anvil, each testnet, mainnet) would give
a buyer the same decryption key, and a key exposed in a careless test setup would open
purchases made in production. With it each chain gets an independent key; nothing is
lost, because a purchase records the buyer's public key on the chain it happened on.
The contract address is deliberately not included: a redeployed marketplace would
otherwise change every buyer's key. Anyone who obtains this signature can decrypt the
buyer's purchases on that chain, hence "Sign it only on Mercato".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.utils
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_keys.exceptions import BadSignature

from mercato.errors import (
    ConfigError,
    InvalidKeyMaterialError,
    KeyUnwrapError,
    WalletSignatureError,
)

KEY_DERIVATION_MESSAGE = (
    "Mercato key derivation v1\n"
    "This signature derives your Mercato decryption key. Sign it only on Mercato.\n"
    "Chain: {chain_id}"
)
KEY_DERIVATION_BLAKE2B_KEY = b"Mercato X25519 key derivation v1"
CONTENT_KEY_SIZE = 32
X25519_KEY_SIZE = nacl.public.PublicKey.SIZE
WRAPPED_KEY_SIZE = nacl.bindings.crypto_box_SEALBYTES + CONTENT_KEY_SIZE
SIGNATURE_SIZE = 65

# secp256k1 group order.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

MessageSigner = Callable[[str], bytes | str]
"""Signs a text message with EIP-191 personal_sign; returns 65 bytes or 0x-hex."""


@dataclass(frozen=True)
class BuyerKey:
    """A buyer's X25519 key pair, derived from their wallet on one chain.

    Attributes:
        address: The checksummed wallet address that signed the derivation message.
        chain_id: The chain the key belongs to.
        private_key: The X25519 secret key; keep it in memory only.
    """

    address: str
    chain_id: int
    private_key: nacl.public.PrivateKey = field(repr=False)

    @property
    def public_key(self) -> bytes:
        """The 32-byte X25519 public key to post with a purchase."""
        return bytes(self.private_key.public_key)

    def unwrap(self, wrapped_key: bytes) -> bytes:
        """Open a content key wrapped for this buyer; see `unwrap_content_key`."""
        return unwrap_content_key(wrapped_key, self.private_key)


def key_derivation_message(chain_id: int) -> str:
    """The exact text a wallet signs to derive its Mercato decryption key.

    Args:
        chain_id: The EVM chain id (EIP-155) the key is for.

    Returns:
        The message text; sign its UTF-8 bytes with EIP-191 personal_sign.

    Raises:
        ConfigError: ``chain_id`` is not a positive integer.
    """
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id <= 0:
        raise ConfigError(f"chain_id must be a positive integer, got {chain_id!r}.")
    return KEY_DERIVATION_MESSAGE.format(chain_id=chain_id)


def derive_buyer_key(
    signer: LocalAccount | MessageSigner, chain_id: int, *, address: str | None = None
) -> BuyerKey:
    """Derive a buyer's X25519 key pair from a wallet signature.

    Args:
        signer: A local eth-account account, or a callable that personal_signs the
            message text (for a browser or hardware wallet) and returns the
            65-byte signature as bytes or 0x-hex.
        chain_id: The chain the key is for; it is part of the signed message.
        address: The wallet address the signature must come from. Defaults to the
            account's address for a `LocalAccount`; for a callable, when omitted, any
            valid signature is accepted and its signer is reported in the result.

    Returns:
        The key pair and the address that signed.

    Raises:
        ConfigError: ``chain_id`` is not a positive integer.
        WalletSignatureError: The signature is malformed or was made by another address.
    """
    message = key_derivation_message(chain_id)
    if isinstance(signer, LocalAccount):
        address = address or signer.address
        raw: bytes | str = bytes(signer.sign_message(encode_defunct(text=message)).signature)
    else:
        raw = signer(message)
    signature = _canonical_signature(_signature_bytes(raw))
    try:
        signed_by = Account.recover_message(encode_defunct(text=message), signature=signature)
    except (BadSignature, ValueError) as exc:
        raise WalletSignatureError(f"it cannot be recovered ({exc})") from exc
    if address is not None and signed_by.lower() != address.lower():
        raise WalletSignatureError(f"it was made by {signed_by}, not {address}", signed_by)
    seed = nacl.hash.blake2b(
        signature,
        digest_size=X25519_KEY_SIZE,
        key=KEY_DERIVATION_BLAKE2B_KEY,
        encoder=nacl.encoding.RawEncoder,
    )
    return BuyerKey(signed_by, chain_id, nacl.public.PrivateKey(seed))


def generate_content_key() -> bytes:
    """A fresh random content key for one artifact.

    Returns:
        32 bytes from libsodium's CSPRNG.
    """
    return nacl.utils.random(CONTENT_KEY_SIZE)


# Any scalar works: libsodium refuses the points whose product with every clamped scalar
# is the identity (the small-order points on the curve and its twist), and only those.
_PROBE_SCALAR = nacl.bindings.crypto_hash_sha256(b"Mercato buyer key probe")


def validate_buyer_key(buyer_public_key: bytes) -> bytes:
    """Check that a content key can be sealed to this X25519 public key.

    The marketplace refuses only the all-zero key; libsodium also refuses the other
    low-order points (e.g. ``01 00 .. 00`` and the order-8 points), for which a sealed
    box would have no secret. A purchase made with such a key could never be delivered,
    so clients check before paying and sellers check before sealing.

    Args:
        buyer_public_key: The 32-byte X25519 public key a purchase will carry.

    Returns:
        The key, as bytes.

    Raises:
        InvalidKeyMaterialError: The key is not 32 bytes, or it is a low-order point no
            real key pair has.
    """
    public = bytes(buyer_public_key)
    if len(public) != X25519_KEY_SIZE:
        raise InvalidKeyMaterialError("buyer public key", X25519_KEY_SIZE, len(public))
    try:
        nacl.bindings.crypto_scalarmult(_PROBE_SCALAR, public)
    except nacl.exceptions.CryptoError as exc:
        raise InvalidKeyMaterialError(
            "buyer public key",
            X25519_KEY_SIZE,
            len(public),
            reason="it is a low-order X25519 point that no real key pair has",
        ) from exc
    return public


def wrap_content_key(content_key: bytes, buyer_public_key: bytes) -> bytes:
    """Wrap a content key for one buyer as a libsodium sealed box.

    Args:
        content_key: The 32-byte content key.
        buyer_public_key: The buyer's 32-byte X25519 public key, from their purchase.

    Returns:
        ``WRAPPED_KEY_SIZE`` (80) bytes that only the buyer's secret key opens.

    Raises:
        InvalidKeyMaterialError: A key has the wrong length, or the public key is a
            degenerate point no secret key belongs to.
    """
    key = bytes(content_key)
    if len(key) != CONTENT_KEY_SIZE:
        raise InvalidKeyMaterialError("content key", CONTENT_KEY_SIZE, len(key))
    public = validate_buyer_key(buyer_public_key)
    try:
        return bytes(nacl.public.SealedBox(nacl.public.PublicKey(public)).encrypt(key))
    except nacl.exceptions.CryptoError as exc:
        # libsodium refuses low-order points (e.g. all zeros): a shared secret would be 0.
        raise InvalidKeyMaterialError(
            "buyer public key",
            X25519_KEY_SIZE,
            len(public),
            reason="it is a low-order X25519 point that no real key pair has",
        ) from exc


def unwrap_content_key(wrapped_key: bytes, buyer_private_key: nacl.public.PrivateKey) -> bytes:
    """Open a content key wrapped for this buyer.

    Args:
        wrapped_key: The 80-byte sealed box delivered on-chain.
        buyer_private_key: The buyer's X25519 secret key (`BuyerKey.private_key`).

    Returns:
        The 32-byte content key.

    Raises:
        InvalidKeyMaterialError: ``wrapped_key`` is not 80 bytes.
        KeyUnwrapError: The box was sealed to another key or was altered.
    """
    wrapped = bytes(wrapped_key)
    if len(wrapped) != WRAPPED_KEY_SIZE:
        raise InvalidKeyMaterialError("wrapped content key", WRAPPED_KEY_SIZE, len(wrapped))
    try:
        key = nacl.public.SealedBox(buyer_private_key).decrypt(wrapped)
    except nacl.exceptions.CryptoError as exc:
        raise KeyUnwrapError() from exc
    return bytes(key)


def _signature_bytes(raw: bytes | str) -> bytes:
    if isinstance(raw, str):
        text = raw[2:] if raw[:2].lower() == "0x" else raw
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise WalletSignatureError("it is not hex") from exc
    signature = bytes(raw)
    if len(signature) != SIGNATURE_SIZE:
        raise WalletSignatureError(
            f"it is {len(signature)} bytes, expected {SIGNATURE_SIZE} (r || s || v)"
        )
    return signature


def _canonical_signature(signature: bytes) -> bytes:
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v in (0, 1):
        v += 27  # some hardware wallets return the raw recovery id
    if v not in (27, 28):
        raise WalletSignatureError(f"its recovery byte v is {v}, expected 27 or 28")
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        raise WalletSignatureError("r or s is out of range")
    if s > _SECP256K1_N // 2:
        # (r, n - s) is the same signature with the other recovery id.
        s = _SECP256K1_N - s
        v = 55 - v
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
