# SPDX-License-Identifier: AGPL-3.0-only
"""`market.wallet`: token balances and the local-chain faucet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mercato.chain.contracts import TokenAmount
from mercato.errors import MarketError

if TYPE_CHECKING:
    from mercato.client.market import Market


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

    def faucet(self) -> TokenAmount:
        """Draws test tokens on a local chain.

        Returns:
            The account's new balance in base units.

        Raises:
            NoAccountError: The market is read-only.
            MarketError: The chain is not a local development chain.
        """
        account = self._market.require_account("use the faucet")
        if not self._market.is_local_chain:
            raise MarketError(
                f"The faucet only runs on local chains; chain {self._market.chain_id} is not one."
            )
        self._market.contracts.token.faucet()
        return self._market.contracts.token.balance_of(account.address)
