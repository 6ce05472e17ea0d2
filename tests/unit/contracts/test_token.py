# SPDX-License-Identifier: AGPL-3.0-only
"""The token: demo funding, the local-only faucet, EIP-2612 permit, the minter role."""

from __future__ import annotations

from typing import Any

import boa
import pytest

from mercato.chain.artifacts import load_artifact
from mercato.chain.boa_backend import BoaBackend
from mercato.chain.deployment import DEFAULT_FIXED_SUPPLY, TOKEN_UNIT, deploy
from mercato.errors import DeploymentError
from tests.unit.contracts.chain import (
    FUNDED,
    SIGNER_KEY,
    Mercato,
    events,
    only_event,
    permit_message,
    reverts,
    sign_permit,
)

FAUCET_AMOUNT = 1_000 * TOKEN_UNIT
ZERO = "0x0000000000000000000000000000000000000000"


def test_deploy_funds_demo_accounts(token: Any, chain: Mercato) -> None:
    funded = (*chain.accounts, chain.signer)
    for account in funded:
        assert token.balanceOf(account) == FUNDED
    assert token.totalSupply() == FUNDED * len(funded)
    assert token.name() == "Mercato Token"
    assert token.symbol() == "MCT"
    assert token.decimals() == 18


def test_faucet_succeeds(token: Any, stranger: str) -> None:
    assert token.FAUCET_AMOUNT() == FAUCET_AMOUNT
    supply = token.totalSupply()
    with boa.env.prank(stranger):
        token.faucet()
    drip = only_event(token, "FaucetDrip")
    transfer = only_event(token, "Transfer")
    assert (drip.account, drip.amount) == (stranger, FAUCET_AMOUNT)
    assert (transfer.sender, transfer.receiver, transfer.value) == (ZERO, stranger, FAUCET_AMOUNT)
    assert token.balanceOf(stranger) == FAUCET_AMOUNT
    assert token.totalSupply() == supply + FAUCET_AMOUNT


def test_faucet_also_runs_on_chain_1337(token: Any, stranger: str) -> None:
    boa.env.evm.patch.chain_id = 1_337
    with boa.env.prank(stranger):
        token.faucet()
    assert token.balanceOf(stranger) == FAUCET_AMOUNT


def test_faucet_refused_off_local_chains(token: Any, stranger: str) -> None:
    boa.env.evm.patch.chain_id = 1
    with boa.env.prank(stranger), reverts("token: the faucet only runs on local chains"):
        token.faucet()
    assert token.balanceOf(stranger) == 0


def test_domain_separator_matches_eip712(token: Any, signer: str, marketplace: Any) -> None:
    message = permit_message(token, signer, str(marketplace.address), 1, 0, 1)
    # An EIP-712 signable message's header is the domain separator.
    assert token.DOMAIN_SEPARATOR() == message.header


def test_permit_succeeds(token: Any, signer: str, bob: str) -> None:
    deadline = boa.env.timestamp + 600
    v, r, s = sign_permit(token, bob, 42 * TOKEN_UNIT, deadline)
    with boa.env.prank(bob):  # anyone may submit a signed permit
        token.permit(signer, bob, 42 * TOKEN_UNIT, deadline, v, r, s)
    approval = only_event(token, "Approval")
    assert (approval.owner, approval.spender, approval.value) == (signer, bob, 42 * TOKEN_UNIT)
    assert token.allowance(signer, bob) == 42 * TOKEN_UNIT
    assert token.nonces(signer) == 1


def test_permit_at_its_deadline_succeeds(token: Any, signer: str, bob: str) -> None:
    deadline = boa.env.timestamp + 600
    v, r, s = sign_permit(token, bob, 5, deadline)
    boa.env.time_travel(seconds=600)
    token.permit(signer, bob, 5, deadline, v, r, s)
    assert token.allowance(signer, bob) == 5


def test_permit_expired(token: Any, signer: str, bob: str) -> None:
    deadline = boa.env.timestamp + 600
    v, r, s = sign_permit(token, bob, 5, deadline)
    boa.env.time_travel(seconds=601)
    with reverts("erc20: expired deadline"):
        token.permit(signer, bob, 5, deadline, v, r, s)
    assert token.allowance(signer, bob) == 0


