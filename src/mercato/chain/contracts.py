# SPDX-License-Identifier: AGPL-3.0-only
"""Typed Python wrappers, one class per contract, with explicit methods.

Each method names its arguments and return type; nothing is copied from the ABI onto
objects at run time. Transactions are signed locally by the `Web3Backend` given as
sender; a revert becomes a `ContractRevertError` carrying the contract's own words.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NewType

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.types import EventData, TxParams, TxReceipt

from mercato.chain.artifacts import load_artifact
from mercato.chain.deployment import Deployment
from mercato.chain.web3_backend import Web3Backend
from mercato.errors import ChainError, ContractRevertError

TokenAmount = NewType("TokenAmount", int)  # base units: 10**18 per token
ModelId = NewType("ModelId", int)
# The word a purchase commits to: the most the buyer pays (bits 0-95), the license
# duration (96-127), the listing's fee bps (136-151) and the first 104 bits of the licence
# terms digest the buyer read (152-255), as the marketplace packs a listing.
PurchaseTerms = NewType("PurchaseTerms", int)
MAX_PRICE = 2**96 - 1  # the marketplace's price field is 96 bits wide
TERMS_SHIFT = 152  # the licence terms digest's bits in a listing and a terms word
NO_DIGEST = bytes(32)


class LicenseState(enum.IntEnum):
    """Where a (buyer, model) record stands; values match the contract."""

    NONE = 0
    PENDING = 1
    DELIVERED = 2
    REFUNDED = 3


@dataclass(frozen=True)
class Listing:
    price: TokenAmount
    license_duration: int  # seconds; 0 = perpetual
    for_sale: bool
    fee_bps: int  # the protocol fee fixed when the listing was set

    def terms(self, max_price: int | None = None, terms_digest: bytes = NO_DIGEST) -> PurchaseTerms:
        """The terms a purchase of this listing commits to.

        The marketplace refuses the purchase if the owner changes the license duration,
        the listing's fee or the licence terms before it is mined, or raises the price
        above `max_price`.

        Args:
            max_price: The most the buyer pays; defaults to this listing's price. Values
                outside 0..MAX_PRICE are clamped (no listing is priced above MAX_PRICE).
            terms_digest: The digest of the licence terms the buyer read (see
                `mercato.client.license_terms`), never one copied from the chain; zero
                bytes for a listing that states none.

        Returns:
            The packed terms word to pass to `Marketplace.purchase`.

        Raises:
            ValueError: `terms_digest` is not 32 bytes.
        """
        if len(terms_digest) != 32:
            raise ValueError("A licence terms digest is 32 bytes.")
        limit = self.price if max_price is None else min(max(max_price, 0), MAX_PRICE)
        prefix = (int.from_bytes(terms_digest, "big") >> TERMS_SHIFT) << TERMS_SHIFT
        return PurchaseTerms(limit | (self.license_duration << 96) | (self.fee_bps << 136) | prefix)


@dataclass(frozen=True)
class License:
    state: LicenseState
    price: TokenAmount
    time: int  # the delivery deadline while pending, the expiry once delivered (0 = perpetual)
    fee_bps: int


@dataclass(frozen=True)
class VersionDigests:
    """What a version commits to: all three are 32-byte sha256 digests."""

    artifact_cid_digest: bytes
    plaintext_sha256: bytes
    manifest_cid_digest: bytes

    def as_args(self) -> tuple[bytes, bytes, bytes]:
        return (self.artifact_cid_digest, self.plaintext_sha256, self.manifest_cid_digest)


@dataclass(frozen=True)
class Delivery:
    model_id: ModelId
    buyer: ChecksumAddress
    version: int
    wrapped_key: bytes


class _ContractClient:
    artifact_name: ClassVar[str]

    def __init__(self, w3: Web3, address: str, sender: Web3Backend | None = None) -> None:
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.sender = sender
        self.contract: Contract = w3.eth.contract(
            address=self.address, abi=load_artifact(self.artifact_name).abi
        )

    def _call(self, function: str, *args: Any) -> Any:
        try:
            return self.contract.functions[function](*args).call()
        except ContractLogicError as exc:
            raise _revert(exc, function) from exc

    def _send(self, function: str, *args: Any) -> TxReceipt:
        if self.sender is None:
            raise ChainError(f"Cannot call {function}: this client has no account to send from.")
        return self.sender.send(self._build(function, *args))

    def _build(self, function: str, *args: Any) -> TxParams:
        """The call as an unsigned transaction from the sender, its gas estimated.

        Raises:
            ChainError: This client has no account to send from.
            ContractRevertError: The contract refuses the call now.
        """
        if self.sender is None:
            raise ChainError(f"Cannot call {function}: this client has no account to send from.")
        try:
            return self.contract.functions[function](*args).build_transaction(
                {"from": self.sender.account.address}
            )
        except ContractLogicError as exc:  # raised while estimating gas
            raise _revert(exc, function) from exc

    def events(self, receipt: TxReceipt, event: str) -> list[EventData]:
        """Decodes the `event` logs this contract emitted in `receipt`."""
        # Only this event's logs: decoding another event's log would warn and drop it.
        topic = bytes.fromhex(str(self.contract.events[event]().topic).removeprefix("0x"))
        logs = [
            log
            for log in receipt["logs"]
            if log["address"] == self.address and log["topics"] and bytes(log["topics"][0]) == topic
        ]
        decoded = self.contract.events[event]().process_receipt({**receipt, "logs": logs})
        return list(decoded)


def _revert(exc: ContractLogicError, function: str) -> ContractRevertError:
    reason = str(exc.message or exc).removeprefix("execution reverted: ").strip()
    return ContractRevertError(reason, function)


class Token(_ContractClient):
    """The Mercato ERC-20 token (MCT) with EIP-2612 permit."""

    artifact_name = "token"

    def balance_of(self, account: str) -> TokenAmount:
        return TokenAmount(self._call("balanceOf", account))

    def allowance(self, owner: str, spender: str) -> TokenAmount:
        return TokenAmount(self._call("allowance", owner, spender))

    def total_supply(self) -> TokenAmount:
        return TokenAmount(self._call("totalSupply"))

    def nonce(self, owner: str) -> int:
        return int(self._call("nonces", owner))

    def transfer(self, to: str, amount: int) -> TxReceipt:
        return self._send("transfer", to, amount)

    def approve(self, spender: str, amount: int) -> TxReceipt:
        return self._send("approve", spender, amount)

    def mint(self, to: str, amount: int) -> TxReceipt:
        """Mints tokens; only a minter (the deployer) may."""
        return self._send("mint", to, amount)

    def faucet(self) -> TxReceipt:
        """Draws test tokens; works on local chains only."""
        return self._send("faucet")

    def sign_permit(
        self, owner: LocalAccount, spender: str, amount: int, deadline: int
    ) -> tuple[int, bytes, bytes]:
        """Signs an EIP-2612 permit letting `spender` move `amount` of `owner`'s tokens.

        Returns:
            The signature's (v, r, s).
        """
        signed = owner.sign_message(
            encode_typed_data(
                full_message=self.permit_message(owner.address, spender, amount, deadline)
            )
        )
        return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")

    def permit_message(
        self, owner: str, spender: str, amount: int, deadline: int
    ) -> dict[str, Any]:
        """The EIP-712 typed data of a permit, as a browser wallet would sign it."""
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": "Mercato Token",
                "version": "1",
                "chainId": self.w3.eth.chain_id,
                "verifyingContract": self.address,
            },
            "message": {
                "owner": owner,
                "spender": spender,
                "value": amount,
                "nonce": self.nonce(owner),
                "deadline": deadline,
            },
        }


class ModelRegistry(_ContractClient):
    """Models as ERC-721 tokens, their versions, lineage and provider URLs."""

    artifact_name = "model_registry"

    def publish(
        self, digests: VersionDigests, parents: Sequence[int] = (), royalty_bps: Sequence[int] = ()
    ) -> ModelId:
        """Mints an unlisted model with its first version; returns its id."""
        receipt = self._send("publish", *digests.as_args(), list(parents), list(royalty_bps))
        return ModelId(self.events(receipt, "VersionAdded")[0]["args"]["model_id"])

    def add_version(
        self, model_id: int, digests: VersionDigests, metadata_digest: bytes = NO_DIGEST
    ) -> int:
        """Appends a version; a non-zero `metadata_digest` also replaces the token's
        ERC-721 metadata. Returns the new version number."""
        receipt = self._send("add_version", model_id, *digests.as_args(), metadata_digest)
        return int(self.events(receipt, "VersionAdded")[0]["args"]["version"])

    def set_metadata(self, model_id: int, metadata_digest: bytes) -> TxReceipt:
        return self._send("set_metadata", model_id, metadata_digest)

    def token_uri(self, model_id: int) -> str:
        """`ipfs://<CID>` of the model's ERC-721 metadata JSON, or "" when none."""
        return str(self._call("tokenURI", model_id))

    def metadata_digest(self, model_id: int) -> bytes:
        return bytes(self._call("metadata_digest", model_id))

    def deprecate_version(self, model_id: int, version: int) -> TxReceipt:
        return self._send("deprecate_version", model_id, version)

    def set_provider(self, url: str) -> TxReceipt:
        return self._send("set_provider", url)

    def transfer_from(self, owner: str, to: str, model_id: int) -> TxReceipt:
        return self._send("transferFrom", owner, to, model_id)

    def owner_of(self, model_id: int) -> ChecksumAddress:
        return Web3.to_checksum_address(self._call("ownerOf", model_id))

    def balance_of(self, account: str) -> int:
        return int(self._call("balanceOf", account))

    def total_models(self) -> int:
        return int(self._call("total_models"))

    def version_count(self, model_id: int) -> int:
        return int(self._call("version_count", model_id))

    def version_commitment(self, model_id: int, version: int) -> bytes:
        return bytes(self._call("version_commitment", model_id, version))

    def is_deprecated(self, model_id: int, version: int) -> bool:
        return bool(self._call("is_deprecated", model_id, version))

    def lineage(self, model_id: int) -> list[tuple[ModelId, int]]:
        """The model's parents, each with its royalty share in basis points."""
        parents, shares = self._call("lineage", model_id)
        return [(ModelId(p), int(s)) for p, s in zip(parents, shares, strict=True)]

    def provider_url(self, account: str) -> str:
        return str(self._call("provider_url", account))

    def provider_of(self, model_id: int) -> str:
        return str(self._call("provider_of", model_id))


