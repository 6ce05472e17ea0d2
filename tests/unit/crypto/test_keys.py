# SPDX-License-Identifier: AGPL-3.0-only
"""Wallet-derived buyer keys and sealed-box key wrapping."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import nacl.bindings
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from mercato.crypto import (
    derive_buyer_key,
    generate_content_key,
    key_derivation_message,
    unwrap_content_key,
    validate_buyer_key,
    wrap_content_key,
)
from mercato.crypto.keys import KEY_DERIVATION_BLAKE2B_KEY, WRAPPED_KEY_SIZE
from mercato.errors import (
    ConfigError,
    InvalidKeyMaterialError,
    KeyUnwrapError,
    WalletSignatureError,
)

# Anvil's well-known first development account; never holds real funds.
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
# Pinned once, so a change to the message or the derivation cannot slip through, and a
# JavaScript implementation has a vector to test against.
ANVIL_X25519_PUBLIC = {
    31337: "45158840870a95a60e9f1aeaf34cf9afca15e4527d1776d8ed596703db037c18",
    1: "9f06bdc6adfc315d65e460d534c0a32b7a5bf452a321a97444503321663ae776",
}
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture(scope="module")
def account() -> LocalAccount:
    return Account.from_key(ANVIL_KEY)


def personal_sign(account: LocalAccount, message: str) -> bytes:
    return bytes(account.sign_message(encode_defunct(text=message)).signature)


def test_message_is_exact() -> None:
    assert key_derivation_message(31337).encode() == (
        b"Mercato key derivation v1\n"
        b"This signature derives your Mercato decryption key. Sign it only on Mercato.\n"
        b"Chain: 31337"
    )


@pytest.mark.parametrize("chain_id", [31337, 1])
def test_known_vector(account: LocalAccount, chain_id: int) -> None:
    key = derive_buyer_key(account, chain_id)

    assert key.public_key.hex() == ANVIL_X25519_PUBLIC[chain_id]
    assert key.address == account.address
    assert key.chain_id == chain_id


def test_derivation_matches_documented_steps(account: LocalAccount) -> None:
    """Recompute the documented derivation with stdlib BLAKE2b, not libsodium's."""
    signature = personal_sign(account, key_derivation_message(31337))
    seed = hashlib.blake2b(signature, digest_size=32, key=KEY_DERIVATION_BLAKE2B_KEY).digest()

    key = derive_buyer_key(account, 31337)

    assert bytes(key.private_key) == seed
    assert key.public_key == nacl.bindings.crypto_scalarmult_base(seed)


def test_same_wallet_same_key_in_a_fresh_process(account: LocalAccount) -> None:
    code = (
        "from eth_account import Account; from mercato.crypto import derive_buyer_key;"
        f"print(derive_buyer_key(Account.from_key('{ANVIL_KEY}'), 31337).public_key.hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )

    assert out.stdout.strip() == derive_buyer_key(account, 31337).public_key.hex()
    assert derive_buyer_key(account, 31337) == derive_buyer_key(account, 31337)


def test_different_account_different_key(account: LocalAccount) -> None:
    other = Account.create()

    assert derive_buyer_key(other, 31337).public_key != derive_buyer_key(account, 31337).public_key


def test_different_chain_different_key(account: LocalAccount) -> None:
    assert derive_buyer_key(account, 1).public_key != derive_buyer_key(account, 10).public_key


def test_callable_signer_bytes_and_hex(account: LocalAccount) -> None:
    expected = derive_buyer_key(account, 31337).public_key

    as_bytes = derive_buyer_key(lambda m: personal_sign(account, m), 31337)
    as_hex = derive_buyer_key(lambda m: "0x" + personal_sign(account, m).hex(), 31337)

    assert as_bytes.public_key == expected
    assert as_hex.public_key == expected
    assert as_hex.address == account.address


def test_wallet_quirks_give_the_same_key(account: LocalAccount) -> None:
    """A raw recovery id (v = 0/1) or the high-s twin of the signature changes nothing."""
    expected = derive_buyer_key(account, 31337).public_key
    sig = personal_sign(account, key_derivation_message(31337))
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    raw_v = r + s.to_bytes(32, "big") + bytes([v - 27])
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])

    assert derive_buyer_key(lambda _: raw_v, 31337).public_key == expected
    assert derive_buyer_key(lambda _: high_s, 31337, address=account.address).public_key == (
        expected
    )


