# SPDX-License-Identifier: AGPL-3.0-only
"""Every entry point seen from an attacker: ether sent by mistake or malice, a token
that re-enters, agents reaching past their one power, models changing hands while
purchases wait, owners buying their own models."""

from __future__ import annotations

from typing import Any

import boa
import pytest
from eth.exceptions import Revert
from eth_abi import encode

from mercato.chain.artifacts import CONTRACT_NAMES, load_artifact
from mercato.chain.boa_backend import BoaBackend
from tests.unit.contracts.chain import (
    BUYER_KEY,
    DELIVERY_WINDOW,
    PRICE,
    WRAPPED_KEY,
    digests,
    events,
    reverts,
    reverts_without_reason,
)

PENDING, DELIVERED, REFUNDED = 1, 2, 3
ETHER = 10**18


# -- ether: nothing can ever send it back out, so nothing takes it --------------------


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_no_contract_function_accepts_ether(name: str) -> None:
    payable = [
        entry.get("name", entry["type"])
        for entry in load_artifact(name).abi
        if entry.get("stateMutability") == "payable"
    ]
    assert payable == [], f"{name} would lock ether sent to {payable}"


def test_ether_sent_to_the_registry_is_refused(
    registry: Any, model: int, alice: str, bob: str
) -> None:
    boa.env.set_balance(alice, ETHER)
    with boa.env.prank(alice):
        with reverts_without_reason():
            registry.approve(bob, model, value=1)
        with reverts_without_reason():
            registry.transferFrom(alice, bob, model, value=1)
        with reverts_without_reason():
            registry.safeTransferFrom(alice, bob, model, b"", value=1)
    assert registry.ownerOf(model) == alice
    assert boa.env.get_balance(str(registry.address)) == 0


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_plain_ether_transfers_are_refused(chain: Any, alice: str, name: str) -> None:
    address = getattr(chain.deployment, name)
    boa.env.set_balance(alice, ETHER)
    with pytest.raises(Revert):
        boa.env.raw_call(address, sender=alice, value=1)
    assert boa.env.get_balance(address) == 0


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("token", (0,)),
        ("model_registry", (b"\x01" * 20,)),
        ("marketplace", (b"\x01" * 20, b"\x02" * 20, 60)),
        ("reviews", (b"\x01" * 20, b"\x02" * 20)),
    ],
)
def test_constructors_refuse_ether(deployer: str, name: str, args: tuple[Any, ...]) -> None:
    artifact = load_artifact(name)
    constructor = next(f for f in artifact.abi if f["type"] == "constructor")
    types = [i["type"] for i in constructor["inputs"]]
    boa.env.set_balance(deployer, ETHER)
    with boa.env.prank(deployer), pytest.raises(Revert) as info:
        boa.env.deploy_code(bytecode=artifact.bytecode + encode(types, list(args)), value=1)
    assert bytes(info.value.args[0]) == b""  # the call-value check, before any code of ours


# -- a token that calls back cannot double-spend the escrow ------------------------

# Stands in for a token with transfer hooks (ERC-777 style): on the refund's transfer
# it calls `refund` again for the same order, before the first call has finished.
REENTRANT_TOKEN = """
# pragma version ~=0.4.3
market: public(address)
model_id: public(uint256)
buyer: public(address)
reentered: public(bool)
reentry_succeeded: public(bool)

@external
def arm(market: address, model_id: uint256, buyer: address):
    self.market = market
    self.model_id = model_id
    self.buyer = buyer

@external
def transfer(to: address, amount: uint256) -> bool:
    if self.market != empty(address) and not self.reentered:
        self.reentered = True
        self.reentry_succeeded = raw_call(
            self.market,
            abi_encode(self.model_id, self.buyer, method_id=method_id("refund(uint256,address)")),
            revert_on_failure=False,
        )
    return True

@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    return True
"""


