# SPDX-License-Identifier: AGPL-3.0-only
"""`market.wallet`: token balances and the local-chain faucet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from mercato.chain.contracts import TokenAmount
from mercato.errors import FaucetUnavailableError

if TYPE_CHECKING:
    from mercato.client.market import Market

# Native currency a faucet call leaves an account with, for gas (local chains only).
FAUCET_GAS = 10 * 10**18
# Below this, the faucet tops the account's gas up again.
GAS_TOP_UP_BELOW = 10**18
# Local development chains' RPC methods that set a balance (Anvil, then Hardhat).
SET_BALANCE_METHODS = ("anvil_setBalance", "hardhat_setBalance")


class WalletAPI:
    def __init__(self, market: Market) -> None:
        self._market = market

    def balance(self, account: str | None = None) -> TokenAmount:
        """An MCT balance.

        Args:
            account: Any address; defaults to the market's account.

        Returns:
            The balance in base units (10**18 per token).

        Raises:
            NoAccountError: No account given and the market is read-only.
        """
        address = account or self._market.require_account("read a balance").address
        return self._market.contracts.token.balance_of(address)

    def gas_balance(self, account: str | None = None) -> int:
        """The chain's native currency an account holds to pay gas, in wei.

        Raises:
            NoAccountError: No account given and the market is read-only.
        """
        address = account or self._market.require_account("read a balance").address
        return int(self._market.w3.eth.get_balance(address))  # type: ignore[arg-type]

    def faucet(self) -> TokenAmount:
        """Funds the account on a local chain: gas first (a fresh wallet has none), then MCT.

        Returns:
            The account's new MCT balance in base units.

        Raises:
            NoAccountError: The market is read-only.
            FaucetUnavailableError: The chain is not a local development chain, or it
                does not let the faucet set the account's gas.
            ContractRevertError: The token refused to mint.
        """
        account = self._market.require_account("use the faucet")
        chain_id = self._market.chain_id
        if not self._market.is_local_chain:
            raise FaucetUnavailableError(
                chain_id,
                f"The faucet only runs on a local development chain; chain {chain_id} is not "
                f"one. To buy here, {account.address} needs MCT sent by another holder and "
                "some of the chain's native currency (ETH on most chains) to pay gas.",
            )
        if self.gas_balance(account.address) < GAS_TOP_UP_BELOW:
            self._set_gas(account.address)
        self._market.contracts.token.faucet()
        return self._market.contracts.token.balance_of(account.address)

    def _set_gas(self, address: str) -> None:
        provider = self._market.w3.provider
        for method in SET_BALANCE_METHODS:
            try:
                answer: Any = provider.make_request(RPCEndpoint(method), [address, hex(FAUCET_GAS)])
            except (requests.RequestException, Web3Exception, OSError, ValueError):
                continue
            if isinstance(answer, dict) and "error" not in answer:
                return
        raise FaucetUnavailableError(
            self._market.chain_id,
            f"This local chain does not let the faucet give {address} gas (it is not Anvil "
            "or Hardhat). Send it some native currency from a funded development account, "
            "then run 'mercato wallet faucet' again.",
        )
