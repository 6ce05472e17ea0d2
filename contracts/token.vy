# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Mercato token (MCT)
@custom:contract-name token
@notice The marketplace's ERC-20, with EIP-2612 `permit` so a first purchase
        needs no separate approval transaction. Built on snekmate's ERC-20.
        On local development chains anyone may draw test tokens from `faucet`,
        and the deployer keeps snekmate's owner and minter roles to fund demo
        accounts. On every other chain the supply is fixed at deployment: the
        deployer gets it, is no minter, and the token has no owner, so nobody can
        ever mint (or grant minting) there.
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
def __init__(initial_supply: uint256):
    """
    @param initial_supply Tokens, in base units, minted once to the deployer.
    @custom:security The chain id decides, in the bytecode anyone can read, whether a
                     minter exists: a deployment script cannot forget to drop the role.
    """
    ownable.__init__()
    erc20.__init__("Mercato Token", "MCT", 18, "Mercato Token", "1")
    if initial_supply != 0:
        erc20._mint(msg.sender, initial_supply)
    if chain.id not in _LOCAL_CHAIN_IDS:
        # snekmate hands the minter role to every new owner, so the owner goes too.
        erc20.is_minter[msg.sender] = False
        log erc20.RoleMinterChanged(minter=msg.sender, status=False)
        ownable._transfer_ownership(empty(address))


@external
def faucet():
    """
    @notice Mints `FAUCET_AMOUNT` test tokens to the caller.
    @dev Works only on local development chains, so it cannot mint value on a real network.
    """
    assert chain.id in _LOCAL_CHAIN_IDS, "token: the faucet only runs on local chains"
    erc20._mint(msg.sender, FAUCET_AMOUNT)
    log FaucetDrip(account=msg.sender, amount=FAUCET_AMOUNT)
