# SPDX-License-Identifier: AGPL-3.0-only
"""The marketplace's selling side: publish-and-list, listings, purchases, permits, licenses."""

from __future__ import annotations

from typing import Any

import boa
import nacl.bindings
import nacl.exceptions
import nacl.public
import pytest

from tests.unit.contracts.chain import (
    BUYER_KEY,
    DELIVERY_WINDOW,
    FUNDED,
    PRICE,
    WRAPPED_KEY,
    digests,
    events,
    only_event,
    reverts,
    sign_permit,
    terms,
)

NONE, PENDING, DELIVERED, REFUNDED = 0, 1, 2, 3
MAX_PRICE = 2**96 - 1
DAY = 86_400


def _list(marketplace: Any, owner: str, model_id: int, price: int, duration: int = 0) -> None:
    with boa.env.prank(owner):
        marketplace.set_listing(model_id, price, duration, True)


def _deliver(marketplace: Any, owner: str, model_id: int, buyer: str) -> None:
    with boa.env.prank(owner):
        marketplace.deliver(model_id, buyer, 1, WRAPPED_KEY)


def test_publish_succeeds(marketplace: Any, registry: Any, alice: str) -> None:
    artifact, plaintext, manifest = digests(4)
    with boa.env.prank(alice):
        model_id = marketplace.publish(artifact, plaintext, manifest, [], [], PRICE, DAY)
    listed = only_event(marketplace, "Listed")
    added = only_event(marketplace, "VersionAdded")
    minted = only_event(marketplace, "Transfer")
    assert model_id == 1
    assert (listed.model_id, listed.price, listed.license_duration) == (1, PRICE, DAY)
    assert (listed.for_sale, listed.fee_bps) == (True, 0)
    assert (added.model_id, added.artifact_cid_digest) == (1, artifact)
    assert (minted.receiver, minted.token_id) == (alice, 1)
    # The creator owns the model, not the marketplace that published it.
    assert registry.ownerOf(1) == alice
    assert marketplace.listing(1) == (PRICE, DAY, True, 0)