class Marketplace(_ContractClient):
    """Listings, escrowed purchases, key delivery, refunds and payouts."""

    artifact_name = "marketplace"

    def publish(
        self,
        digests: VersionDigests,
        price: int,
        *,
        license_duration: int = 0,
        parents: Sequence[int] = (),
        royalty_bps: Sequence[int] = (),
        terms_digest: bytes = NO_DIGEST,
        metadata_digest: bytes = NO_DIGEST,
    ) -> ModelId:
        """Publishes and lists a model in one transaction; returns its id.

        `terms_digest` is the sha256 of the licence terms buyers commit to, and
        `metadata_digest` that of the ERC-721 metadata JSON `tokenURI` names.
        """
        receipt = self._send(
            "publish",
            *digests.as_args(),
            list(parents),
            list(royalty_bps),
            price,
            license_duration,
            terms_digest,
            metadata_digest,
        )
        return ModelId(self.events(receipt, "Listed")[0]["args"]["model_id"])

    def set_listing(
        self,
        model_id: int,
        price: int,
        license_duration: int = 0,
        for_sale: bool = True,
        terms_digest: bytes = NO_DIGEST,
        metadata_digest: bytes = NO_DIGEST,
    ) -> TxReceipt:
        """Sets the listing; a non-zero `metadata_digest` also replaces the token's
        ERC-721 metadata (the registry logs `MetadataUpdate`)."""
        return self._send(
            "set_listing",
            model_id,
            price,
            license_duration,
            for_sale,
            terms_digest,
            metadata_digest,
        )

    def listing(self, model_id: int) -> Listing:
        price, duration, for_sale, fee_bps = self._call("listing", model_id)
        return Listing(TokenAmount(price), int(duration), bool(for_sale), int(fee_bps))

    def listing_terms(self, model_id: int) -> bytes:
        """The first 13 bytes of the listing's licence terms digest, then zeros."""
        return bytes(self._call("listing_terms", model_id))

    def decline(self, model_id: int, buyer: str, reason_code: int) -> TxReceipt:
        """Refuses a pending purchase (owner or agent): the buyer is refunded at once."""
        return self._send("decline", model_id, buyer, reason_code)

    def purchase(self, model_id: int, terms: int, buyer_key: bytes) -> TxReceipt:
        """Buys a license on `terms` (from `Listing.terms`), paying into escrow."""
        return self._send("purchase", model_id, terms, buyer_key)

    def purchase_with_permit(
        self, model_id: int, terms: int, buyer_key: bytes, token: Token, deadline: int
    ) -> TxReceipt:
        """Signs a permit for the terms' maximum price and buys in one transaction."""
        if self.sender is None:
            raise ChainError("Cannot buy: this client has no account to send from.")
        max_price = terms & MAX_PRICE
        v, r, s = token.sign_permit(self.sender.account, self.address, max_price, deadline)
        return self._send(
            "purchase_with_permit", model_id, terms, buyer_key, max_price, deadline, v, r, s
        )

    def deliver(self, model_id: int, buyer: str, version: int, wrapped_key: bytes) -> TxReceipt:
        return self._send("deliver", model_id, buyer, version, wrapped_key)

    def deliver_many(self, deliveries: Sequence[Delivery]) -> TxReceipt:
        return self._send(
            "deliver_many",
            [(d.model_id, d.buyer, d.version, d.wrapped_key) for d in deliveries],
        )

    def deliver_many_tx(self, deliveries: Sequence[Delivery]) -> TxParams:
        """`deliver_many` as an unsigned transaction (for a sender that tracks it until
        mined, like the seller's agent), its gas estimated.

        Raises:
            ChainError: This client has no account to send from.
            ContractRevertError: The marketplace refuses one of the deliveries now.
        """
        return self._build(
            "deliver_many",
            [(d.model_id, d.buyer, d.version, d.wrapped_key) for d in deliveries],
        )

    def decline_tx(self, model_id: int, buyer: str, reason_code: int) -> TxParams:
        """`decline` as an unsigned transaction (for the seller's agent, which tracks it
        until mined), its gas estimated.

        Raises:
            ChainError: This client has no account to send from.
            ContractRevertError: The marketplace refuses it now (not pending, not ours).
        """
        return self._build("decline", model_id, buyer, reason_code)

    def refund(self, model_id: int, buyer: str) -> TxReceipt:
        return self._send("refund", model_id, buyer)

    def withdraw(self) -> TxReceipt:
        return self._send("withdraw")

    def set_agent(self, agent: str) -> TxReceipt:
        return self._send("set_agent", agent)

    def set_protocol_fee(self, fee_bps: int) -> TxReceipt:
        return self._send("set_protocol_fee", fee_bps)

    def has_license(self, account: str, model_id: int) -> bool:
        return bool(self._call("has_license", account, model_id))

    def license(self, buyer: str, model_id: int) -> License:
        state, price, time, fee_bps = self._call("license", buyer, model_id)
        return License(LicenseState(state), TokenAmount(price), int(time), int(fee_bps))

    def credits(self, account: str) -> TokenAmount:
        return TokenAmount(self._call("credits", account))

    def agent_of(self, owner: str) -> ChecksumAddress:
        return Web3.to_checksum_address(self._call("agent_of", owner))

    def protocol_fee_bps(self) -> int:
        return int(self._call("protocol_fee_bps"))

    def delivery_window(self) -> int:
        return int(self._call("DELIVERY_WINDOW"))