def test_permit_invalid_signature(token: Any, signer: str, bob: str) -> None:
    deadline = boa.env.timestamp + 600
    v, r, s = sign_permit(token, bob, 5, deadline)
    # The signature covers 5 tokens, not 6.
    with reverts("erc20: invalid signature"):
        token.permit(signer, bob, 6, deadline, v, r, s)
    assert token.allowance(signer, bob) == 0


def test_permit_replay_refused(token: Any, signer: str, bob: str) -> None:
    deadline = boa.env.timestamp + 600
    v, r, s = sign_permit(token, bob, 5, deadline)
    token.permit(signer, bob, 5, deadline, v, r, s)
    with boa.env.prank(signer):
        token.approve(bob, 0)
    with reverts("erc20: invalid signature"):
        token.permit(signer, bob, 5, deadline, v, r, s)
    assert token.allowance(signer, bob) == 0


def test_permit_by_another_key_refused(token: Any, signer: str, bob: str) -> None:
    deadline = boa.env.timestamp + 600
    v, r, s = sign_permit(token, bob, 5, deadline, key=bytes.fromhex("77" * 32))
    assert bytes.fromhex("77" * 32) != SIGNER_KEY
    with reverts("erc20: invalid signature"):
        token.permit(signer, bob, 5, deadline, v, r, s)


def test_mint_succeeds_for_minter(token: Any, deployer: str, stranger: str) -> None:
    with boa.env.prank(deployer):
        token.mint(stranger, 7)
    transfer = only_event(token, "Transfer")
    assert (transfer.sender, transfer.receiver, transfer.value) == (ZERO, stranger, 7)
    assert token.balanceOf(stranger) == 7


def test_mint_by_non_minter(token: Any, alice: str) -> None:
    supply = token.totalSupply()
    with boa.env.prank(alice), reverts("erc20: access is denied"):
        token.mint(alice, 7)
    assert token.totalSupply() == supply


def test_transfer_and_transfer_from(token: Any, alice: str, bob: str, carol: str) -> None:
    with boa.env.prank(alice):
        token.transfer(bob, 3)
    assert only_event(token, "Transfer").value == 3
    with boa.env.prank(alice), reverts("erc20: transfer amount exceeds balance"):
        token.transfer(bob, FUNDED)
    with boa.env.prank(carol), reverts("erc20: insufficient allowance"):
        token.transferFrom(alice, carol, 1)
    with boa.env.prank(alice):
        token.approve(carol, 2)
    with boa.env.prank(carol):
        token.transferFrom(alice, carol, 2)
    assert [e.value for e in events(token, "Transfer")] == [2]
    assert token.balanceOf(alice) == FUNDED - 5
    assert token.balanceOf(carol) == FUNDED + 2


# snekmate's ERC-20 functions the token exports as they are; checked here so every
# external function of the deployed token has a test.


def test_burn_succeeds(token: Any, alice: str) -> None:
    supply = token.totalSupply()
    with boa.env.prank(alice):
        token.burn(4)
    transfer = only_event(token, "Transfer")
    assert (transfer.sender, transfer.receiver, transfer.value) == (alice, ZERO, 4)
    assert token.totalSupply() == supply - 4
    with boa.env.prank(alice), reverts("erc20: burn amount exceeds balance"):
        token.burn(FUNDED)


def test_burn_from_succeeds(token: Any, alice: str, bob: str) -> None:
    with boa.env.prank(bob), reverts("erc20: insufficient allowance"):
        token.burn_from(alice, 1)
    with boa.env.prank(alice):
        token.approve(bob, 3)
    with boa.env.prank(bob):
        token.burn_from(alice, 3)
    assert only_event(token, "Transfer").value == 3
    assert token.balanceOf(alice) == FUNDED - 3
    assert token.allowance(alice, bob) == 0


def test_set_minter_succeeds(token: Any, deployer: str, alice: str) -> None:
    with boa.env.prank(deployer):
        token.set_minter(alice, True)
    changed = only_event(token, "RoleMinterChanged")
    assert (changed.minter, changed.status) == (alice, True)
    with boa.env.prank(alice):
        token.mint(alice, 1)
    assert token.balanceOf(alice) == FUNDED + 1


