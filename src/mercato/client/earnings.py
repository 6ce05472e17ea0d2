# SPDX-License-Identifier: AGPL-3.0-only
"""`market.earnings`: what sales, royalties and fees credited, and withdrawing it.

Delivered sales credit the model's owner, each parent's owner (royalties) and the
protocol's fee account inside the marketplace; `withdraw` sends the caller its credit.
The chain says what can be withdrawn now; the index says where it came from.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eth_typing import ChecksumAddress
from web3 import Web3

from mercato.chain.contracts import ModelId, TokenAmount
from mercato.errors import NothingToWithdrawError

if TYPE_CHECKING:
    from mercato.client.market import Market

# The marketplace keeps one base unit credited after a withdrawal (a cheaper next credit).
KEPT_UNIT = 1


@dataclass(frozen=True)
class ModelEarnings:
    """What one model earned an account.

    Attributes:
        model_id: The model.
        sales: Delivered sales credited to the account as the model's owner.
        sold: Tokens those sales credited (after royalties and fee).
        royalties: Tokens credited as the owner of a parent of the model.
        fees: Tokens credited as the protocol's fee account.
    """

    model_id: ModelId
    sales: int
    sold: TokenAmount
    royalties: TokenAmount
    fees: TokenAmount

    @property
    def total(self) -> TokenAmount:
        return TokenAmount(self.sold + self.royalties + self.fees)


@dataclass(frozen=True)
class Earnings:
    """An account's earnings in the marketplace.

    Attributes:
        account: The account.
        credited: Everything ever credited (sales, royalties, fees).
        withdrawn: Everything ever withdrawn.
        withdrawable: What `withdraw` sends now (the chain's figure).
        per_model: Where the credits came from, one entry per model, by model id.
    """

    account: ChecksumAddress
    credited: TokenAmount
    withdrawn: TokenAmount
    withdrawable: TokenAmount
    per_model: list[ModelEarnings]


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal the marketplace made."""

    account: ChecksumAddress
    amount: TokenAmount
    tx_hash: str


class EarningsAPI:
    def __init__(self, market: Market) -> None:
        self._market = market

    def withdrawable(self, account: str | None = None) -> TokenAmount:
        """What a withdrawal would send the account now, read from the chain.

        Args:
            account: Any address; defaults to the market's account.

        Returns:
            Base units (10**18 per token); 0 when there is nothing to withdraw.

        Raises:
            NoAccountError: No account given and the market is read-only.
        """
        address = account or self._market.require_account("read earnings").address
        credited = self._market.contracts.marketplace.credits(address)
        return TokenAmount(max(credited - KEPT_UNIT, 0))

    def summary(self, account: str | None = None) -> Earnings:
        """An account's earnings: credited, withdrawn, withdrawable, per model.

        Brings the index up to the chain's head first.

        Args:
            account: Any address; defaults to the market's account.

        Returns:
            The account's earnings.

        Raises:
            NoAccountError: No account given and the market is read-only.
            InvalidSearchQueryError: `account` is not an address.
            IndexingError: The index cannot be opened or brought up to date.
        """
        address = account or self._market.require_account("read earnings").address
        earned = self._market.synced_index().earnings(address)
        per_model: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for credit in earned.credits:
            entry = per_model[credit.model_id]
            entry[credit.role] += credit.amount
            if credit.role == "sale":
                entry["count"] += 1
        return Earnings(
            account=Web3.to_checksum_address(earned.account),
            credited=TokenAmount(earned.credited),
            withdrawn=TokenAmount(earned.withdrawn),
            withdrawable=self.withdrawable(earned.account),
            per_model=[
                ModelEarnings(
                    ModelId(model_id),
                    sales=entry["count"],
                    sold=TokenAmount(entry["sale"]),
                    royalties=TokenAmount(entry["royalty"]),
                    fees=TokenAmount(entry["fee"]),
                )
                for model_id, entry in sorted(per_model.items())
            ],
        )

    def withdraw(self) -> Withdrawal:
        """Sends the market's account everything the marketplace credited to it.

        Returns:
            The amount sent and the transaction's hash.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account cannot pay for the transaction.
            NothingToWithdrawError: Nothing is credited to the account.
            ContractRevertError: The marketplace refused.
        """
        account = self._market.require_signer("withdraw earnings")
        if self.withdrawable(account.address) == 0:
            raise NothingToWithdrawError(account.address)
        marketplace = self._market.contracts.marketplace
        receipt = marketplace.withdraw()
        (event,) = marketplace.events(receipt, "Withdrawn")
        amount = TokenAmount(int(event["args"]["amount"]))
        return Withdrawal(account.address, amount, receipt["transactionHash"].to_0x_hex())

    def withdraw_call(self) -> dict[str, str]:
        """The transaction a browser wallet signs to withdraw (for the web marketplace).

        Returns:
            `{"to": marketplace address, "data": calldata}`; the sender is the earner.
        """
        marketplace = self._market.contracts.marketplace
        data = marketplace.contract.encode_abi("withdraw", args=[])
        return {"to": marketplace.address, "data": data}