class Reviews(_ContractClient):
    """Reviews by license holders and evaluations by anyone."""

    artifact_name = "reviews"

    def review(self, model_id: int, rating: int, text_cid_digest: bytes) -> TxReceipt:
        return self._send("review", model_id, rating, text_cid_digest)

    def attest(
        self, model_id: int, version: int, dataset_cid_digest: bytes, metric: str, score: int
    ) -> TxReceipt:
        """Attests an evaluation; `score` is fixed-point with 6 decimals (0.93 -> 930000)."""
        metric_id = metric.encode().ljust(32, b"\0")
        if len(metric_id) > 32:
            raise ValueError(f"Metric name {metric!r} is longer than 32 bytes; shorten it.")
        return self._send("attest", model_id, version, dataset_cid_digest, metric_id, score)

    def rating_of(self, model_id: int, reviewer: str) -> int:
        return int(self._call("rating_of", model_id, reviewer))


class ReportReason(enum.IntEnum):
    """Why a model is reported; values match the reports contract."""

    ILLEGAL_CONTENT = 1
    MALWARE = 2
    LICENSE_VIOLATION = 3
    PERSONAL_DATA = 4
    OTHER = 5


class Reports(_ContractClient):
    """Reports on models, filed by anyone; each node decides what they mean to it."""

    artifact_name = "reports"

    def report(
        self, model_id: int, reason: ReportReason, evidence_cid_digest: bytes = bytes(32)
    ) -> TxReceipt:
        return self._send("report", model_id, int(reason), evidence_cid_digest)