def test_signature_from_another_wallet(account: LocalAccount) -> None:
    impostor = Account.create()

    with pytest.raises(WalletSignatureError) as err:
        derive_buyer_key(lambda m: personal_sign(impostor, m), 31337, address=account.address)
    assert err.value.address == impostor.address


def test_signature_over_another_message(account: LocalAccount) -> None:
    # Signing the wrong text recovers to some other address, so the check catches it.
    with pytest.raises(WalletSignatureError):
        derive_buyer_key(lambda _: personal_sign(account, "hello"), 31337, address=account.address)


@pytest.mark.parametrize(
    ("signature", "match"),
    [
        (b"\x01" * 64, "64 bytes"),
        ("0xzz", "not hex"),
        (b"\x01" * 64 + b"\x05", "recovery byte"),
        (bytes(64) + b"\x1b", "out of range"),
    ],
)
def test_malformed_signature(signature: bytes | str, match: str) -> None:
    with pytest.raises(WalletSignatureError, match=match):
        derive_buyer_key(lambda _: signature, 31337)


@pytest.mark.parametrize("chain_id", [0, -1, True])
def test_bad_chain_id(account: LocalAccount, chain_id: int) -> None:
    with pytest.raises(ConfigError):
        derive_buyer_key(account, chain_id)


def test_wrap_and_unwrap(account: LocalAccount) -> None:
    buyer = derive_buyer_key(account, 31337)
    content_key = generate_content_key()

    wrapped = wrap_content_key(content_key, buyer.public_key)

    assert len(wrapped) == WRAPPED_KEY_SIZE == 80
    assert buyer.unwrap(wrapped) == content_key
    # Sealed boxes use a fresh ephemeral key each time.
    assert wrap_content_key(content_key, buyer.public_key) != wrapped


def test_unwrap_by_another_buyer(account: LocalAccount) -> None:
    wrapped = wrap_content_key(generate_content_key(), derive_buyer_key(account, 31337).public_key)
    other = derive_buyer_key(Account.create(), 31337)

    with pytest.raises(KeyUnwrapError):
        other.unwrap(wrapped)
    # Same wallet, other chain: a different key, so it cannot open it either.
    with pytest.raises(KeyUnwrapError):
        unwrap_content_key(wrapped, derive_buyer_key(account, 1).private_key)


def test_unwrap_tampered(account: LocalAccount) -> None:
    buyer = derive_buyer_key(account, 31337)
    wrapped = bytearray(wrap_content_key(generate_content_key(), buyer.public_key))
    wrapped[40] ^= 0x01

    with pytest.raises(KeyUnwrapError):
        buyer.unwrap(bytes(wrapped))


def test_wrong_lengths(account: LocalAccount) -> None:
    buyer = derive_buyer_key(account, 31337)

    with pytest.raises(InvalidKeyMaterialError, match="content key"):
        wrap_content_key(bytes(16), buyer.public_key)
    with pytest.raises(InvalidKeyMaterialError, match="buyer public key"):
        wrap_content_key(generate_content_key(), buyer.public_key[:31])
    with pytest.raises(InvalidKeyMaterialError, match="wrapped content key"):
        buyer.unwrap(bytes(79))


# The points of order 1, 2, 4 and 8 on Curve25519 and their non-canonical twins (the
# x-coordinate plus p, or the top bit set): the contract only refuses all zeros.
LOW_ORDER_POINTS = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def test_low_order_public_key() -> None:
    with pytest.raises(InvalidKeyMaterialError, match="low-order"):
        wrap_content_key(generate_content_key(), bytes(32))


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_validate_buyer_key_refuses_every_low_order_point(point: bytes) -> None:
    with pytest.raises(InvalidKeyMaterialError, match="low-order") as caught:
        validate_buyer_key(point)
    assert caught.value.code == "invalid_key_material"
    # The seller's side refuses the same keys, with the same typed error.
    with pytest.raises(InvalidKeyMaterialError, match="low-order"):
        wrap_content_key(generate_content_key(), point)


def test_validate_buyer_key_accepts_real_keys_and_checks_length(account: LocalAccount) -> None:
    public = derive_buyer_key(account, 31337).public_key
    assert validate_buyer_key(public) == public
    with pytest.raises(InvalidKeyMaterialError, match="must be 32 bytes"):
        validate_buyer_key(public[:31])


def test_private_key_not_in_repr(account: LocalAccount) -> None:
    key = derive_buyer_key(account, 31337)

    assert bytes(key.private_key).hex() not in repr(key)
    assert "private_key" not in repr(key)
