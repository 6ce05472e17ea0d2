# SPDX-License-Identifier: AGPL-3.0-only
"""Licence terms a purchase commits to, ERC-721 metadata (tokenURI, ERC-4906) and
`decline`, the owner's way to refund a pending purchase at once."""

from __future__ import annotations

import hashlib
from typing import Any

import boa
from multiformats import CID, multihash

from tests.unit.contracts.chain import (
    BUYER_KEY,
    FUNDED,
    PRICE,
    WRAPPED_KEY,
    digests,
    events,
    only_event,
    reverts,
    terms,
)

NONE, PENDING, DELIVERED, REFUNDED = 0, 1, 2, 3
TERMS_A = hashlib.sha256(b"apache-2.0").digest()
TERMS_B = hashlib.sha256(b"cc-by-nc-4.0").digest()
METADATA = hashlib.sha256(b'{"name": "iris"}').digest()
EMPTY = bytes(32)


def with_terms(word: int, digest: bytes) -> int:
    """A purchase's terms word carrying the first 104 bits of a terms digest."""
    return word | ((int.from_bytes(digest, "big") >> 152) << 152)


def raw_cid(digest: bytes) -> str:
    return str(CID("base32", 1, "raw", multihash.wrap(digest, "sha2-256")))


def _publish(marketplace: Any, owner: str, terms_digest: bytes = TERMS_A) -> int:
    with boa.env.prank(owner):
        return int(marketplace.publish(*digests(3), [], [], PRICE, 0, terms_digest, METADATA))


# -- licence terms ------------------------------------------------------------------


def test_publish_logs_the_whole_terms_digest(marketplace: Any, alice: str) -> None:
    model_id = _publish(marketplace, alice)
    logged = only_event(marketplace, "TermsSet")
    assert (logged.model_id, logged.terms_digest) == (model_id, TERMS_A)
    assert marketplace.listing_terms(model_id) == TERMS_A[:13] + bytes(19)


def test_purchase_succeeds_on_the_terms_the_buyer_read(
    marketplace: Any, alice: str, bob: str, approve_all: None
) -> None:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(bob):
        marketplace.purchase(model_id, with_terms(terms(PRICE), TERMS_A), BUYER_KEY)
    assert marketplace.license(bob, model_id)[0] == PENDING


def test_purchase_terms_switched_before_mining_refused(
    marketplace: Any, token: Any, alice: str, bob: str, approve_all: None
) -> None:
    model_id = _publish(marketplace, alice)
    seen = with_terms(terms(PRICE), TERMS_A)
    # Same price and duration: only the licence changes under the buyer's feet.
    with boa.env.prank(alice):
        marketplace.set_listing(model_id, PRICE, 0, True, TERMS_B, EMPTY)
    assert only_event(marketplace, "TermsSet").terms_digest == TERMS_B
    with boa.env.prank(bob), reverts("marketplace: licence terms differ from the buyer's"):
        marketplace.purchase(model_id, seen, BUYER_KEY)
    assert marketplace.license(bob, model_id)[0] == NONE
    assert token.balanceOf(bob) == FUNDED


def test_purchase_without_the_terms_digest_refused(
    marketplace: Any, alice: str, bob: str, approve_all: None
) -> None:
    # A client that copies price and duration but never read the licence cannot buy.
    model_id = _publish(marketplace, alice)
    with boa.env.prank(bob), reverts("marketplace: licence terms differ from the buyer's"):
        marketplace.purchase(model_id, terms(PRICE), BUYER_KEY)


def test_other_term_changes_keep_their_own_reason(
    marketplace: Any, alice: str, bob: str, approve_all: None
) -> None:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(alice):
        marketplace.set_listing(model_id, PRICE, 86_400, True, TERMS_A, EMPTY)
    with boa.env.prank(bob), reverts("marketplace: listing terms differ from the buyer's"):
        marketplace.purchase(model_id, with_terms(terms(PRICE), TERMS_A), BUYER_KEY)


def test_terms_digest_does_not_spill_into_other_fields(marketplace: Any, alice: str) -> None:
    all_ones = b"\xff" * 32
    model_id = _publish(marketplace, alice, all_ones)
    assert marketplace.listing(model_id) == (PRICE, 0, True, 0)
    assert marketplace.listing_terms(model_id) == b"\xff" * 13 + bytes(19)


# -- ERC-721 metadata ---------------------------------------------------------------


def test_token_uri_names_the_raw_cid_of_the_metadata(
    marketplace: Any, registry: Any, alice: str
) -> None:
    model_id = _publish(marketplace, alice)
    assert registry.tokenURI(model_id) == f"ipfs://{raw_cid(METADATA)}"
    assert registry.metadata_digest(model_id) == METADATA


def test_token_uri_encodes_every_digest_bit(registry: Any, marketplace: Any, alice: str) -> None:
    model_id = _publish(marketplace, alice)
    for digest in (b"\xff" * 32, b"\x00" * 31 + b"\x01", bytes(range(32)), b"\x80" + bytes(31)):
        with boa.env.prank(alice):
            registry.set_metadata(model_id, digest)
        assert registry.tokenURI(model_id) == f"ipfs://{raw_cid(digest)}"


def test_token_uri_empty_before_metadata(registry: Any, marketplace: Any, alice: str) -> None:
    with boa.env.prank(alice):
        model_id = marketplace.publish(*digests(1), [], [], PRICE, 0)
    assert registry.tokenURI(model_id) == ""


def test_token_uri_of_a_missing_model(registry: Any) -> None:
    with reverts("erc721: token does not exist"):
        registry.tokenURI(42)


