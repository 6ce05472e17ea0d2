# SPDX-License-Identifier: AGPL-3.0-only
"""The marketplace's settling side: delivery, refunds, payouts, withdrawals, agents, fees."""

from __future__ import annotations

from typing import Any

import boa
import pytest

from mercato.chain.artifacts import load_artifact
from mercato.chain.boa_backend import BoaBackend
from tests.unit.contracts.chain import (
    BUYER_KEY,
    DELIVERY_WINDOW,
    FUNDED,
    PRICE,
    WRAPPED_KEY,
    constructor_reverts,
    digests,
    events,
    only_event,
    reverts,
    terms,
)

PENDING, DELIVERED, REFUNDED = 1, 2, 3
ZERO = "0x0000000000000000000000000000000000000000"


def test_deliver_by_owner_succeeds(
    marketplace: Any, token: Any, pending: int, alice: str, bob: str
) -> None:
    with boa.env.prank(alice):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    delivered = only_event(marketplace, "Delivered")
    assert (delivered.model_id, delivered.buyer, delivered.version) == (pending, bob, 1)
    assert (delivered.expiry, delivered.wrapped_key) == (0, WRAPPED_KEY)
    assert marketplace.license(bob, pending) == (DELIVERED, PRICE, 0, 0)
    assert marketplace.has_license(bob, pending)
    # The escrow became alice's credit; no token moved.
    assert marketplace.credits(alice) == PRICE
    assert token.balanceOf(marketplace.address) == PRICE


def test_deliver_by_agent_succeeds(marketplace: Any, pending: int, alice: str, bob: str) -> None:
    agent = str(boa.env.generate_address())
    with boa.env.prank(alice):
        marketplace.set_agent(agent)
    with boa.env.prank(agent):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    assert only_event(marketplace, "Delivered").buyer == bob
    # The agent releases the escrow to the owner, never to itself.
    assert marketplace.credits(alice) == PRICE
    assert marketplace.credits(agent) == 0


def test_deliver_at_the_deadline_succeeds(
    marketplace: Any, pending: int, alice: str, bob: str
) -> None:
    boa.env.time_travel(seconds=DELIVERY_WINDOW)
    with boa.env.prank(alice):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    assert marketplace.has_license(bob, pending)


def test_deliver_after_the_deadline(marketplace: Any, pending: int, alice: str, bob: str) -> None:
    boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
    with boa.env.prank(alice), reverts("marketplace: delivery deadline passed"):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)


def test_deliver_without_pending_purchase(
    marketplace: Any, pending: int, alice: str, bob: str, carol: str
) -> None:
    with boa.env.prank(alice), reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.deliver(pending, carol, 1, WRAPPED_KEY)
    with boa.env.prank(alice):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    # Delivered once: a second delivery cannot credit the escrow twice.
    with boa.env.prank(alice), reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    assert marketplace.credits(alice) == PRICE


def test_deliver_empty_wrapped_key(marketplace: Any, pending: int, alice: str, bob: str) -> None:
    with boa.env.prank(alice), reverts("marketplace: wrapped key is empty"):
        marketplace.deliver(pending, bob, 1, b"")


def test_deliver_by_stranger(marketplace: Any, pending: int, bob: str, carol: str) -> None:
    for caller in (bob, carol):
        with (
            boa.env.prank(caller),
            reverts("marketplace: caller is not the model owner or its agent"),
        ):
            marketplace.deliver(pending, bob, 1, WRAPPED_KEY)


def test_deliver_by_revoked_agent(marketplace: Any, pending: int, alice: str, bob: str) -> None:
    agent = str(boa.env.generate_address())
    with boa.env.prank(alice):
        marketplace.set_agent(agent)
        marketplace.set_agent(ZERO)
    with boa.env.prank(agent), reverts("marketplace: caller is not the model owner or its agent"):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)


def test_deliver_after_model_transfer(
    marketplace: Any, registry: Any, pending: int, alice: str, bob: str, carol: str
) -> None:
    agent = str(boa.env.generate_address())
    with boa.env.prank(alice):
        marketplace.set_agent(agent)
        registry.transferFrom(alice, carol, pending)
    # The old owner and its agent lose the right to deliver; the new owner is paid.
    for caller in (alice, agent):
        with (
            boa.env.prank(caller),
            reverts("marketplace: caller is not the model owner or its agent"),
        ):
            marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    with boa.env.prank(carol):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    assert marketplace.credits(carol) == PRICE
    assert marketplace.credits(alice) == 0


