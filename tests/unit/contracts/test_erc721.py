# SPDX-License-Identifier: AGPL-3.0-only
"""The lean ERC-721 (through the registry) against what EIP-721 and EIP-165 require."""

from __future__ import annotations

from typing import Any

import boa
import pytest

from tests.unit.contracts.chain import digests, only_event, reverts, reverts_without_reason

ZERO = "0x0000000000000000000000000000000000000000"
RECEIVED = bytes.fromhex("150b7a02")  # onERC721Received(address,address,uint256,bytes)

ACCEPTING_RECEIVER = """
# pragma version ~=0.4.3
operator: public(address)
sender: public(address)
token_id: public(uint256)
data: public(Bytes[1024])
calls: public(uint256)

@external
def onERC721Received(
    operator: address, sender: address, token_id: uint256, data: Bytes[1024]
) -> bytes4:
    self.operator = operator
    self.sender = sender
    self.token_id = token_id
    self.data = data
    self.calls += 1
    return method_id("onERC721Received(address,address,uint256,bytes)", output_type=bytes4)
"""

WRONG_VALUE_RECEIVER = """
# pragma version ~=0.4.3
@external
def onERC721Received(
    operator: address, sender: address, token_id: uint256, data: Bytes[1024]
) -> bytes4:
    return 0x12345678
"""

REVERTING_RECEIVER = """
# pragma version ~=0.4.3
@external
def onERC721Received(
    operator: address, sender: address, token_id: uint256, data: Bytes[1024]
) -> bytes4:
    raise "receiver: not taking tokens"
"""

NO_HOOK = """
# pragma version ~=0.4.3
@external
def something_else() -> uint256:
    return 1
"""

SILENT_DEFAULT = """
# pragma version ~=0.4.3
@external
@payable
def __default__():
    pass
"""


def _state(registry: Any, model: int, owner: str, other: str) -> tuple[Any, ...]:
    return (registry.ownerOf(model), registry.balanceOf(owner), registry.balanceOf(other))


def test_supports_interface(registry: Any) -> None:
    assert registry.supportsInterface(bytes.fromhex("01ffc9a7"))  # ERC-165
    assert registry.supportsInterface(bytes.fromhex("80ac58cd"))  # ERC-721
    assert not registry.supportsInterface(bytes.fromhex("ffffffff"))  # required by ERC-165
    assert not registry.supportsInterface(bytes.fromhex("780e9d63"))  # not enumerable
    assert not registry.supportsInterface(RECEIVED)


def test_balance_of(registry: Any, model: int, alice: str, bob: str) -> None:
    assert registry.balanceOf(alice) == 1
    assert registry.balanceOf(bob) == 0


def test_balance_of_zero_address(registry: Any) -> None:
    with reverts("erc721: the zero address owns nothing"):
        registry.balanceOf(ZERO)


def test_owner_of_nonexistent(registry: Any, model: int) -> None:
    for token_id in (0, model + 1, 2**256 - 1):
        with reverts("erc721: token does not exist"):
            registry.ownerOf(token_id)


def test_approve_succeeds(registry: Any, model: int, alice: str, bob: str) -> None:
    assert registry.getApproved(model) == ZERO
    with boa.env.prank(alice):
        registry.approve(bob, model)
    event = only_event(registry, "Approval")
    assert (event.owner, event.approved, event.token_id) == (alice, bob, model)
    assert registry.getApproved(model) == bob
    with boa.env.prank(alice):
        registry.approve(ZERO, model)  # clears
    assert only_event(registry, "Approval").approved == ZERO
    assert registry.getApproved(model) == ZERO


def test_approve_by_operator_succeeds(
    registry: Any, model: int, alice: str, bob: str, carol: str
) -> None:
    with boa.env.prank(alice):
        registry.setApprovalForAll(bob, True)
    with boa.env.prank(bob):
        registry.approve(carol, model)
    # The event names the owner, not the operator who approved.
    event = only_event(registry, "Approval")
    assert (event.owner, event.approved) == (alice, carol)
    assert registry.getApproved(model) == carol


def test_approve_by_stranger(registry: Any, model: int, alice: str, bob: str, carol: str) -> None:
    with boa.env.prank(alice):
        registry.approve(bob, model)
    # Being approved for a token does not let one approve others.
    for caller in (bob, carol):
        with (
            boa.env.prank(caller),
            reverts("erc721: caller is not the token owner or an approved operator"),
        ):
            registry.approve(carol, model)
    assert registry.getApproved(model) == bob