class TaskStatus(enum.IntEnum):
    """Where a federated training task stands; values match the federation contract."""

    NONE = 0
    OPEN = 1
    RUNNING = 2
    FINALIZED = 3
    CANCELLED = 4
    ABORTED = 5


@dataclass(frozen=True)
class TaskRecord:
    """A federated training task as the federation contract stores it."""

    task_id: int
    requester: ChecksumAddress
    coordinator: ChecksumAddress
    spec_digest: bytes  # the sha256 digest inside the spec's CID
    reward: TokenAmount
    stake: TokenAmount
    min_participants: int
    max_participants: int
    join_deadline: int  # unix seconds
    finish_deadline: int
    status: TaskStatus
    participants: int
    rounds: int
    contributors: int  # bitmap of the seats any committed round used
    splitter: ChecksumAddress | None  # set by finalize
    parent_model_id: ModelId | None
    parent_royalty_bps: int


class Federation(_ContractClient):
    """Federated training tasks: escrowed rewards, staked seats, rounds, shares, claims."""

    artifact_name = "federation"

    def create_task(
        self,
        spec_digest: bytes,
        reward: int,
        stake: int,
        min_participants: int,
        max_participants: int,
        join_deadline: int,
        finish_deadline: int,
        coordinator: str,
        parent_model_id: int = 0,
        parent_royalty_bps: int = 0,
    ) -> int:
        """Posts a task, pulling `reward` from an allowance; returns the task id."""
        receipt = self._send(
            "create_task",
            spec_digest,
            reward,
            stake,
            min_participants,
            max_participants,
            join_deadline,
            finish_deadline,
            coordinator,
            parent_model_id,
            parent_royalty_bps,
        )
        return int(self.events(receipt, "TaskCreated")[0]["args"]["task_id"])

    def create_task_with_permit(
        self,
        spec_digest: bytes,
        reward: int,
        stake: int,
        min_participants: int,
        max_participants: int,
        join_deadline: int,
        finish_deadline: int,
        coordinator: str,
        parent_model_id: int,
        parent_royalty_bps: int,
        token: Token,
        permit_deadline: int,
    ) -> int:
        """Signs a permit for `reward` and posts the task in one transaction."""
        if self.sender is None:
            raise ChainError("Cannot create a task: this client has no account to send from.")
        v, r, s = token.sign_permit(self.sender.account, self.address, reward, permit_deadline)
        receipt = self._send(
            "create_task_with_permit",
            spec_digest,
            reward,
            stake,
            min_participants,
            max_participants,
            join_deadline,
            finish_deadline,
            coordinator,
            parent_model_id,
            parent_royalty_bps,
            permit_deadline,
            v,
            r,
            s,
        )
        return int(self.events(receipt, "TaskCreated")[0]["args"]["task_id"])

    def register_node_key(self, node_key_hash: bytes) -> TxReceipt:
        """Registers a training node key to the sender, for good (once per key)."""
        return self._send("register_node_key", node_key_hash)

    def node_key_owner(self, node_key_hash: bytes) -> ChecksumAddress | None:
        """The account a training node key is registered to, or None."""
        owner = Web3.to_checksum_address(self._call("node_key_owner", node_key_hash))
        return None if int(owner, 16) == 0 else owner

    def join(self, task_id: int, node_key_hash: bytes) -> int:
        """Takes a seat, pulling the stake from an allowance; returns the seat number."""
        receipt = self._send("join", task_id, node_key_hash)
        return int(self.events(receipt, "Joined")[0]["args"]["seat"])

    def join_with_permit(
        self, task_id: int, node_key_hash: bytes, stake: int, token: Token, permit_deadline: int
    ) -> int:
        """Signs a permit for `stake` and joins in one transaction; returns the seat."""
        if self.sender is None:
            raise ChainError("Cannot join a task: this client has no account to send from.")
        v, r, s = token.sign_permit(self.sender.account, self.address, stake, permit_deadline)
        receipt = self._send(
            "join_with_permit", task_id, node_key_hash, stake, permit_deadline, v, r, s
        )
        return int(self.events(receipt, "Joined")[0]["args"]["seat"])

    def cancel(self, task_id: int) -> TxReceipt:
        return self._send("cancel", task_id)

    def abort(self, task_id: int) -> TxReceipt:
        return self._send("abort", task_id)

    def commit_round(
        self,
        task_id: int,
        round_number: int,
        model_digest: bytes,
        round_digest: bytes,
        contributors: int,
        metric: int,
    ) -> TxReceipt:
        """Commits a round; `contributors` is a bitmap of seats, `metric` is x 1e6."""
        return self._send(
            "commit_round", task_id, round_number, model_digest, round_digest, contributors, metric
        )

    def finalize(self, task_id: int, shares: Sequence[int]) -> ChecksumAddress:
        """Posts the shares by seat (basis points); returns the task's revenue splitter."""
        receipt = self._send("finalize", task_id, list(shares))
        return Web3.to_checksum_address(self.events(receipt, "Finalized")[0]["args"]["splitter"])

    def claim(self, task_id: int) -> TokenAmount:
        """Takes what the sender is owed by an ended task; returns the amount paid."""
        receipt = self._send("claim", task_id)
        return TokenAmount(self.events(receipt, "Claimed")[0]["args"]["amount"])

    def task(self, task_id: int) -> TaskRecord:
        """The task's record (status NONE when it does not exist)."""
        (
            requester,
            coordinator,
            spec_digest,
            reward,
            stake,
            min_participants,
            max_participants,
            join_deadline,
            finish_deadline,
            status,
            participants,
            rounds,
            contributors,
            splitter,
            parent_model_id,
            parent_royalty_bps,
        ) = self._call("task", task_id)
        return TaskRecord(
            task_id=int(task_id),
            requester=Web3.to_checksum_address(requester),
            coordinator=Web3.to_checksum_address(coordinator),
            spec_digest=bytes(spec_digest),
            reward=TokenAmount(reward),
            stake=TokenAmount(stake),
            min_participants=int(min_participants),
            max_participants=int(max_participants),
            join_deadline=int(join_deadline),
            finish_deadline=int(finish_deadline),
            status=TaskStatus(status),
            participants=int(participants),
            rounds=int(rounds),
            contributors=int(contributors),
            splitter=None if int(splitter, 16) == 0 else Web3.to_checksum_address(splitter),
            parent_model_id=ModelId(parent_model_id) if parent_model_id else None,
            parent_royalty_bps=int(parent_royalty_bps),
        )

    def task_count(self) -> int:
        return int(self._call("task_count"))

    def seat_of(self, task_id: int, account: str) -> int | None:
        """The account's seat number, or None without one."""
        found = int(self._call("seat_of", task_id, account))
        return found - 1 if found else None

    def seat_of_key(self, task_id: int, node_key_hash: bytes) -> int | None:
        """The seat a training node key is bound to, or None."""
        found = int(self._call("seat_of_key", task_id, node_key_hash))
        return found - 1 if found else None

    def claimable(self, task_id: int, account: str) -> TokenAmount:
        return TokenAmount(self._call("claimable", task_id, account))

    def share_of(self, task_id: int, account: str) -> int:
        """The account's share of a finalized task, in basis points."""
        return int(self._call("share_of", task_id, account))