def test_deliver_many_succeeds(
    marketplace: Any, listed: int, alice: str, bob: str, carol: str, approve_all: None
) -> None:
    with boa.env.prank(alice):
        other = marketplace.publish(*digests(8), [], [], PRICE, 0)
    for buyer, model_id in ((bob, listed), (carol, listed), (bob, other)):
        with boa.env.prank(buyer):
            marketplace.purchase(model_id, PRICE, BUYER_KEY)
    batch = [(listed, bob, 1, WRAPPED_KEY), (listed, carol, 1, b"\x01"), (other, bob, 1, b"\x02")]
    with boa.env.prank(alice):
        marketplace.deliver_many(batch)
    delivered = events(marketplace, "Delivered")
    assert [(e.model_id, e.buyer, e.wrapped_key) for e in delivered] == [
        (m, b, k) for m, b, _v, k in batch
    ]
    assert marketplace.credits(alice) == 3 * PRICE
    assert all(marketplace.has_license(b, m) for m, b, _v, _k in batch)


def test_deliver_many_is_all_or_nothing(
    marketplace: Any, listed: int, alice: str, bob: str, carol: str, approve_all: None
) -> None:
    with boa.env.prank(bob):
        marketplace.purchase(listed, PRICE, BUYER_KEY)
    batch = [(listed, bob, 1, WRAPPED_KEY), (listed, carol, 1, WRAPPED_KEY)]  # carol never bought
    with boa.env.prank(alice), reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.deliver_many(batch)
    assert marketplace.license(bob, listed)[0] == PENDING
    assert marketplace.credits(alice) == 0


def test_deliver_many_checks_the_caller(marketplace: Any, pending: int, bob: str) -> None:
    with boa.env.prank(bob), reverts("marketplace: caller is not the model owner or its agent"):
        marketplace.deliver_many([(pending, bob, 1, WRAPPED_KEY)])


def test_refund_succeeds(
    marketplace: Any, token: Any, pending: int, bob: str, stranger: str
) -> None:
    boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
    with boa.env.prank(stranger):  # anyone may trigger it; the tokens go to the buyer
        marketplace.refund(pending, bob)
    refunded = only_event(marketplace, "Refunded")
    transfer = only_event(marketplace, "Transfer")
    assert (refunded.model_id, refunded.buyer, refunded.amount) == (pending, bob, PRICE)
    assert (transfer.sender, transfer.receiver, transfer.value) == (
        marketplace.address,
        bob,
        PRICE,
    )
    assert token.balanceOf(bob) == FUNDED
    assert token.balanceOf(marketplace.address) == 0
    assert marketplace.license(bob, pending)[:2] == (REFUNDED, PRICE)
    assert not marketplace.has_license(bob, pending)


def test_refund_before_the_deadline(marketplace: Any, pending: int, bob: str) -> None:
    boa.env.time_travel(seconds=DELIVERY_WINDOW)
    with reverts("marketplace: delivery deadline not reached"):
        marketplace.refund(pending, bob)


def test_refund_without_pending_purchase(
    marketplace: Any, pending: int, alice: str, bob: str, carol: str
) -> None:
    boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
    with reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.refund(pending, carol)
    marketplace.refund(pending, bob)
    with reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.refund(pending, bob)


def test_refund_after_delivery(marketplace: Any, pending: int, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
    with reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.refund(pending, bob)


def test_refunded_purchase_cannot_be_delivered(
    marketplace: Any, pending: int, alice: str, bob: str
) -> None:
    boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
    marketplace.refund(pending, bob)
    with boa.env.prank(alice), reverts("marketplace: no pending purchase for this buyer and model"):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)


