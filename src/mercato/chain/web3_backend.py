# SPDX-License-Identifier: AGPL-3.0-only
"""`deploy()` and transactions over any EVM JSON-RPC endpoint, signed locally.

Transactions are signed with eth-account in this process, so the node never needs
an unlocked account on the RPC server: the same code deploys to Anvil, a testnet
or an L2.
"""

from __future__ import annotations

from typing import Any, cast

import requests
from eth_account.signers.local import LocalAccount
from eth_typing import URI
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import RPCEndpoint, RPCResponse, TxParams, TxReceipt, Wei

from mercato.chain.artifacts import Artifact, create_address
from mercato.chain.retry import (
    RetryPolicy,
    http_status,
    is_rate_limit_error,
    is_transient_exception,
    retry_after_seconds,
)
from mercato.errors import (
    ContractRevertError,
    RpcAnswerTooLargeError,
    RpcRetryExhaustedError,
    TransactionFailedError,
    TransactionNotMinedError,
)

# The most bytes read of one RPC answer: far above any honest answer Mercato asks for
# (log queries shrink their range to fit), far below what would exhaust a node's memory.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 64 * 1024


class RetryingHTTPProvider(HTTPProvider):
    """An HTTP JSON-RPC provider that rides out rate limits and dropped connections.

    A transient failure (HTTP 429 or 5xx, a JSON-RPC "rate limited" error, a dropped
    connection, a timeout) is retried under a `RetryPolicy`: exponential back-off with
    jitter, the provider's Retry-After honoured up to a cap, then a typed error. A
    resent `eth_sendRawTransaction` first asks whether the first try got through, so
    a send whose answer was lost is not reported as a failure. Answers are read up to
    `max_answer_bytes`: a hostile or broken provider cannot fill the node's memory.
    """

    def __init__(
        self,
        endpoint_uri: str,
        *,
        timeout: float = 30,
        retry: RetryPolicy | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        # web3's own retry has no jitter and no Retry-After; this class replaces it.
        super().__init__(
            endpoint_uri,
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=None,
        )
        self.retry = retry or RetryPolicy()
        self.max_answer_bytes = max_answer_bytes

    def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        """Posts one request and reads its answer, refusing one over the byte cap.

        Raises:
            RpcAnswerTooLargeError: The answer declares or sends more than the cap.
        """
        kwargs = dict(self.get_request_kwargs())
        kwargs["stream"] = True
        endpoint = cast(URI, self.endpoint_uri)  # always set: the constructor takes it
        with self._request_session_manager.get_response_from_post_request(
            endpoint, data=request_data, **kwargs
        ) as response:
            response.raise_for_status()
            too_large = RpcAnswerTooLargeError(
                method, self.max_answer_bytes, rpc_url=str(self.endpoint_uri)
            )
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_answer_bytes:
                raise too_large
            body = bytearray()
            for chunk in response.iter_content(_READ_CHUNK):
                body += chunk
                if len(body) > self.max_answer_bytes:
                    raise too_large
            return bytes(body)

    def make_request_once(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        """One try, no retries (for callers that retry themselves, like log fetching)."""
        return super().make_request(method, params)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        detail = ""
        retry_after: float | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                self.retry.sleep(self.retry.delay(attempt - 1, retry_after))
                if method == "eth_sendRawTransaction":
                    sent = self._already_sent(params)
                    if sent is not None:
                        return sent
            retry_after = None
            try:
                response = super().make_request(method, params)
            except (requests.RequestException, OSError) as exc:
                if not is_transient_exception(exc):
                    raise
                status = http_status(exc)
                detail = f"HTTP {status}" if status is not None else type(exc).__name__
                retry_after = retry_after_seconds(exc)
                continue
            error = response.get("error") if isinstance(response, dict) else None
            if error is not None and is_rate_limit_error(error):
                detail = f"rate limited: {error.get('message', '')}"
                continue
            return response
        raise RpcRetryExhaustedError(
            method, self.retry.attempts, detail, rpc_url=str(self.endpoint_uri)
        )

    def _already_sent(self, params: Any) -> RPCResponse | None:
        """The answer a lost `eth_sendRawTransaction` would have given, if it got through."""
        try:
            tx_hash = "0x" + keccak(HexBytes(params[0])).hex()
            found = super().make_request(RPCEndpoint("eth_getTransactionByHash"), [tx_hash])
        except (requests.RequestException, OSError, ValueError, IndexError, TypeError):
            return None  # cannot tell: send again (the same signed bytes cannot run twice)
        if isinstance(found, dict) and found.get("result"):
            return cast(
                RPCResponse, {"jsonrpc": "2.0", "id": found.get("id", 0), "result": tx_hash}
            )
        return None


def connect(rpc_url: str, *, timeout: float = 30, retry: RetryPolicy | None = None) -> Web3:
    """A web3 connection to `rpc_url` that retries transient provider failures.

    Args:
        rpc_url: Any EVM JSON-RPC HTTP(S) URL.
        timeout: Seconds to wait for each answer.
        retry: How transient failures are retried; None uses the defaults.

    Returns:
        The connection (nothing is sent yet).
    """
    return Web3(RetryingHTTPProvider(rpc_url, timeout=timeout, retry=retry))


class Web3Backend:
    """Sends transactions from one local account through a web3.py connection."""

    def __init__(self, w3: Web3, account: LocalAccount, *, receipt_timeout: float = 120) -> None:
        """Sends as `account` over `w3`.

        Args:
            w3: The connection to the chain.
            account: The account that signs.
            receipt_timeout: Seconds `send` waits for a transaction to be mined.
        """
        self.w3 = w3
        self.account = account
        self.receipt_timeout = receipt_timeout

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
            TransactionNotMinedError: It was sent but not mined within `receipt_timeout`
                seconds (it may still be mined: sending it again could do it twice).
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
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout
            )
        except TimeExhausted as exc:
            raise TransactionNotMinedError(tx_hash.to_0x_hex(), self.receipt_timeout) from exc
        if receipt["status"] != 1:
            raise TransactionFailedError(tx_hash.hex(), "the transaction reverted")
        return receipt

    def send_ether(self, to: str, value: int) -> TxReceipt:
        """Sends `value` wei of the chain's native currency (for gas) to `to`."""
        return self.send({"to": Web3.to_checksum_address(to), "value": Wei(value)})

    def _base_tx(self) -> TxParams:
        return {"from": self.account.address}