def test_refund_cannot_be_reentered(deployer: str, alice: str, bob: str) -> None:
    token = boa.loads(REENTRANT_TOKEN)
    backend = BoaBackend(deployer)
    expected = backend.future_contract_address(1)
    registry_address = backend.create(load_artifact("model_registry"), expected)
    market = BoaBackend.at(
        load_artifact("marketplace"),
        backend.create(load_artifact("marketplace"), str(token.address), registry_address, 60),
    )
    assert str(market.address) == expected
    with boa.env.prank(alice):
        model_id = market.publish(*digests(1), [], [], PRICE, 0)
    with boa.env.prank(bob):
        market.purchase(model_id, PRICE, BUYER_KEY)
    boa.env.time_travel(seconds=61)
    token.arm(market.address, model_id, bob)
    market.refund(model_id, bob)
    # The state changed before the transfer: the nested refund found nothing pending.
    assert token.reentered()
    assert not token.reentry_succeeded()
    assert len(events(market, "Refunded")) == 1
    assert market.license(bob, model_id)[0] == REFUNDED


# A contract that refuses anything sent to it, to show MCT transfers call nothing.
REFUSING_RECEIVER = """
# pragma version ~=0.4.3
@external
@payable
def __default__():
    raise "receiver: refused"
"""


def test_token_transfers_never_call_the_receiver(token: Any, alice: str) -> None:
    receiver = boa.loads(REFUSING_RECEIVER)
    with boa.env.prank(alice):
        token.transfer(receiver.address, 5)
    assert token.balanceOf(receiver.address) == 5


# -- an agent delivers keys, and can do nothing else -------------------------------


def test_agent_cannot_reach_past_delivering(
    marketplace: Any,
    registry: Any,
    pending: int,
    alice: str,
    bob: str,
    carol: str,
    approve_all: None,
) -> None:
    agent = str(boa.env.generate_address())
    with boa.env.prank(alice):
        marketplace.set_agent(agent)
    with boa.env.prank(carol):
        carols = marketplace.publish(*digests(60), [], [], PRICE, 0)
    with boa.env.prank(bob):
        marketplace.purchase(carols, PRICE, BUYER_KEY)
    with boa.env.prank(agent):
        with reverts("marketplace: caller is not the model owner"):
            marketplace.set_listing(pending, 1, 0, True)
        with reverts("model_registry: caller is not the model owner"):
            registry.add_version(pending, *digests(61))
        with reverts("marketplace: caller is not the model owner or its agent"):
            marketplace.deliver(carols, bob, 1, WRAPPED_KEY)  # another owner's model
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
        with reverts("marketplace: nothing to withdraw"):
            marketplace.withdraw()  # the escrow went to alice, not to the agent
    assert marketplace.credits(alice) == PRICE
    assert marketplace.credits(agent) == 0


# -- a model that changes hands while purchases wait --------------------------------


def test_listing_follows_the_model_to_its_new_owner(
    marketplace: Any, registry: Any, pending: int, alice: str, bob: str, carol: str
) -> None:
    with boa.env.prank(alice):
        registry.transferFrom(alice, carol, pending)
    # The old owner can no longer change the terms; the new one sells under them until
    # it does, and is paid for the pending purchase it delivers.
    with boa.env.prank(alice), reverts("marketplace: caller is not the model owner"):
        marketplace.set_listing(pending, 1, 0, True)
    assert marketplace.listing(pending) == (PRICE, 0, True, 0)
    with boa.env.prank(carol):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
        marketplace.set_listing(pending, 1, 0, True)
    assert marketplace.credits(carol) == PRICE
    assert marketplace.listing(pending) == (1, 0, True, 0)


def test_buyer_who_becomes_owner_can_still_settle(
    marketplace: Any, registry: Any, pending: int, alice: str, bob: str, token: Any
) -> None:
    with boa.env.prank(alice):
        registry.transferFrom(alice, bob, pending)
    # Nobody else may deliver now; bob, owner and buyer, is refunded after the deadline.
    with boa.env.prank(alice), reverts("marketplace: caller is not the model owner or its agent"):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
    before = token.balanceOf(bob)
    marketplace.refund(pending, bob)
    assert token.balanceOf(bob) == before + PRICE


def test_owner_buying_its_own_model_is_left_to_the_sdk(
    marketplace: Any, listed: int, alice: str, approve_all: None
) -> None:
    # Refusing it on-chain costs ~5,300 gas per purchase (a registry call); the SDK and
    # the web page refuse instead. On-chain it only moves the owner's money in a circle.
    with boa.env.prank(alice):
        marketplace.purchase(listed, PRICE, BUYER_KEY)
        marketplace.deliver(listed, alice, 1, WRAPPED_KEY)
    assert marketplace.credits(alice) == PRICE
    assert marketplace.license(alice, listed)[0] == DELIVERED