class RevenueSplitter(_ContractClient):
    """One finalized task's trained model, owned for its contributors."""

    artifact_name = "revenue_splitter"

    def publish_model(
        self, digests: VersionDigests, price: int, license_duration: int = 0
    ) -> ModelId:
        """Publishes and lists the model, owned by the splitter; coordinator only, once."""
        receipt = self._send("publish_model", *digests.as_args(), price, license_duration)
        return ModelId(self.events(receipt, "ModelPublished")[0]["args"]["model_id"])

    def set_provider(self, url: str) -> TxReceipt:
        return self._send("set_provider", url)

    def release(self, account: str) -> TokenAmount:
        """Pays `account` its share of the model's sales so far; returns the amount."""
        receipt = self._send("release", account)
        return TokenAmount(self.events(receipt, "Released")[0]["args"]["amount"])

    def releasable(self, account: str) -> TokenAmount:
        return TokenAmount(self._call("releasable", account))

    def released(self, account: str) -> TokenAmount:
        return TokenAmount(self._call("released", account))

    def model_id(self) -> ModelId | None:
        found = int(self._call("model_id"))
        return ModelId(found) if found else None


@dataclass(frozen=True)
class MercatoContracts:
    """The contracts of one deployment, bound to one sender."""

    token: Token
    registry: ModelRegistry
    marketplace: Marketplace
    reviews: Reviews
    # None on a deployment recorded before the reports contract existed.
    reports: Reports | None = None
    # None on a deployment recorded before federated training existed.
    federation: Federation | None = None

    @classmethod
    def connect(
        cls, w3: Web3, deployment: Deployment, sender: Web3Backend | None = None
    ) -> MercatoContracts:
        return cls(
            token=Token(w3, deployment.token, sender),
            registry=ModelRegistry(w3, deployment.model_registry, sender),
            marketplace=Marketplace(w3, deployment.marketplace, sender),
            reviews=Reviews(w3, deployment.reviews, sender),
            reports=Reports(w3, deployment.reports, sender) if deployment.reports else None,
            federation=(
                Federation(w3, deployment.federation, sender) if deployment.federation else None
            ),
        )