def test_withdraw_succeeds_leaving_one_unit(
    marketplace: Any, token: Any, pending: int, alice: str, bob: str
) -> None:
    with boa.env.prank(alice):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
        sent = marketplace.withdraw()
    withdrawn = only_event(marketplace, "Withdrawn")
    assert sent == PRICE - 1
    assert (withdrawn.account, withdrawn.amount) == (alice, PRICE - 1)
    assert only_event(marketplace, "Transfer").value == PRICE - 1
    assert marketplace.credits(alice) == 1
    assert token.balanceOf(alice) == FUNDED + PRICE - 1
    assert token.balanceOf(marketplace.address) == 1
    with boa.env.prank(alice), reverts("marketplace: nothing to withdraw"):
        marketplace.withdraw()


def test_withdraw_takes_the_kept_unit_with_the_next_credit(
    marketplace: Any, token: Any, listed: int, alice: str, bob: str, carol: str, approve_all: None
) -> None:
    for buyer in (bob, carol):
        with boa.env.prank(buyer):
            marketplace.purchase(listed, PRICE, BUYER_KEY)
        with boa.env.prank(alice):
            marketplace.deliver(listed, buyer, 1, WRAPPED_KEY)
            marketplace.withdraw()
    # 2 * PRICE credited; 2 * PRICE - 1 sent: PRICE - 1, then PRICE (the kept unit left).
    assert token.balanceOf(alice) == FUNDED + 2 * PRICE - 1
    assert marketplace.credits(alice) == 1