def test_set_minter_refusals(token: Any, deployer: str, alice: str) -> None:
    with boa.env.prank(alice), reverts("ownable: caller is not the owner"):
        token.set_minter(alice, True)
    with boa.env.prank(deployer), reverts("erc20: minter is the zero address"):
        token.set_minter(ZERO, True)
    with boa.env.prank(deployer), reverts("erc20: minter is owner address"):
        token.set_minter(deployer, False)


def test_transfer_ownership_moves_the_minter_role(token: Any, deployer: str, alice: str) -> None:
    with boa.env.prank(deployer), reverts("erc20: new owner is the zero address"):
        token.transfer_ownership(ZERO)
    with boa.env.prank(deployer):
        token.transfer_ownership(alice)
    moved = only_event(token, "OwnershipTransferred")
    assert (moved.previous_owner, moved.new_owner) == (deployer, alice)
    assert token.owner() == alice
    assert token.is_minter(alice)
    assert not token.is_minter(deployer)


def test_renounce_ownership(token: Any, deployer: str, alice: str) -> None:
    with boa.env.prank(alice), reverts("ownable: caller is not the owner"):
        token.renounce_ownership()
    with boa.env.prank(deployer):
        token.renounce_ownership()
    assert only_event(token, "OwnershipTransferred").new_owner == ZERO
    assert token.owner() == ZERO
    with boa.env.prank(deployer), reverts("erc20: access is denied"):
        token.mint(deployer, 1)


# -- minting exists only on local chains ------------------------------------------


def _token_on(chain_id: int, deployer: str, supply: int) -> Any:
    boa.env.evm.patch.chain_id = chain_id
    artifact = load_artifact("token")
    return BoaBackend.at(artifact, BoaBackend(deployer).create(artifact, supply))


@pytest.mark.parametrize("chain_id", [1, 10, 8_453, 11_155_111])
def test_token_off_local_chains_has_a_fixed_supply(
    deployer: str, alice: str, chain_id: int
) -> None:
    supply = 5 * TOKEN_UNIT
    token = _token_on(chain_id, deployer, supply)
    assert token.totalSupply() == supply
    assert token.balanceOf(deployer) == supply
    assert not token.is_minter(deployer)
    assert token.owner() == ZERO
    # Nobody can mint, grant minting, or take the owner role that grants it.
    with boa.env.prank(deployer), reverts("erc20: access is denied"):
        token.mint(deployer, 1)
    with boa.env.prank(deployer), reverts("ownable: caller is not the owner"):
        token.set_minter(alice, True)
    with boa.env.prank(deployer), reverts("ownable: caller is not the owner"):
        token.transfer_ownership(alice)
    assert token.totalSupply() == supply


@pytest.mark.parametrize("chain_id", [31_337, 1_337])
def test_token_on_local_chains_keeps_the_minter(deployer: str, alice: str, chain_id: int) -> None:
    token = _token_on(chain_id, deployer, 0)
    assert token.totalSupply() == 0
    assert token.is_minter(deployer)
    assert token.owner() == deployer
    with boa.env.prank(deployer):
        token.mint(alice, 7)
    assert token.balanceOf(alice) == 7


def test_deploy_off_local_chains_leaves_no_minter() -> None:
    boa.env.evm.patch.chain_id = 10
    deployer = str(boa.env.generate_address())
    deployment = deploy(BoaBackend(deployer))
    token = BoaBackend.at(load_artifact("token"), deployment.token)
    assert token.totalSupply() == DEFAULT_FIXED_SUPPLY
    assert token.balanceOf(deployer) == DEFAULT_FIXED_SUPPLY
    assert not token.is_minter(deployer)
    assert token.owner() == ZERO


def test_deploy_on_a_local_chain_mints_only_the_funding(chain: Mercato, token: Any) -> None:
    assert token.balanceOf(chain.deployer) == 0
    assert token.is_minter(chain.deployer)


def test_deploy_refuses_a_negative_supply() -> None:
    with pytest.raises(DeploymentError, match="initial token supply"):
        deploy(BoaBackend(str(boa.env.generate_address())), initial_supply=-1)