def test_supports_metadata_interfaces(registry: Any) -> None:
    for interface in ("01ffc9a7", "80ac58cd", "5b5e139f", "49064906"):
        assert registry.supportsInterface(bytes.fromhex(interface))
    assert not registry.supportsInterface(bytes.fromhex("ffffffff"))
    assert not registry.supportsInterface(bytes.fromhex("780e9d63"))  # not enumerable


def test_add_version_logs_metadata_update(registry: Any, marketplace: Any, alice: str) -> None:
    model_id = _publish(marketplace, alice)
    new = hashlib.sha256(b"v2").digest()
    with boa.env.prank(alice):
        registry.add_version(model_id, *digests(9), new)
    assert only_event(registry, "MetadataUpdate")[-1] == model_id
    assert registry.tokenURI(model_id) == f"ipfs://{raw_cid(new)}"


def test_add_version_without_metadata_keeps_it(registry: Any, marketplace: Any, alice: str) -> None:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(alice):
        registry.add_version(model_id, *digests(9))
    assert only_event(registry, "MetadataUpdate")[-1] == model_id
    assert registry.metadata_digest(model_id) == METADATA


def test_set_listing_with_metadata_logs_metadata_update(
    registry: Any, marketplace: Any, alice: str
) -> None:
    model_id = _publish(marketplace, alice)
    new = hashlib.sha256(b"price 7").digest()
    with boa.env.prank(alice):
        marketplace.set_listing(model_id, 7 * PRICE, 0, True, TERMS_A, new)
    assert [e[-1] for e in events(marketplace, "MetadataUpdate")] == [model_id]
    assert registry.metadata_digest(model_id) == new


def test_set_listing_without_metadata_keeps_it(registry: Any, marketplace: Any, alice: str) -> None:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(alice):
        marketplace.set_listing(model_id, PRICE, 0, False)
    assert events(marketplace, "MetadataUpdate") == []
    assert registry.metadata_digest(model_id) == METADATA


def test_set_metadata_by_non_owner(registry: Any, marketplace: Any, alice: str, bob: str) -> None:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(bob), reverts("model_registry: caller is not the model owner"):
        registry.set_metadata(model_id, TERMS_B)
    assert registry.metadata_digest(model_id) == METADATA


def test_set_metadata_for_by_non_publisher(registry: Any, marketplace: Any, alice: str) -> None:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(alice), reverts("model_registry: caller is not the publisher"):
        registry.set_metadata_for(model_id, TERMS_B)


def test_set_metadata_empty_refused(registry: Any, marketplace: Any, alice: str) -> None:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(alice), reverts("model_registry: metadata digest is empty"):
        registry.set_metadata(model_id, EMPTY)


def test_set_metadata_logs_metadata_update(registry: Any, marketplace: Any, alice: str) -> None:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(alice):
        registry.set_metadata(model_id, TERMS_B)
    assert only_event(registry, "MetadataUpdate")[-1] == model_id


# -- decline ------------------------------------------------------------------------


def _pending(marketplace: Any, alice: str, bob: str) -> int:
    model_id = _publish(marketplace, alice)
    with boa.env.prank(bob):
        marketplace.purchase(model_id, with_terms(terms(PRICE), TERMS_A), BUYER_KEY)
    return model_id


def test_decline_succeeds_and_refunds_at_once(
    marketplace: Any, token: Any, alice: str, bob: str, approve_all: None
) -> None:
    model_id = _pending(marketplace, alice, bob)
    with boa.env.prank(alice):
        marketplace.decline(model_id, bob, 1)
    declined = only_event(marketplace, "Declined")
    refunded = only_event(marketplace, "Refunded")
    assert (declined.model_id, declined.buyer, declined.reason_code) == (model_id, bob, 1)
    assert (refunded.buyer, refunded.amount) == (bob, PRICE)
    assert token.balanceOf(bob) == FUNDED
    assert marketplace.license(bob, model_id)[0] == REFUNDED
    assert not marketplace.has_license(bob, model_id)


def test_decline_by_the_owners_agent(
    marketplace: Any, token: Any, alice: str, bob: str, carol: str, approve_all: None
) -> None:
    model_id = _pending(marketplace, alice, bob)
    with boa.env.prank(alice):
        marketplace.set_agent(carol)
    with boa.env.prank(carol):
        marketplace.decline(model_id, bob, 2)
    assert token.balanceOf(bob) == FUNDED


def test_decline_by_a_stranger(
    marketplace: Any, alice: str, bob: str, dave: str, approve_all: None
) -> None:
    model_id = _pending(marketplace, alice, bob)
    # Not even the buyer: a buyer waits for the deadline and calls `refund`.
    for caller in (dave, bob):
        with (
            boa.env.prank(caller),
            reverts("marketplace: caller is not the model owner or its agent"),
        ):
            marketplace.decline(model_id, bob, 1)
    assert marketplace.license(bob, model_id)[0] == PENDING


def test_decline_without_a_pending_purchase(
    marketplace: Any, alice: str, bob: str, approve_all: None
) -> None:
    model_id = _pending(marketplace, alice, bob)
    with boa.env.prank(alice):
        marketplace.deliver(model_id, bob, 1, WRAPPED_KEY)
    # A delivered license cannot be taken back, and nothing is paid twice.
    with boa.env.prank(alice), reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.decline(model_id, bob, 1)
    assert marketplace.has_license(bob, model_id)


def test_declined_purchase_can_be_neither_delivered_nor_refunded_again(
    marketplace: Any, alice: str, bob: str, approve_all: None
) -> None:
    model_id = _pending(marketplace, alice, bob)
    with boa.env.prank(alice):
        marketplace.decline(model_id, bob, 5)
    with boa.env.prank(alice), reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.deliver(model_id, bob, 1, WRAPPED_KEY)
    with boa.env.prank(alice), reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.decline(model_id, bob, 5)
    with reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.refund(model_id, bob)
