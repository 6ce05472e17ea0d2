# SPDX-License-Identifier: AGPL-3.0-only
"""`deploy()` and transactions over any EVM JSON-RPC endpoint, signed locally.

Transactions are signed with eth-account in this process, so the node never needs
an unlocked account on the RPC server: the same code deploys to Anvil, a testnet
or an L2.
"""

from __future__ import annotations

from typing import Any, cast

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import TxParams, TxReceipt, Wei

from mercato.chain.artifacts import Artifact, create_address
from mercato.errors import ContractRevertError, TransactionFailedError


class Web3Backend:
    """Sends transactions from one local account through a web3.py connection."""

    def __init__(self, w3: Web3, account: LocalAccount) -> None:
        self.w3 = w3
        self.account = account

    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def deployer(self) -> str:
        return str(self.account.address)

    def future_contract_address(self, creations_ahead: int) -> str:
        nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
        return create_address(self.account.address, nonce + creations_ahead)

    def create(self, artifact: Artifact, *args: Any) -> str:
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(*args).build_transaction(self._base_tx())
        receipt = self.send(tx)
        address = receipt["contractAddress"]
        if address is None:  # pragma: no cover - a successful creation always has one
            raise TransactionFailedError(receipt["transactionHash"].hex(), "no contract created")
        return str(address)

    def transact(self, artifact: Artifact, address: str, function: str, *args: Any) -> None:
        contract = self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)
        tx = contract.functions[function](*args).build_transaction(self._base_tx())
        self.send(tx)

    def simulate_creation(self, code: bytes) -> bytes:
        """Runs creation `code` in an `eth_call` with no recipient; nothing is sent.

        Raises:
            ContractRevertError: The node could not run it (an invalid opcode, a revert);
                the reason is the node's own message.
        """
        try:
            return bytes(self.w3.eth.call({"from": self.account.address, "data": code}))
        except (ContractLogicError, Web3RPCError) as exc:
            # Nodes report an opcode they do not know as a JSON-RPC error or as a revert.
            error = (getattr(exc, "rpc_response", None) or {}).get("error")
            reason = error.get("message") if isinstance(error, dict) else None
            raise ContractRevertError(
                str(reason or exc.message or exc), "contract creation"
            ) from exc

    def send(self, tx: TxParams) -> TxReceipt:
        """Signs `tx` with the account, sends it, and waits for a successful receipt.

        Raises:
            TransactionFailedError: The transaction was mined but reverted.
        """
        tx.setdefault("from", self.account.address)
        tx.setdefault("nonce", self.w3.eth.get_transaction_count(self.account.address, "pending"))
        tx.setdefault("chainId", self.w3.eth.chain_id)
        if "gasPrice" not in tx and "maxFeePerGas" not in tx:
            priority = self.w3.eth.max_priority_fee
            base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
            tx["maxPriorityFeePerGas"] = priority
            # Room for the base fee to double before the transaction is mined, as wallets do.
            tx["maxFeePerGas"] = Wei(2 * base_fee + priority)
        if "gas" not in tx:
            tx["gas"] = self.w3.eth.estimate_gas(tx)
        signed = self.account.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise TransactionFailedError(tx_hash.hex(), "the transaction reverted")
        return receipt

    def send_ether(self, to: str, value: int) -> TxReceipt:
        """Sends `value` wei of the chain's native currency (for gas) to `to`."""
        return self.send({"to": Web3.to_checksum_address(to), "value": Wei(value)})

    def _base_tx(self) -> TxParams:
        return {"from": self.account.address}
