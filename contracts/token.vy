# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Mercato token (MCT)
@custom:contract-name token
@notice The marketplace's ERC-20, with EIP-2612 `permit` so a first purchase
        needs no separate approval transaction. Built on snekmate's ERC-20.
        On local development chains anyone may draw test tokens from `faucet`.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: erc20.__interface__


event FaucetDrip:
    account: indexed(address)
    amount: uint256


# Chain ids of local development nodes: Anvil / Hardhat (31337) and Ganache / geth --dev (1337).
_LOCAL_CHAIN_IDS: constant(uint256[2]) = [31_337, 1_337]
FAUCET_AMOUNT: public(constant(uint256)) = 1_000 * 10**18


@deploy
@payable
def __init__():
    ownable.__init__()
    erc20.__init__("Mercato Token", "MCT", 18, "Mercato Token", "1")


@external
def faucet():
    """
    @notice Mints `FAUCET_AMOUNT` test tokens to the caller.
    @dev Works only on local development chains, so it cannot mint value on a real network.
    """
    assert chain.id in _LOCAL_CHAIN_IDS, "token: the faucet only runs on local chains"
    erc20._mint(msg.sender, FAUCET_AMOUNT)
    log FaucetDrip(account=msg.sender, amount=FAUCET_AMOUNT)