def test_withdraw_with_nothing(marketplace: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("marketplace: nothing to withdraw"):
        marketplace.withdraw()


def test_set_agent_succeeds(marketplace: Any, alice: str) -> None:
    agent = str(boa.env.generate_address())
    with boa.env.prank(alice):
        marketplace.set_agent(agent)
    event = only_event(marketplace, "AgentSet")
    assert (event.owner, event.agent) == (alice, agent)
    assert marketplace.agent_of(alice) == agent


def test_set_protocol_fee_succeeds(marketplace: Any, deployer: str) -> None:
    assert marketplace.owner() == deployer
    assert marketplace.MAX_FEE_BPS() == 1_000
    assert marketplace.protocol_fee_bps() == 0  # none by default
    with boa.env.prank(deployer):
        marketplace.set_protocol_fee(1_000)
    assert only_event(marketplace, "ProtocolFeeSet").fee_bps == 1_000
    assert marketplace.protocol_fee_bps() == 1_000


def test_set_protocol_fee_above_cap(marketplace: Any, deployer: str) -> None:
    with boa.env.prank(deployer), reverts("marketplace: fee above the 10% cap"):
        marketplace.set_protocol_fee(1_001)


def test_set_protocol_fee_by_non_owner(marketplace: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("ownable: caller is not the owner"):
        marketplace.set_protocol_fee(10)


def test_transfer_ownership_moves_the_fee_role(marketplace: Any, deployer: str, alice: str) -> None:
    with boa.env.prank(deployer):
        marketplace.transfer_ownership(alice)
    moved = only_event(marketplace, "OwnershipTransferred")
    assert (moved.previous_owner, moved.new_owner) == (deployer, alice)
    with boa.env.prank(deployer), reverts("ownable: caller is not the owner"):
        marketplace.set_protocol_fee(10)
    with boa.env.prank(alice):
        marketplace.set_protocol_fee(10)
    with boa.env.prank(alice), reverts("ownable: new owner is the zero address"):
        marketplace.transfer_ownership(ZERO)


def _payout_case(
    marketplace: Any, registry: Any, owners: list[str], shares: list[int], price: int
) -> int:
    """Publishes one parent per share, owned in turn by `owners`; the child by owners[0]."""
    parents = []
    for i, share in enumerate(shares):
        with boa.env.prank(owners[1 + i]):
            parents.append(int(registry.publish(*digests(30 + i), [], [])))
        assert share >= 0
    with boa.env.prank(owners[0]):
        return int(marketplace.publish(*digests(40), parents, shares, price, 0))


@pytest.mark.parametrize(
    ("shares", "fee_bps", "price"),
    [
        ([], 0, PRICE),
        ([1_000], 0, PRICE),
        ([1_234, 333, 3_433], 1_000, 10**18 + 7),  # at both caps, with rounding
        ([1, 2], 250, 9_999),  # royalties round down to nothing
        ([2_500, 2_500], 999, 3),
    ],
)
def test_payouts_are_exact(
    marketplace: Any,
    registry: Any,
    token: Any,
    deployer: str,
    alice: str,
    bob: str,
    carol: str,
    dave: str,
    approve_all: None,
    shares: list[int],
    fee_bps: int,
    price: int,
) -> None:
    with boa.env.prank(deployer):
        marketplace.set_protocol_fee(fee_bps)
    parent_owners = [carol, dave, alice][: len(shares)]
    model_id = _payout_case(marketplace, registry, [alice, *parent_owners], shares, price)
    with boa.env.prank(bob):
        marketplace.purchase(model_id, terms(price, 0, fee_bps), BUYER_KEY)
    with boa.env.prank(alice):
        marketplace.deliver(model_id, bob, 1, WRAPPED_KEY)

    fee = price * fee_bps // 10_000
    royalties = [price * share // 10_000 for share in shares]
    expected: dict[str, int] = {deployer: fee}
    for owner, royalty in zip(parent_owners, royalties, strict=True):
        expected[owner] = expected.get(owner, 0) + royalty
    expected[alice] = expected.get(alice, 0) + price - fee - sum(royalties)
    for account in {deployer, alice, bob, carol, dave}:
        assert marketplace.credits(account) == expected.get(account, 0), account
    assert sum(expected.values()) == price
    assert token.balanceOf(marketplace.address) == price


def test_fee_is_fixed_when_listing(
    marketplace: Any, deployer: str, alice: str, bob: str, carol: str, approve_all: None
) -> None:
    with boa.env.prank(alice):
        model_id = marketplace.publish(*digests(1), [], [], PRICE, 0)
    assert only_event(marketplace, "Listed").fee_bps == 0
    with boa.env.prank(deployer):
        marketplace.set_protocol_fee(500)
    # Listed before the fee: sold without it.
    with boa.env.prank(bob):
        marketplace.purchase(model_id, PRICE, BUYER_KEY)
    assert only_event(marketplace, "Purchased").fee_bps == 0
    with boa.env.prank(alice):
        marketplace.deliver(model_id, bob, 1, WRAPPED_KEY)
    assert marketplace.credits(deployer) == 0
    # Listing again takes the current fee.
    with boa.env.prank(alice):
        marketplace.set_listing(model_id, PRICE, 0, True)
    assert only_event(marketplace, "Listed").fee_bps == 500
    with boa.env.prank(carol):
        marketplace.purchase(model_id, terms(PRICE, 0, 500), BUYER_KEY)
    assert only_event(marketplace, "Purchased").fee_bps == 500
    assert marketplace.license(carol, model_id)[3] == 500
    # A fee change while the purchase is pending does not reach it either.
    with boa.env.prank(deployer):
        marketplace.set_protocol_fee(1_000)
    with boa.env.prank(alice):
        marketplace.set_listing(model_id, PRICE, 0, True)
        marketplace.deliver(model_id, carol, 1, WRAPPED_KEY)
    assert marketplace.credits(deployer) == PRICE * 500 // 10_000
    assert marketplace.credits(alice) == 2 * PRICE - PRICE * 500 // 10_000


def test_royalties_go_to_the_parents_current_owner(
    marketplace: Any, registry: Any, alice: str, bob: str, carol: str, approve_all: None
) -> None:
    with boa.env.prank(carol):
        parent = registry.publish(*digests(1), [], [])
    with boa.env.prank(alice):
        child = marketplace.publish(*digests(2), [parent], [2_000], PRICE, 0)
    with boa.env.prank(bob):
        marketplace.purchase(child, PRICE, BUYER_KEY)
    with boa.env.prank(carol):
        registry.transferFrom(carol, bob, parent)
    with boa.env.prank(alice):
        marketplace.deliver(child, bob, 1, WRAPPED_KEY)
    assert marketplace.credits(bob) == PRICE // 5
    assert marketplace.credits(carol) == 0
    assert marketplace.credits(alice) == PRICE - PRICE // 5


def test_deployment_wiring(
    chain: Any, marketplace: Any, registry: Any, reviews: Any, token: Any
) -> None:
    assert marketplace.TOKEN() == token.address
    assert marketplace.REGISTRY() == registry.address
    assert marketplace.DELIVERY_WINDOW() == DELIVERY_WINDOW
    assert marketplace.MAX_PRICE() == 2**96 - 1
    assert reviews.MARKETPLACE() == marketplace.address
    assert reviews.REGISTRY() == registry.address
    assert chain.deployment.chain_id == 31_337


@pytest.mark.parametrize("window", [0, 2**32])
def test_constructor_delivery_window_out_of_range(token: Any, registry: Any, window: int) -> None:
    with constructor_reverts("marketplace: delivery window out of range"):
        BoaBackend().create(load_artifact("marketplace"), token.address, registry.address, window)


def test_registry_constructor_zero_publisher() -> None:
    with constructor_reverts("model_registry: publisher is the zero address"):
        BoaBackend().create(load_artifact("model_registry"), ZERO)


# A token whose transfers can be switched to answer False instead of reverting.
FALSE_TOKEN = """
# pragma version ~=0.4.3
failing: public(bool)

@external
def set_failing(failing: bool):
    self.failing = failing

@external
def transfer(to: address, amount: uint256) -> bool:
    return not self.failing

@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    return not self.failing
"""


def test_token_transfer_failed(deployer: str, alice: str, bob: str) -> None:
    false_token = boa.loads(FALSE_TOKEN)
    backend = BoaBackend(deployer)
    expected = backend.future_contract_address(1)
    registry = BoaBackend.at(
        load_artifact("model_registry"), backend.create(load_artifact("model_registry"), expected)
    )
    address = backend.create(
        load_artifact("marketplace"), str(false_token.address), str(registry.address), 60
    )
    assert address == expected
    market = BoaBackend.at(load_artifact("marketplace"), address)
    with boa.env.prank(alice):
        model_id = market.publish(*digests(1), [], [], PRICE, 0)
        market.publish(*digests(2), [], [], PRICE, 0)

    false_token.set_failing(True)
    with boa.env.prank(bob), reverts("marketplace: token transfer failed"):
        market.purchase(model_id, PRICE, BUYER_KEY)

    false_token.set_failing(False)
    with boa.env.prank(bob):
        market.purchase(model_id, PRICE, BUYER_KEY)
        market.purchase(model_id + 1, PRICE, BUYER_KEY)
    with boa.env.prank(alice):
        market.deliver(model_id, bob, 1, WRAPPED_KEY)
    boa.env.time_travel(seconds=61)
    false_token.set_failing(True)
    with reverts("marketplace: token transfer failed"):
        market.refund(model_id + 1, bob)
    with boa.env.prank(alice), reverts("marketplace: token transfer failed"):
        market.withdraw()
    # Nothing changed: the buyer can still be refunded, the seller still withdraw.
    assert market.license(bob, model_id + 1)[0] == PENDING
    assert market.credits(alice) == PRICE


# -- the delivered version must exist -----------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 2**32, 2**256 - 1])
def test_deliver_a_version_that_does_not_exist(
    marketplace: Any, pending: int, alice: str, bob: str, version: int
) -> None:
    with boa.env.prank(alice), reverts("marketplace: version does not exist"):
        marketplace.deliver(pending, bob, version, WRAPPED_KEY)
    # Nothing was paid for a key the buyer could not use; the order is still open.
    assert marketplace.license(bob, pending)[0] == PENDING
    assert marketplace.credits(alice) == 0


def test_deliver_a_later_version_succeeds(
    marketplace: Any, registry: Any, pending: int, alice: str, bob: str
) -> None:
    with boa.env.prank(alice):
        registry.add_version(pending, *digests(50))
        marketplace.deliver(pending, bob, 2, WRAPPED_KEY)
    assert only_event(marketplace, "Delivered").version == 2
    assert marketplace.credits(alice) == PRICE


def test_deliver_many_checks_every_version(
    marketplace: Any, listed: int, alice: str, bob: str, carol: str, approve_all: None
) -> None:
    for buyer in (bob, carol):
        with boa.env.prank(buyer):
            marketplace.purchase(listed, PRICE, BUYER_KEY)
    batch = [(listed, bob, 1, WRAPPED_KEY), (listed, carol, 3, WRAPPED_KEY)]
    with boa.env.prank(alice), reverts("marketplace: version does not exist"):
        marketplace.deliver_many(batch)
    assert marketplace.license(bob, listed)[0] == PENDING