def test_publish_with_parents(marketplace: Any, registry: Any, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        parent = marketplace.publish(*digests(1), [], [], PRICE, 0)
    with boa.env.prank(bob):
        child = marketplace.publish(*digests(2), [parent], [1_500], PRICE, 0)
    recorded = only_event(marketplace, "LineageRecorded")
    assert (recorded.model_id, recorded.parents, recorded.royalty_bps) == (child, [parent], [1_500])
    assert registry.lineage(child) == ([parent], [1_500])


def test_publish_refusals_come_from_the_registry(marketplace: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("model_registry: parent model does not exist"):
        marketplace.publish(*digests(1), [1], [100], PRICE, 0)
    with boa.env.prank(alice), reverts("model_registry: artifact CID digest is empty"):
        marketplace.publish(bytes(32), *digests(1)[1:], [], [], PRICE, 0)


def test_publish_price_too_large(marketplace: Any, registry: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("marketplace: price too large"):
        marketplace.publish(*digests(1), [], [], MAX_PRICE + 1, 0)
    assert registry.total_models() == 0


def test_set_listing_succeeds(marketplace: Any, listed: int, alice: str) -> None:
    with boa.env.prank(alice):
        marketplace.set_listing(listed, MAX_PRICE, 2**32 - 1, False)
    event = only_event(marketplace, "Listed")
    assert (event.model_id, event.price, event.license_duration) == (listed, MAX_PRICE, 2**32 - 1)
    assert (event.for_sale, event.fee_bps) == (False, 0)
    assert marketplace.listing(listed) == (MAX_PRICE, 2**32 - 1, False, 0)


def test_set_listing_of_a_registry_model(marketplace: Any, model: int, alice: str) -> None:
    # A model published in the registry alone is not for sale until listed.
    assert marketplace.listing(model) == (0, 0, False, 0)
    _list(marketplace, alice, model, 5)
    assert marketplace.listing(model) == (5, 0, True, 0)


def test_set_listing_by_non_owner(marketplace: Any, listed: int, bob: str) -> None:
    with boa.env.prank(bob), reverts("marketplace: caller is not the model owner"):
        marketplace.set_listing(listed, 1, 0, True)
    assert marketplace.listing(listed) == (PRICE, 0, True, 0)


def test_set_listing_of_missing_model(marketplace: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("erc721: token does not exist"):
        marketplace.set_listing(9, 1, 0, True)


def test_set_listing_price_too_large(marketplace: Any, listed: int, alice: str) -> None:
    with boa.env.prank(alice), reverts("marketplace: price too large"):
        marketplace.set_listing(listed, MAX_PRICE + 1, 0, True)


def test_set_listing_duration_too_long(marketplace: Any, listed: int, alice: str) -> None:
    with boa.env.prank(alice), reverts("marketplace: license duration too long"):
        marketplace.set_listing(listed, 1, 2**32, True)


def test_purchase_paid_succeeds(
    marketplace: Any, token: Any, listed: int, bob: str, approve_all: None
) -> None:
    start = boa.env.timestamp
    with boa.env.prank(bob):
        marketplace.purchase(listed, PRICE, BUYER_KEY)
    purchased = only_event(marketplace, "Purchased")
    transfer = only_event(marketplace, "Transfer")
    assert (purchased.model_id, purchased.buyer, purchased.price) == (listed, bob, PRICE)
    assert (purchased.fee_bps, purchased.buyer_key) == (0, BUYER_KEY)
    assert (transfer.sender, transfer.receiver, transfer.value) == (
        bob,
        marketplace.address,
        PRICE,
    )
    assert token.balanceOf(bob) == FUNDED - PRICE
    assert token.balanceOf(marketplace.address) == PRICE
    assert marketplace.license(bob, listed) == (PENDING, PRICE, start + DELIVERY_WINDOW, 0)
    # Paid but not delivered: no license yet.
    assert not marketplace.has_license(bob, listed)


def test_purchase_below_max_price_pays_the_price(
    marketplace: Any, token: Any, listed: int, bob: str, approve_all: None
) -> None:
    with boa.env.prank(bob):
        marketplace.purchase(listed, PRICE * 2, BUYER_KEY)
    assert token.balanceOf(bob) == FUNDED - PRICE


def test_purchase_not_for_sale(
    marketplace: Any, listed: int, model: int, alice: str, bob: str
) -> None:
    with boa.env.prank(alice):
        marketplace.set_listing(listed, PRICE, 0, False)
    for model_id in (listed, model, 99):
        with boa.env.prank(bob), reverts("marketplace: model is not for sale"):
            marketplace.purchase(model_id, PRICE, BUYER_KEY)


def test_purchase_above_max_price(
    marketplace: Any, listed: int, bob: str, approve_all: None
) -> None:
    with boa.env.prank(bob), reverts("marketplace: price is above the buyer's maximum"):
        marketplace.purchase(listed, PRICE - 1, BUYER_KEY)


def test_purchase_already_pending(marketplace: Any, pending: int, bob: str) -> None:
    with boa.env.prank(bob), reverts("marketplace: a purchase of this model is already pending"):
        marketplace.purchase(pending, PRICE, BUYER_KEY)


def test_purchase_already_licensed(marketplace: Any, pending: int, alice: str, bob: str) -> None:
    _deliver(marketplace, alice, pending, bob)
    with boa.env.prank(bob), reverts("marketplace: buyer already holds a license"):
        marketplace.purchase(pending, PRICE, BUYER_KEY)


def test_purchase_empty_buyer_key(
    marketplace: Any, listed: int, bob: str, approve_all: None
) -> None:
    with boa.env.prank(bob), reverts("marketplace: buyer key is not a usable X25519 public key"):
        marketplace.purchase(listed, PRICE, bytes(32))


def test_purchase_without_allowance(marketplace: Any, token: Any, listed: int, bob: str) -> None:
    with boa.env.prank(bob), reverts("erc20: insufficient allowance"):
        marketplace.purchase(listed, PRICE, BUYER_KEY)
    assert marketplace.license(bob, listed) == (NONE, 0, 0, 0)
    assert token.balanceOf(bob) == FUNDED


def test_purchase_without_enough_tokens(
    marketplace: Any, token: Any, listed: int, stranger: str
) -> None:
    with boa.env.prank(stranger):
        token.approve(marketplace.address, PRICE)
    with boa.env.prank(stranger), reverts("erc20: transfer amount exceeds balance"):
        marketplace.purchase(listed, PRICE, BUYER_KEY)


def test_purchase_free_succeeds(marketplace: Any, token: Any, alice: str, stranger: str) -> None:
    with boa.env.prank(alice):
        model_id = marketplace.publish(*digests(1), [], [], 0, 0)
    with boa.env.prank(stranger):  # no tokens, no allowance, no key needed
        marketplace.purchase(model_id, 0, bytes(32))
    granted = only_event(marketplace, "LicenseGranted")
    assert events(marketplace, "Purchased") == []
    assert (granted.model_id, granted.buyer, granted.expiry) == (model_id, stranger, 0)
    assert marketplace.license(stranger, model_id) == (DELIVERED, 0, 0, 0)
    assert marketplace.has_license(stranger, model_id)
    assert token.balanceOf(marketplace.address) == 0
    with boa.env.prank(stranger), reverts("marketplace: buyer already holds a license"):
        marketplace.purchase(model_id, 0, bytes(32))


def test_purchase_free_with_duration_and_rebuy(marketplace: Any, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        model_id = marketplace.publish(*digests(1), [], [], 0, DAY)
    start = boa.env.timestamp
    with boa.env.prank(bob):
        marketplace.purchase(model_id, terms(0, DAY), bytes(32))
    assert only_event(marketplace, "LicenseGranted").expiry == start + DAY
    boa.env.time_travel(seconds=DAY - 1)
    assert marketplace.has_license(bob, model_id)
    with boa.env.prank(bob), reverts("marketplace: buyer already holds a license"):
        marketplace.purchase(model_id, terms(0, DAY), bytes(32))
    boa.env.time_travel(seconds=1)
    assert not marketplace.has_license(bob, model_id)
    with boa.env.prank(bob):
        marketplace.purchase(model_id, terms(0, DAY), bytes(32))
    assert only_event(marketplace, "LicenseGranted").expiry == start + 2 * DAY
    assert marketplace.has_license(bob, model_id)


def test_duration_license_expires_and_paid_rebuy(
    marketplace: Any, token: Any, listed: int, alice: str, bob: str, approve_all: None
) -> None:
    _list(marketplace, alice, listed, PRICE, DAY)
    with boa.env.prank(bob):
        marketplace.purchase(listed, terms(PRICE, DAY), BUYER_KEY)
    boa.env.time_travel(seconds=100)
    delivered_at = boa.env.timestamp
    _deliver(marketplace, alice, listed, bob)
    # The license runs from delivery, not from purchase.
    assert only_event(marketplace, "Delivered").expiry == delivered_at + DAY
    assert marketplace.license(bob, listed) == (DELIVERED, PRICE, delivered_at + DAY, 0)
    boa.env.time_travel(seconds=DAY - 1)
    assert marketplace.has_license(bob, listed)
    with boa.env.prank(bob), reverts("marketplace: buyer already holds a license"):
        marketplace.purchase(listed, terms(PRICE, DAY), BUYER_KEY)
    boa.env.time_travel(seconds=1)
    assert not marketplace.has_license(bob, listed)
    with boa.env.prank(bob):
        marketplace.purchase(listed, terms(PRICE, DAY), BUYER_KEY)
    assert only_event(marketplace, "Purchased").price == PRICE
    assert marketplace.license(bob, listed)[0] == PENDING
    assert not marketplace.has_license(bob, listed)
    _deliver(marketplace, alice, listed, bob)
    assert marketplace.has_license(bob, listed)
    assert token.balanceOf(bob) == FUNDED - 2 * PRICE


def test_purchase_keeps_terms_of_its_time(
    marketplace: Any, listed: int, alice: str, bob: str, approve_all: None
) -> None:
    _list(marketplace, alice, listed, PRICE, DAY)
    with boa.env.prank(bob):
        marketplace.purchase(listed, terms(PRICE, DAY), BUYER_KEY)
    _list(marketplace, alice, listed, PRICE * 2, 0)  # terms change while pending
    _deliver(marketplace, alice, listed, bob)
    assert only_event(marketplace, "Delivered").expiry == boa.env.timestamp + DAY
    assert marketplace.license(bob, listed)[1] == PRICE


def test_rebuy_after_refund(
    marketplace: Any, token: Any, pending: int, alice: str, bob: str
) -> None:
    boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
    marketplace.refund(pending, bob)
    with boa.env.prank(bob):
        marketplace.purchase(pending, PRICE, BUYER_KEY)
    assert marketplace.license(bob, pending)[0] == PENDING
    assert token.balanceOf(bob) == FUNDED - PRICE


def test_has_license_is_per_account_and_model(
    marketplace: Any, pending: int, alice: str, bob: str, carol: str
) -> None:
    _deliver(marketplace, alice, pending, bob)
    assert marketplace.has_license(bob, pending)
    assert not marketplace.has_license(carol, pending)
    assert not marketplace.has_license(bob, pending + 1)
    assert not marketplace.has_license(alice, pending)  # owning is not holding a license


def _signed(token: Any, marketplace: Any, amount: int = PRICE) -> tuple[int, int, bytes, bytes]:
    deadline = boa.env.timestamp + 600
    v, r, s = sign_permit(token, str(marketplace.address), amount, deadline)
    return deadline, v, r, s


def test_purchase_with_permit_succeeds(
    marketplace: Any, token: Any, listed: int, signer: str
) -> None:
    assert token.allowance(signer, marketplace.address) == 0
    deadline, v, r, s = _signed(token, marketplace)
    with boa.env.prank(signer):
        marketplace.purchase_with_permit(listed, PRICE, BUYER_KEY, PRICE, deadline, v, r, s)
    permitted, spent = events(marketplace, "Approval")
    purchased = only_event(marketplace, "Purchased")
    # The permit sets the allowance; transferFrom then spends it (snekmate logs both).
    assert (permitted.owner, permitted.spender, permitted.value) == (
        signer,
        marketplace.address,
        PRICE,
    )
    assert (spent.owner, spent.spender, spent.value) == (signer, marketplace.address, 0)
    assert (purchased.buyer, purchased.price, purchased.buyer_key) == (signer, PRICE, BUYER_KEY)
    assert token.balanceOf(signer) == FUNDED - PRICE
    assert token.allowance(signer, marketplace.address) == 0
    assert token.nonces(signer) == 1


def test_purchase_with_permit_front_run_still_succeeds(
    marketplace: Any, token: Any, listed: int, signer: str, carol: str
) -> None:
    deadline, v, r, s = _signed(token, marketplace)
    # Carol copies the permit from the mempool and submits it first.
    with boa.env.prank(carol):
        token.permit(signer, marketplace.address, PRICE, deadline, v, r, s)
    with boa.env.prank(signer):
        marketplace.purchase_with_permit(listed, PRICE, BUYER_KEY, PRICE, deadline, v, r, s)
    purchased = only_event(marketplace, "Purchased")
    # The copied permit failed inside: the only Approval is transferFrom spending it.
    assert [e.value for e in events(marketplace, "Approval")] == [0]
    assert (purchased.buyer, purchased.price) == (signer, PRICE)
    assert token.balanceOf(signer) == FUNDED - PRICE
    assert marketplace.license(signer, listed)[0] == PENDING


def test_purchase_with_permit_with_existing_allowance(
    marketplace: Any, token: Any, listed: int, signer: str
) -> None:
    # A garbage permit is not fatal when an allowance is already there.
    with boa.env.prank(signer):
        token.approve(marketplace.address, PRICE)
        marketplace.purchase_with_permit(
            listed, PRICE, BUYER_KEY, PRICE, 0, 27, bytes(32), bytes(32)
        )
    assert only_event(marketplace, "Purchased").buyer == signer


def test_purchase_with_permit_expired(
    marketplace: Any, token: Any, listed: int, signer: str
) -> None:
    deadline, v, r, s = _signed(token, marketplace)
    boa.env.time_travel(seconds=601)
    with boa.env.prank(signer), reverts("erc20: insufficient allowance"):
        marketplace.purchase_with_permit(listed, PRICE, BUYER_KEY, PRICE, deadline, v, r, s)
    assert token.balanceOf(signer) == FUNDED


def test_purchase_with_permit_invalid(
    marketplace: Any, token: Any, listed: int, signer: str
) -> None:
    deadline, v, r, s = _signed(token, marketplace, PRICE - 1)
    # The signature covers less than the amount submitted with it.
    with boa.env.prank(signer), reverts("erc20: insufficient allowance"):
        marketplace.purchase_with_permit(listed, PRICE, BUYER_KEY, PRICE, deadline, v, r, s)
    assert token.nonces(signer) == 0


def test_purchase_with_permit_too_small(
    marketplace: Any, token: Any, listed: int, signer: str
) -> None:
    deadline, v, r, s = _signed(token, marketplace, PRICE - 1)
    with boa.env.prank(signer), reverts("erc20: insufficient allowance"):
        marketplace.purchase_with_permit(listed, PRICE, BUYER_KEY, PRICE - 1, deadline, v, r, s)


def test_purchase_with_permit_by_someone_else_cannot_use_it(
    marketplace: Any, token: Any, listed: int, signer: str, carol: str
) -> None:
    # The permit is checked against the caller: carol cannot spend the signer's tokens.
    deadline, v, r, s = _signed(token, marketplace)
    with boa.env.prank(carol), reverts("erc20: insufficient allowance"):
        marketplace.purchase_with_permit(listed, PRICE, BUYER_KEY, PRICE, deadline, v, r, s)
    assert token.balanceOf(signer) == FUNDED


def test_purchase_with_permit_above_max_price(
    marketplace: Any, token: Any, listed: int, signer: str
) -> None:
    deadline, v, r, s = _signed(token, marketplace)
    with boa.env.prank(signer), reverts("marketplace: price is above the buyer's maximum"):
        marketplace.purchase_with_permit(listed, PRICE - 1, BUYER_KEY, PRICE, deadline, v, r, s)
    # The whole transaction reverted, permit included.
    assert token.nonces(signer) == 0


# -- the buyer commits to the listing's terms ---------------------------------------


@pytest.mark.parametrize(("signed_for", "changed_to"), [(DAY, 1), (0, DAY), (DAY, 0)])
def test_purchase_refused_when_the_duration_changed(
    marketplace: Any,
    token: Any,
    listed: int,
    alice: str,
    bob: str,
    approve_all: None,
    signed_for: int,
    changed_to: int,
) -> None:
    _list(marketplace, alice, listed, PRICE, signed_for)
    signed = terms(PRICE, signed_for)  # what bob saw and signed
    # The owner's change is mined first: same price, another license.
    _list(marketplace, alice, listed, PRICE, changed_to)
    with boa.env.prank(bob), reverts("marketplace: listing terms differ from the buyer's"):
        marketplace.purchase(listed, signed, BUYER_KEY)
    assert marketplace.license(bob, listed) == (NONE, 0, 0, 0)
    assert token.balanceOf(bob) == FUNDED
    with boa.env.prank(bob):  # on the terms as they now are, the purchase goes through
        marketplace.purchase(listed, terms(PRICE, changed_to), BUYER_KEY)
    assert marketplace.license(bob, listed)[0] == PENDING


def test_purchase_refused_when_the_listing_fee_changed(
    marketplace: Any, listed: int, deployer: str, alice: str, bob: str, approve_all: None
) -> None:
    assert marketplace.listing(listed) == (PRICE, 0, True, 0)
    with boa.env.prank(deployer):
        marketplace.set_protocol_fee(1_000)
    _list(marketplace, alice, listed, PRICE, 0)  # same price and duration, new fee
    assert marketplace.listing(listed) == (PRICE, 0, True, 1_000)
    with boa.env.prank(bob), reverts("marketplace: listing terms differ from the buyer's"):
        marketplace.purchase(listed, terms(PRICE), BUYER_KEY)
    with boa.env.prank(bob):
        marketplace.purchase(listed, terms(PRICE, 0, 1_000), BUYER_KEY)
    assert only_event(marketplace, "Purchased").fee_bps == 1_000


def test_purchase_free_refused_when_the_duration_changed(
    marketplace: Any, alice: str, bob: str
) -> None:
    with boa.env.prank(alice):
        model_id = marketplace.publish(*digests(1), [], [], 0, 0)
    _list(marketplace, alice, model_id, 0, 60)
    with boa.env.prank(bob), reverts("marketplace: listing terms differ from the buyer's"):
        marketplace.purchase(model_id, terms(0), bytes(32))
    assert not marketplace.has_license(bob, model_id)


def test_purchase_with_permit_refused_when_terms_changed(
    marketplace: Any, token: Any, listed: int, alice: str, signer: str
) -> None:
    deadline, v, r, s = _signed(token, marketplace)
    _list(marketplace, alice, listed, PRICE, 1)
    with boa.env.prank(signer), reverts("marketplace: listing terms differ from the buyer's"):
        marketplace.purchase_with_permit(listed, terms(PRICE), BUYER_KEY, PRICE, deadline, v, r, s)
    assert token.nonces(signer) == 0  # the permit was rolled back with the rest


def test_purchase_terms_ignore_the_for_sale_bit(
    marketplace: Any, listed: int, alice: str, bob: str, carol: str, approve_all: None
) -> None:
    with boa.env.prank(bob):
        marketplace.purchase(listed, terms(PRICE) | (1 << 128), BUYER_KEY)
    assert marketplace.license(bob, listed)[0] == PENDING
    # Setting the bit does not buy what is not for sale.
    with boa.env.prank(alice):
        marketplace.set_listing(listed, PRICE, 0, False)
    with boa.env.prank(carol), reverts("marketplace: model is not for sale"):
        marketplace.purchase(listed, terms(PRICE) | (1 << 128), BUYER_KEY)


def test_purchase_terms_with_stray_high_bits_refused(
    marketplace: Any, listed: int, bob: str, approve_all: None
) -> None:
    # An old client's "any price" (2**256 - 1) does not read as agreeing to any terms.
    for word in (2**256 - 1, terms(PRICE) | (1 << 130)):
        with boa.env.prank(bob), reverts("marketplace: listing terms differ from the buyer's"):
            marketplace.purchase(listed, word, BUYER_KEY)
    # Bits 152-255 are the licence terms digest's: this listing states none.
    with boa.env.prank(bob), reverts("marketplace: licence terms differ from the buyer's"):
        marketplace.purchase(listed, terms(PRICE) | (1 << 200), BUYER_KEY)


def test_listing_returns_the_fee_fixed_in_it(marketplace: Any, deployer: str, alice: str) -> None:
    with boa.env.prank(deployer):
        marketplace.set_protocol_fee(250)
    with boa.env.prank(alice):
        model_id = marketplace.publish(*digests(1), [], [], PRICE, DAY)
    with boa.env.prank(deployer):
        marketplace.set_protocol_fee(0)  # not the listing's fee: that stays 250
    assert marketplace.listing(model_id) == (PRICE, DAY, True, 250)


# -- buyer keys libsodium can seal to -----------------------------------------------

# libsodium's `has_small_order` blocklist (x25519_ref10.c), little-endian u-coordinates:
# 0, 1, the two points of order 8, p - 1, and p, p + 1 (0 and 1 not reduced).
_P = 2**255 - 19
LIBSODIUM_BLOCKLIST = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    _P - 1,
    _P,
    _P + 1,
]
# libsodium ignores the top bit of the last byte, so each point has two encodings.
LOW_ORDER_KEYS = [
    bytes(k.to_bytes(32, "little")[:31]) + bytes([k.to_bytes(32, "little")[31] | top])
    for k in LIBSODIUM_BLOCKLIST
    for top in (0x00, 0x80)
]


@pytest.mark.parametrize("key", LOW_ORDER_KEYS, ids=lambda k: k.hex()[:8] + ".." + k.hex()[-4:])
def test_purchase_refuses_keys_libsodium_cannot_seal_to(
    marketplace: Any, token: Any, listed: int, bob: str, approve_all: None, key: bytes
) -> None:
    # The real libsodium refuses to seal to it: the agent could never deliver.
    with pytest.raises(nacl.exceptions.RuntimeError):
        nacl.bindings.crypto_box_seal(b"content key", key)
    with boa.env.prank(bob), reverts("marketplace: buyer key is not a usable X25519 public key"):
        marketplace.purchase(listed, PRICE, key)
    assert token.balanceOf(bob) == FUNDED


def _near_misses() -> list[bytes]:
    """Keys one bit away from a low-order encoding (bits of the first and last bytes)."""
    keys = []
    for key in LOW_ORDER_KEYS[::2]:
        for index, bit in ((0, 0x01), (0, 0x02), (31, 0x01), (31, 0x40), (15, 0x10)):
            near = bytearray(key)
            near[index] ^= bit
            keys.append(bytes(near))
    return [k for k in keys if k not in LOW_ORDER_KEYS]


def test_purchase_accepts_every_key_libsodium_seals_to(
    marketplace: Any, listed: int, token: Any
) -> None:
    real = nacl.public.PrivateKey(bytes(range(1, 33))).public_key.encode()
    keys = [real, real[:31] + bytes([real[31] | 0x80]), BUYER_KEY, *_near_misses()]
    assert len(keys) > 30
    for key in keys:
        nacl.bindings.crypto_box_seal(b"content key", key)  # libsodium seals to it
        buyer = str(boa.env.generate_address())
        with boa.env.prank(token.owner()):
            token.mint(buyer, PRICE)
        with boa.env.prank(buyer):
            token.approve(marketplace.address, PRICE)
            marketplace.purchase(listed, PRICE, key)
        assert only_event(marketplace, "Purchased").buyer_key == key