def test_approve_nonexistent(registry: Any, alice: str, bob: str) -> None:
    with boa.env.prank(alice), reverts("erc721: token does not exist"):
        registry.approve(bob, 1)


def test_get_approved_nonexistent(registry: Any) -> None:
    with reverts("erc721: token does not exist"):
        registry.getApproved(1)


def test_set_approval_for_all_succeeds(registry: Any, alice: str, bob: str) -> None:
    assert not registry.isApprovedForAll(alice, bob)
    with boa.env.prank(alice):
        registry.setApprovalForAll(bob, True)
    event = only_event(registry, "ApprovalForAll")
    assert (event.owner, event.operator, event.approved) == (alice, bob, True)
    assert registry.isApprovedForAll(alice, bob)
    assert not registry.isApprovedForAll(bob, alice)
    with boa.env.prank(alice):
        registry.setApprovalForAll(bob, False)
    assert only_event(registry, "ApprovalForAll").approved is False
    assert not registry.isApprovedForAll(alice, bob)


def test_set_approval_for_all_oneself(registry: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("erc721: cannot approve oneself as operator"):
        registry.setApprovalForAll(alice, True)


def test_transfer_from_by_owner(registry: Any, model: int, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        registry.transferFrom(alice, bob, model)
    event = only_event(registry, "Transfer")
    assert (event.sender, event.receiver, event.token_id) == (alice, bob, model)
    assert _state(registry, model, alice, bob) == (bob, 0, 1)


def test_transfer_from_by_approved_clears_approval(
    registry: Any, model: int, alice: str, bob: str, carol: str
) -> None:
    with boa.env.prank(alice):
        registry.approve(bob, model)
    with boa.env.prank(bob):
        registry.transferFrom(alice, carol, model)
    assert only_event(registry, "Transfer").receiver == carol
    assert registry.getApproved(model) == ZERO
    assert _state(registry, model, alice, carol) == (carol, 0, 1)
    # The approval died with the transfer.
    with boa.env.prank(bob), reverts("erc721: caller is not the token owner or approved"):
        registry.transferFrom(carol, bob, model)


def test_transfer_by_owner_also_clears_approval(
    registry: Any, model: int, alice: str, bob: str, carol: str
) -> None:
    with boa.env.prank(alice):
        registry.approve(bob, model)
        registry.transferFrom(alice, carol, model)
    assert registry.getApproved(model) == ZERO


def test_transfer_from_by_operator(
    registry: Any, model: int, alice: str, bob: str, carol: str
) -> None:
    with boa.env.prank(alice):
        registry.setApprovalForAll(bob, True)
    with boa.env.prank(bob):
        registry.transferFrom(alice, carol, model)
    assert _state(registry, model, alice, carol) == (carol, 0, 1)
    # An operator of the old owner is not one of the new owner.
    with boa.env.prank(bob), reverts("erc721: caller is not the token owner or approved"):
        registry.transferFrom(carol, bob, model)
    assert registry.isApprovedForAll(alice, bob)


def test_transfer_from_by_revoked_operator(registry: Any, model: int, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        registry.setApprovalForAll(bob, True)
        registry.setApprovalForAll(bob, False)
    with boa.env.prank(bob), reverts("erc721: caller is not the token owner or approved"):
        registry.transferFrom(alice, bob, model)


def test_transfer_from_by_stranger(registry: Any, model: int, alice: str, bob: str) -> None:
    with boa.env.prank(bob), reverts("erc721: caller is not the token owner or approved"):
        registry.transferFrom(alice, bob, model)
    assert _state(registry, model, alice, bob) == (alice, 1, 0)


def test_transfer_from_wrong_owner(registry: Any, model: int, alice: str, bob: str) -> None:
    with (
        boa.env.prank(alice),
        reverts("erc721: transfer from an account that does not own the token"),
    ):
        registry.transferFrom(bob, alice, model)


def test_transfer_from_nonexistent(registry: Any, alice: str, bob: str) -> None:
    with boa.env.prank(alice), reverts("erc721: token does not exist"):
        registry.transferFrom(alice, bob, 1)


def test_transfer_to_zero_address(registry: Any, model: int, alice: str) -> None:
    with boa.env.prank(alice), reverts("erc721: transfer to the zero address"):
        registry.transferFrom(alice, ZERO, model)
    with boa.env.prank(alice), reverts("erc721: transfer to the zero address"):
        registry.safeTransferFrom(alice, ZERO, model)


def test_transfer_to_oneself(registry: Any, model: int, alice: str) -> None:
    with boa.env.prank(alice):
        registry.transferFrom(alice, alice, model)
    assert only_event(registry, "Transfer").receiver == alice
    assert registry.balanceOf(alice) == 1
    assert registry.ownerOf(model) == alice


def test_safe_transfer_to_eoa(registry: Any, model: int, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        registry.safeTransferFrom(alice, bob, model)
    assert only_event(registry, "Transfer").receiver == bob
    assert _state(registry, model, alice, bob) == (bob, 0, 1)


@pytest.mark.parametrize("data", [None, b"", b"\x01\x02hello"])
def test_safe_transfer_to_accepting_receiver(
    registry: Any, model: int, alice: str, bob: str, data: bytes | None
) -> None:
    receiver = boa.loads(ACCEPTING_RECEIVER)
    with boa.env.prank(alice):
        registry.setApprovalForAll(bob, True)
    with boa.env.prank(bob):  # an operator moves it, so operator and sender differ
        if data is None:
            registry.safeTransferFrom(alice, receiver.address, model)
        else:
            registry.safeTransferFrom(alice, receiver.address, model, data)
    assert registry.ownerOf(model) == receiver.address
    assert receiver.calls() == 1
    assert receiver.operator() == bob
    assert receiver.sender() == alice
    assert receiver.token_id() == model
    assert receiver.data() == (data or b"")


def test_transfer_from_skips_the_receiver_check(registry: Any, model: int, alice: str) -> None:
    receiver = boa.loads(ACCEPTING_RECEIVER)
    no_hook = boa.loads(NO_HOOK)
    with boa.env.prank(alice):
        registry.transferFrom(alice, receiver.address, model)
    assert receiver.calls() == 0
    with boa.env.prank(receiver.address):
        registry.transferFrom(receiver.address, no_hook.address, model)
    assert registry.ownerOf(model) == no_hook.address


def test_safe_transfer_to_receiver_returning_wrong_value(
    registry: Any, model: int, alice: str
) -> None:
    receiver = boa.loads(WRONG_VALUE_RECEIVER)
    with boa.env.prank(alice), reverts("erc721: receiver did not accept the token"):
        registry.safeTransferFrom(alice, receiver.address, model, b"x")
    assert registry.ownerOf(model) == alice


def test_safe_transfer_to_reverting_receiver(registry: Any, model: int, alice: str) -> None:
    receiver = boa.loads(REVERTING_RECEIVER)
    # The receiver's own reason comes back unchanged.
    with boa.env.prank(alice), reverts("receiver: not taking tokens"):
        registry.safeTransferFrom(alice, receiver.address, model)
    assert registry.ownerOf(model) == alice


@pytest.mark.parametrize("source", [NO_HOOK, SILENT_DEFAULT])
def test_safe_transfer_to_contract_without_hook(
    registry: Any, model: int, alice: str, source: str
) -> None:
    contract = boa.loads(source)
    with boa.env.prank(alice), reverts_without_reason():
        registry.safeTransferFrom(alice, contract.address, model)
    assert registry.ownerOf(model) == alice
    assert registry.balanceOf(alice) == 1


def test_safe_transfer_refusals_match_transfer_from(
    registry: Any, model: int, alice: str, bob: str
) -> None:
    with boa.env.prank(bob), reverts("erc721: caller is not the token owner or approved"):
        registry.safeTransferFrom(alice, bob, model)
    with boa.env.prank(alice), reverts("erc721: token does not exist"):
        registry.safeTransferFrom(alice, bob, model + 1, b"")


def test_balances_follow_several_models(registry: Any, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        ids = [registry.publish(*digests(i), [], []) for i in range(3)]
        registry.transferFrom(alice, bob, ids[1])
    assert (registry.balanceOf(alice), registry.balanceOf(bob)) == (2, 1)
    assert [registry.ownerOf(i) for i in ids] == [alice, bob, alice]
