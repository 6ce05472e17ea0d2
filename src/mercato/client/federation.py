# SPDX-License-Identifier: AGPL-3.0-only
"""`market.federation`: federated training tasks on-chain.

A requester posts a task (its spec's CID, a reward, a stake per seat, deadlines and a
coordinator); data owners join with the hash of their training node's public key; the
coordinator commits every round and finalizes with each seat's share; everyone claims.
The trained model is published through the task's revenue splitter, which owns it and
pays its sales to the contributors. Running the training itself is `mercato.federation`.

Digests on-chain are the sha256 inside a CID: specs and round records are raw-codec
CIDv1 blocks, so `rounds()` and `task()` give their CIDs back. A round model is one raw
block up to 2 MiB, else a UnixFS file whose root block has the committed digest:
`RoundRecord.model_cid` spells that digest as a raw CID (the root block), and
`mercato.federation.spec.blob_cid_for_root` gives the file's CID from that block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eth_typing import ChecksumAddress
from multiformats import CID, multihash
from web3 import Web3

from mercato.chain.contracts import (
    Federation,
    ModelId,
    RevenueSplitter,
    TaskRecord,
    TaskStatus,
    TokenAmount,
)
from mercato.client.models import load_named_package
from mercato.errors import (
    FederationInputError,
    FederationNotDeployedError,
    FederationTaskNotFoundError,
    InsufficientBalanceError,
    NodeKeyTakenError,
)
from mercato.models.package import ModelPackage

if TYPE_CHECKING:
    from mercato.client.market import Market
    from mercato.federation.evidence import Verification

BPS = 10_000
MAX_SEATS = 128  # the federation contract's MAX_PARTICIPANTS
MAX_AMOUNT = 2**96 - 1  # rewards and stakes are 96-bit fields
METRIC_SCALE = 1_000_000
PERMIT_LIFETIME = 3_600  # seconds a create/join permit stays valid
_SHA2_256 = multihash.get("sha2-256")


@dataclass(frozen=True)
class FederationTask:
    """A federated training task as the chain records it.

    Attributes:
        spec_cid: The raw-codec CIDv1 of the task's JSON spec.
        contributors: The seats any committed round used.
        splitter: The revenue splitter, once finalized.
        result_model_id: The trained model, once the coordinator published it.
    """

    task_id: int
    requester: ChecksumAddress
    coordinator: ChecksumAddress
    spec_cid: CID
    reward: TokenAmount
    stake: TokenAmount
    min_participants: int
    max_participants: int
    join_deadline: int
    finish_deadline: int
    status: TaskStatus
    participants: int
    rounds: int
    contributors: frozenset[int]
    splitter: ChecksumAddress | None
    parent_model_id: ModelId | None
    parent_royalty_bps: int
    result_model_id: ModelId | None


@dataclass(frozen=True)
class Participant:
    """One seat of a task, from its `Joined` event."""

    seat: int
    account: ChecksumAddress
    node_key_hash: bytes
    block_number: int


@dataclass(frozen=True)
class RoundRecord:
    """One committed round, from its `RoundCommitted` event."""

    round: int
    model_cid: CID
    round_cid: CID
    contributors: frozenset[int]
    metric: float
    block_number: int
    tx_hash: str


def raw_cid(digest: bytes) -> CID:
    """The raw-codec sha2-256 CIDv1 whose digest the federation contract stores."""
    return CID("base32", 1, "raw", _SHA2_256.wrap(bytes(digest)))


def cid_sha256(cid: CID | str, what: str) -> bytes:
    """The sha256 digest inside a CID.

    Raises:
        FederationInputError: Not a CID, or not a sha2-256 one.
    """
    try:
        decoded = cid if isinstance(cid, CID) else CID.decode(str(cid))
    except (ValueError, KeyError) as exc:
        raise FederationInputError(f"The {what} {cid!r} is not a CID.") from exc
    if decoded.hashfun.name != "sha2-256":
        raise FederationInputError(
            f"The {what} {decoded} is hashed with {decoded.hashfun.name}; the chain records "
            "sha2-256 digests only. Store it with Mercato (raw block or UnixFS file)."
        )
    return bytes(multihash.unwrap(bytes(decoded.digest)))


def contributors_bitmap(seats: set[int] | frozenset[int], participants: int) -> int:
    """The `commit_round` bitmap of `seats`.

    Raises:
        FederationInputError: A seat is not one of the task's taken seats.
    """
    bitmap = 0
    for seat in seats:
        if not isinstance(seat, int) or not 0 <= seat < participants:
            raise FederationInputError(
                f"Seat {seat!r} is not a taken seat of this task (seats 0 to {participants - 1})."
            )
        bitmap |= 1 << seat
    return bitmap


def seats_of(bitmap: int) -> frozenset[int]:
    return frozenset(seat for seat in range(bitmap.bit_length()) if bitmap >> seat & 1)


class FederationAPI:
    """Federated training tasks for one `Market` (see the module docstring)."""

    def __init__(self, market: Market) -> None:
        self._market = market

    # -- requester ------------------------------------------------------------------

    def create(
        self,
        spec_cid: CID | str,
        *,
        reward: int,
        stake: int,
        min_participants: int,
        max_participants: int,
        join_deadline: int,
        finish_deadline: int,
        coordinator: str | None = None,
        parent_model_id: int | None = 0,
        parent_royalty_bps: int = 0,
    ) -> int:
        """Posts a task and escrows its reward (an EIP-2612 permit when no allowance).

        Args:
            spec_cid: The CID of the task's spec (a raw-codec CIDv1 from `store_spec`).
            reward: MCT base units shared by the contributors.
            stake: MCT base units each participant locks.
            min_participants: Seats needed to start (1 to max_participants).
            max_participants: Seats at most (up to 128).
            join_deadline: Unix time after which nobody joins (the chain's clock).
            finish_deadline: Unix time by which the task must be finalized.
            coordinator: Who commits rounds and finalizes; defaults to this account.
            parent_model_id: The model the task starts from (0 or None: none).
            parent_royalty_bps: The parent's royalty on the result's sales.

        Returns:
            The new task's id.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency for gas.
            FederationNotDeployedError: This deployment has no federation contract.
            FederationInputError: An argument the contract would refuse (nothing sent).
            InsufficientBalanceError: Not enough MCT for the reward.
            ContractRevertError: The contract refused (e.g. a deadline already passed).
        """
        fed = self._contract()
        account = self._market.require_signer("create a federated task")
        digest = cid_sha256(spec_cid, "spec CID")
        _check_amount(reward, "reward")
        _check_amount(stake, "stake")
        if not 1 <= min_participants <= max_participants <= MAX_SEATS:
            raise FederationInputError(
                f"Participants must satisfy 1 <= min ({min_participants}) <= max "
                f"({max_participants}) <= {MAX_SEATS}."
            )
        parent = int(parent_model_id or 0)
        if not 0 <= parent_royalty_bps <= 5_000 or (parent == 0 and parent_royalty_bps):
            raise FederationInputError(
                f"A parent royalty of {parent_royalty_bps} bps needs a parent model and "
                "must be between 0 and 5,000 (50%)."
            )
        chosen = Web3.to_checksum_address(coordinator or account.address)
        token = self._market.contracts.token
        balance = token.balance_of(account.address)
        if balance < reward:
            raise InsufficientBalanceError(balance, reward, self._market.is_local_chain)
        args = (
            digest,
            reward,
            stake,
            min_participants,
            max_participants,
            join_deadline,
            finish_deadline,
            chosen,
            parent,
            parent_royalty_bps,
        )
        if reward == 0 or token.allowance(account.address, fed.address) >= reward:
            return fed.create_task(*args)
        return fed.create_task_with_permit(*args, token, self._chain_now() + PERMIT_LIFETIME)

    def cancel(self, task_id: int) -> None:
        """Calls an open task off (requester only, until the join deadline); everyone
        then claims their tokens back.

        Raises:
            NoAccountError: The market is read-only.
            FederationNotDeployedError: This deployment has no federation contract.
            ContractRevertError: Not the requester, training started, or too late.
        """
        self._market.require_signer("cancel a federated task")
        self._contract().cancel(task_id)

    def abort(self, task_id: int) -> None:
        """Ends a task that cannot finish (too few seats by the join deadline, or not
        finalized by the finish deadline); anyone may.

        Raises:
            NoAccountError: The market is read-only.
            FederationNotDeployedError: This deployment has no federation contract.
            ContractRevertError: The task can still finish, or has ended.
        """
        self._market.require_signer("abort a federated task")
        self._contract().abort(task_id)

    # -- data owner -----------------------------------------------------------------

    def join(self, task_id: int, node_key_hash: bytes) -> int:
        """Takes a seat: registers the node key to this account the first time it is
        used, then stakes (an EIP-2612 permit when no allowance) and binds it.

        Joining a task this account already sits in returns its seat and sends nothing.

        Args:
            task_id: The task.
            node_key_hash: The sha256 of the training node's public key
                (`mercato.federation.keys.node_key_hash`).

        Returns:
            The seat number (seats count from 0 in join order).

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency for gas.
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            FederationInputError: The key hash is not 32 bytes.
            NodeKeyTakenError: Another account registered this key first.
            InsufficientBalanceError: Not enough MCT for the stake.
            ContractRevertError: Too late, full, or training started.
        """
        fed = self._contract()
        account = self._market.require_signer("join a federated task")
        key = bytes(node_key_hash)
        if len(key) != 32 or key == bytes(32):
            raise FederationInputError(
                "A node key hash is the 32-byte sha256 of the node's public key, not "
                f"{len(key)} bytes.",
                task_id=task_id,
            )
        task = self._record(task_id)
        seat = fed.seat_of(task_id, account.address)
        if seat is not None:
            return seat
        owner = fed.node_key_owner(key)
        if owner is not None and owner != account.address:
            raise NodeKeyTakenError(key, owner)
        token = self._market.contracts.token
        balance = token.balance_of(account.address)
        if balance < task.stake:
            raise InsufficientBalanceError(balance, task.stake, self._market.is_local_chain)
        if owner is None:
            fed.register_node_key(key)
        if task.stake == 0 or token.allowance(account.address, fed.address) >= task.stake:
            return fed.join(task_id, key)
        deadline = self._chain_now() + PERMIT_LIFETIME
        return fed.join_with_permit(task_id, key, task.stake, token, deadline)

    def claim(self, task_id: int) -> int:
        """Takes what an ended task owes this account (stake and reward share, or a
        refund after a cancel or abort). A seat whose share at finalize was 0 forfeited
        its stake and is owed nothing.

        Returns:
            The amount paid, in MCT base units.

        Raises:
            NoAccountError: The market is read-only.
            FederationNotDeployedError: This deployment has no federation contract.
            ContractRevertError: The task has not ended, or owes nothing (claimed
                already, no seat, or a share of 0).
        """
        self._market.require_signer("claim from a federated task")
        return int(self._contract().claim(task_id))

    def claimable(self, task_id: int, account: str | None = None) -> int:
        """What `claim` would pay `account` (default: this market's account) now.

        Raises:
            FederationNotDeployedError: This deployment has no federation contract.
            NoAccountError: No account given and the market is read-only.
        """
        who = account or self._market.require_account("read what a task owes").address
        return int(self._contract().claimable(task_id, Web3.to_checksum_address(who)))

    def release(self, task_id: int, account: str | None = None) -> int:
        """Pays `account` (default: this market's account) its share of the sales of the
        task's model so far; anyone may send it.

        Returns:
            The amount paid.

        Raises:
            NoAccountError: The market is read-only.
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            FederationInputError: The task has no revenue splitter yet (not finalized).
            ContractRevertError: Nothing to release for this account.
        """
        signer = self._market.require_signer("release a task's model revenue")
        splitter = self._splitter(self._record(task_id))
        return int(splitter.release(Web3.to_checksum_address(account or signer.address)))

    def releasable(self, task_id: int, account: str | None = None) -> int:
        """What `release` would pay `account` now (0 before the task is finalized).

        Raises:
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            NoAccountError: No account given and the market is read-only.
        """
        who = account or self._market.require_account("read model revenue").address
        record = self._record(task_id)
        if record.splitter is None:
            return 0
        return int(self._splitter(record).releasable(Web3.to_checksum_address(who)))

    # -- coordinator ----------------------------------------------------------------

    def commit_round(
        self,
        task_id: int,
        round_number: int,
        model_cid: CID | str,
        round_cid: CID | str,
        contributors: set[int] | frozenset[int],
        metric: float,
    ) -> None:
        """Commits one round (coordinator only, in order from 1, before the finish
        deadline); the first round closes joining.

        Args:
            task_id: The task.
            round_number: The round number.
            model_cid: The CID of the global model (ONNX) after the round.
            round_cid: The CID of the round's record (who took part, with what).
            contributors: The seats whose update the round used.
            metric: The global model's metric after the round (stored x 1e6).

        Raises:
            NoAccountError: The market is read-only.
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            FederationInputError: A seat not taken, a CID not sha2-256, or a metric
                that is negative or not a number (nothing sent).
            ContractRevertError: Not the coordinator, out of order, or too late.
        """
        self._market.require_signer("commit a training round")
        record = self._record(task_id)
        bitmap = contributors_bitmap(contributors, record.participants)
        if not math.isfinite(metric) or metric < 0:
            raise FederationInputError(
                f"The round's metric must be a finite number >= 0, not {metric!r}.",
                task_id=task_id,
            )
        self._contract().commit_round(
            task_id,
            round_number,
            cid_sha256(model_cid, "model CID"),
            cid_sha256(round_cid, "round record CID"),
            bitmap,
            round(metric * METRIC_SCALE),
        )

    def finalize(self, task_id: int, shares: list[int]) -> ChecksumAddress:
        """Posts each seat's share in basis points (coordinator only) and creates the
        task's revenue splitter.

        Args:
            task_id: The task.
            shares: One share per seat, by seat, summing to 10,000; a seat that never
                contributed must have 0, and every seat given 0 forfeits its stake to
                the seats with a share.

        Returns:
            The revenue splitter's address.

        Raises:
            NoAccountError: The market is read-only.
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            FederationInputError: Wrong count, a share out of range, a sum other than
                10,000, or a share for a seat that never contributed (nothing sent).
            ContractRevertError: Not the coordinator, not running, or too late.
        """
        self._market.require_signer("finalize a federated task")
        record = self._record(task_id)
        posted = [int(s) for s in shares]
        if len(posted) != record.participants:
            raise FederationInputError(
                f"Task {task_id} has {record.participants} seats; give one share for each, "
                f"not {len(posted)}.",
                task_id=task_id,
            )
        if any(not 0 <= s <= BPS for s in posted) or sum(posted) != BPS:
            raise FederationInputError(
                f"Shares are basis points from 0 to 10,000 summing to 10,000; these sum to "
                f"{sum(posted):,}.",
                task_id=task_id,
            )
        outsiders = [
            seat
            for seat, share in enumerate(posted)
            if share and not (record.contributors >> seat) & 1
        ]
        if outsiders:
            raise FederationInputError(
                f"Seats {outsiders} never contributed to a committed round, so their share "
                "must be 0 (their stake goes to the others).",
                task_id=task_id,
            )
        return self._contract().finalize(task_id, posted)

    def publish_result(
        self,
        task_id: int,
        model_dir: str | Path | ModelPackage,
        *,
        price: int,
        license_duration: int = 0,
        name: str | None = None,
    ) -> ModelId:
        """Publishes the trained model through the task's revenue splitter: the splitter
        owns it (its sales pay the contributors), the task's parent model is its parent,
        and this account is named its delivering agent.

        The package is stored like `market.models.publish` stores one, encrypted when
        priced, with the content key kept for the splitter, so this node's seller agent
        delivers the keys of its sales.

        Args:
            task_id: A finalized task this account coordinates.
            model_dir: The package directory (ONNX + README.md card), or a package.
            price: Price in MCT base units; 0 publishes it free.
            license_duration: License length in seconds; 0 is perpetual.
            name: The model's name; defaults to the card's title.

        Returns:
            The new model's id.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency for gas.
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            FederationInputError: The task is not finalized, its model is published
                already, or this account is not its coordinator (nothing sent).
            ModelPackageError: The package is invalid.
            ContractRevertError: The splitter or marketplace refused.
        """
        account = self._market.require_signer("publish a task's model")
        record = self._record(task_id)
        splitter = self._splitter(record)
        if record.coordinator != account.address:
            raise FederationInputError(
                f"Only task {task_id}'s coordinator {record.coordinator} publishes its model.",
                task_id=task_id,
            )
        if splitter.model_id() is not None:
            raise FederationInputError(
                f"Task {task_id}'s model is published already (model {splitter.model_id()}).",
                task_id=task_id,
            )
        package = (
            model_dir
            if isinstance(model_dir, ModelPackage)
            else load_named_package(model_dir, name)
        )
        # The key is staged for the splitter, the model's owner-to-be: this node binds it
        # only to a version sent by the agent the splitter names (mercato.client.sale_keys).
        stored = self._market.models._store_package(
            package, encrypt=price > 0, progress=None, owner=splitter.address
        )
        url = self._market.settings.public_url
        if self._market.contracts.registry.provider_url(splitter.address) != url:
            splitter.set_provider(url)
        return splitter.publish_model(stored.digests, price, license_duration)

    # -- reading --------------------------------------------------------------------

    def task(self, task_id: int) -> FederationTask:
        """The task as the chain records it.

        Raises:
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
        """
        record = self._record(task_id)
        result = None
        if record.splitter is not None:
            result = RevenueSplitter(self._market.w3, record.splitter).model_id()
        return FederationTask(
            task_id=record.task_id,
            requester=record.requester,
            coordinator=record.coordinator,
            spec_cid=raw_cid(record.spec_digest),
            reward=record.reward,
            stake=record.stake,
            min_participants=record.min_participants,
            max_participants=record.max_participants,
            join_deadline=record.join_deadline,
            finish_deadline=record.finish_deadline,
            status=record.status,
            participants=record.participants,
            rounds=record.rounds,
            contributors=seats_of(record.contributors),
            splitter=record.splitter,
            parent_model_id=record.parent_model_id,
            parent_royalty_bps=record.parent_royalty_bps,
            result_model_id=result,
        )

    def tasks(self) -> list[FederationTask]:
        """Every task on the chain, oldest first (for search, use the index).

        Raises:
            FederationNotDeployedError: This deployment has no federation contract.
        """
        return [self.task(i) for i in range(1, self._contract().task_count() + 1)]

    def participants(self, task_id: int) -> list[Participant]:
        """The task's seats in order, each with the node key it bound.

        Raises:
            FederationNotDeployedError: This deployment has no federation contract.
        """
        found = self._market.logs(self._contract(), "Joined", task_id=task_id)
        return [
            Participant(
                seat=int(e["args"]["seat"]),
                account=Web3.to_checksum_address(e["args"]["participant"]),
                node_key_hash=bytes(e["args"]["node_key_hash"]),
                block_number=int(e["blockNumber"]),
            )
            for e in found
        ]

    def rounds(self, task_id: int) -> list[RoundRecord]:
        """The task's committed rounds in order.

        Raises:
            FederationNotDeployedError: This deployment has no federation contract.
        """
        found = self._market.logs(self._contract(), "RoundCommitted", task_id=task_id)
        return [
            RoundRecord(
                round=int(e["args"]["round"]),
                model_cid=raw_cid(bytes(e["args"]["model_digest"])),
                round_cid=raw_cid(bytes(e["args"]["round_digest"])),
                contributors=seats_of(int(e["args"]["contributors"])),
                metric=int(e["args"]["metric"]) / METRIC_SCALE,
                block_number=int(e["blockNumber"]),
                tx_hash="0x" + bytes(e["transactionHash"]).hex(),
            )
            for e in found
        ]

    # -- scored tasks: the validation set and the evidence ---------------------------

    def reveal_validation(self, task_id: int, account: str | None = None) -> CID:
        """Makes an ended scored task's validation set public: this node's store (which
        its gateway serves) gets the private copy `mercato fl create --validation` kept.

        Args:
            task_id: A scored task this account requested, finalized, cancelled or aborted.
            account: The requester's address (default: this market's account); no
                transaction is sent, the file is this node's own.

        Returns:
            The validation set's CID (the one the spec committed to).

        Raises:
            NoAccountError: No account given or selected.
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            FederationInputError: Not this account's task, not scored, or not ended yet
                (revealed earlier, participants could tune their updates to it).
            FederationSpecError: The task's spec is not in this node's store.
            ValidationSetUnavailableError: This node does not hold the file.
        """
        from mercato.errors import FederationSpecError, ValidationSetUnavailableError
        from mercato.federation.spec import is_scored, load_spec, scoring_of, store_bytes
        from mercato.federation.validation import kept_validation

        who = account or self._market.require_account("reveal a task's validation set").address
        task = self.task(task_id)
        if task.requester.lower() != str(who).lower():
            raise FederationInputError(
                f"Only task {task_id}'s requester {task.requester} reveals its validation set.",
                task_id=task_id,
            )
        store = self._market.store
        if not store.has(task.spec_cid):
            raise FederationSpecError(f"Task {task_id}'s spec {task.spec_cid} is not here.")
        spec = load_spec(store.get(task.spec_cid))
        if not is_scored(spec):
            raise FederationInputError(
                f"Task {task_id} is not scored: it has no validation set to reveal.",
                task_id=task_id,
            )
        if task.status not in (TaskStatus.FINALIZED, TaskStatus.CANCELLED, TaskStatus.ABORTED):
            raise FederationInputError(
                f"Task {task_id} has not ended ({task.status.name.lower()}); its validation "
                "set is revealed only after the last round, so nobody can fit their updates "
                "to it. Reveal it once the task is finalized.",
                task_id=task_id,
            )
        cid = scoring_of(spec).validation_cid
        data = kept_validation(self._market.settings.data_dir, cid)
        if data is None:
            raise ValidationSetUnavailableError(
                task_id,
                f"this node keeps no copy of {cid} (it is kept by the node that ran 'mercato "
                "fl create --validation')",
            )
        return store_bytes(store, data)

    def scored_shares(self, task_id: int) -> list[int]:
        """A scored task's shares by seat, from the evidence its committed rounds name
        (what `finalize` should post, and what `verify` checks it posted).

        Raises:
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            FederationError: A round's evidence is not reachable, unreadable, or nobody's
                total score is positive.
        """
        from mercato.client.metadata import fetch_from_accounts
        from mercato.errors import FederationError
        from mercato.federation.evidence import RoundEvidence, shares_from_evidence
        from mercato.storage.cids import MAX_BLOCK_SIZE

        task = self.task(task_id)
        records = []
        for committed in self.rounds(task_id):
            cid = committed.round_cid
            if not fetch_from_accounts(self._market, cid, [task.coordinator], MAX_BLOCK_SIZE):
                raise FederationError(
                    f"Round {committed.round}'s evidence {cid} of task {task_id} is not "
                    "reachable from its coordinator's node."
                )
            records.append(RoundEvidence.from_json_bytes(bytes(self._market.store.get(cid))))
        return shares_from_evidence(records, task.participants)

    def verify(
        self,
        task_id: int,
        *,
        validation: str | Path | None = None,
        data: str | Path | None = None,
        account: str | None = None,
        updates: str | Path | None = None,
    ) -> Verification:
        """Checks a scored task's published evidence (anyone may).

        Every committed round's evidence is fetched by the CID the chain holds (from this
        node's store, else the coordinator's or requester's node) and checked against the
        chain and the spec; the validation set (the file given, else the revealed one)
        against the spec's CID; finalized shares against the published scores. With
        `data`, the participant's own leave-one-out score is recomputed for every round
        it took part in, from its own file (`evidence.verify_task`). With `updates` (or
        `data` for a task with local DP, whose noise cannot be retrained: then this
        node's own `<data dir>/federation/task-<id>/updates`), the seat's update digest
        and score are checked against the updates its node kept as sent
        (`mercato.federation.updates`). Every round's global model is fetched by the
        digest on-chain and re-hashed (a model above one block is a UnixFS file).

        Args:
            task_id: The task.
            validation: The validation file (default: fetch the revealed one).
            data: A participant's own data file, to recompute its scores.
            account: Whose seat `data` is (default: this market's account).
            updates: The directory of the updates the seat's node kept as sent.

        Returns:
            What was checked (`mercato.federation.evidence.Verification`).

        Raises:
            FederationNotDeployedError: This deployment has no federation contract.
            FederationTaskNotFoundError: No such task.
            FederationInputError: The task is not scored, or the account has no seat.
            FederationSpecError: The spec cannot be had.
            FederationEvidenceError: A round or the shares disagree (the message names it).
            OwnUpdateMismatchError: With kept updates, the seat's digest or score is not
                what the update its node sent gives.
            ValidationSetUnavailableError: `data` given but the validation set is not
                revealed yet and no file was given.
            ValidationSetMismatchError: The validation file is not the committed one.
            LocalDataError: A file is unreadable or not of the task's schema.
            FederationError: A record the chain names cannot be fetched.
        """
        from mercato.client.metadata import MAX_SPEC, fetch_from_accounts
        from mercato.errors import (
            BlockNotFoundError,
            FederationError,
            FederationSpecError,
            LocalDataError,
            ValidationSetUnavailableError,
        )
        from mercato.federation.data import load_local_data
        from mercato.federation.evidence import CommittedRound, verify_task
        from mercato.federation.learning import initial_params, params_from_onnx
        from mercato.federation.privacy import settings_of
        from mercato.federation.spec import (
            MAX_BLOB_BYTES,
            blob_cid_for_root,
            is_scored,
            load_spec,
            read_blob,
            scoring_of,
        )
        from mercato.federation.updates import kept_updates
        from mercato.storage.cids import MAX_BLOCK_SIZE

        market = self._market
        task = self.task(task_id)
        parties = [task.coordinator, task.requester]
        if not fetch_from_accounts(market, task.spec_cid, parties, 2 * MAX_SPEC):
            raise FederationSpecError(
                f"Task {task_id}'s spec {task.spec_cid} is not reachable from its requester's "
                "or coordinator's node."
            )
        spec = load_spec(market.store.get(task.spec_cid))
        if not is_scored(spec):
            raise FederationInputError(
                f"Task {task_id} is not scored (no validation set in its spec): there is no "
                "evidence to verify.",
                task_id=task_id,
            )

        def fetch(cid_text: str) -> bytes:
            # A record (one raw block) or a model or parameter file (one raw block, or a
            # UnixFS file above the block limit): every block is verified as it is read.
            cid = CID.decode(cid_text)
            for refetch in (False, True):
                if not fetch_from_accounts(
                    market, cid, parties, MAX_BLOB_BYTES + MAX_BLOCK_SIZE, refetch=refetch
                ):
                    break
                try:
                    return read_blob(market.store, cid)
                except BlockNotFoundError:
                    continue  # the root is here, a chunk is not: fetch the whole DAG
            raise FederationError(
                f"Task {task_id}'s record {cid_text} is not in this node's store and its "
                "coordinator's node does not serve it now; try again when it is up."
            )

        def fetch_model(cid_text: str) -> bytes:
            # The chain holds the model's digest: the root block says whether it is the
            # model itself or a UnixFS file's root (`spec.blob_cid_for_root`).
            root = CID.decode(cid_text)
            if not fetch_from_accounts(market, root, parties, MAX_BLOCK_SIZE + 1024):
                raise FederationError(
                    f"Task {task_id}'s global model {cid_text} is not in this node's store "
                    "and its coordinator's node does not serve it now; try again when it is up."
                )
            digest = cid_sha256(root, "model CID")
            return fetch(str(blob_cid_for_root(digest, bytes(market.store.get(root)))))

        expected = scoring_of(spec).validation_cid
        revealed: bytes | None = None
        if validation is not None:
            try:
                revealed = Path(validation).read_bytes()
            except OSError as exc:
                raise LocalDataError(validation, f"it cannot be read ({exc})") from exc
        elif fetch_from_accounts(
            market, CID.decode(expected), [task.requester, task.coordinator], MAX_BLOCK_SIZE + 1024
        ):
            revealed = bytes(market.store.get(CID.decode(expected)))
        seat = None
        local = None
        kept_dir = Path(updates) if updates is not None else None
        if data is not None and kept_dir is None and settings_of(spec).local_dp:
            # Local DP: the update sent carried random noise, so retraining cannot give
            # it back; this node's own copy of what it sent is checked instead.
            kept_dir = market.settings.data_dir / "federation" / f"task-{task_id}" / "updates"
            if not kept_dir.is_dir():
                raise FederationInputError(
                    f"Task {task_id} adds local DP noise to every update, so retraining from "
                    f"{data} cannot give back what was sent, and this node kept no updates "
                    f"in {kept_dir}. Give the directory of the node that took part: "
                    "--updates DIR.",
                    task_id=task_id,
                )
        if kept_dir is not None and not kept_dir.is_dir():
            raise FederationInputError(
                f"{kept_dir} is not a directory of kept updates.", task_id=task_id
            )
        if data is not None or kept_dir is not None:
            if revealed is None:
                raise ValidationSetUnavailableError(
                    task_id,
                    "the requester has not revealed it yet (it does once the task ended: "
                    f"'mercato fl reveal {task_id}'), and no --validation file was given",
                )
            who = account or market.require_account("check your own scores").address
            seat = next(
                (
                    p.seat
                    for p in self.participants(task_id)
                    if p.account.lower() == str(who).lower()
                ),
                None,
            )
            if seat is None:
                raise FederationInputError(
                    f"{who} holds no seat in task {task_id}, so there is no score of its to "
                    "recompute; leave out --data to check the evidence only.",
                    task_id=task_id,
                )
            if data is not None:
                local = load_local_data(data, spec)
        initial = None
        if spec.initial_model.onnx_cid:
            initial = params_from_onnx(spec, fetch(spec.initial_model.onnx_cid))
        elif not spec.initial_model.model_id:
            initial = initial_params(spec)
        posted = None
        if task.status is TaskStatus.FINALIZED:
            fed = self._contract()
            posted = [fed.share_of(task_id, p.account) for p in self.participants(task_id)]
        committed = [
            CommittedRound(r.round, str(r.model_cid), str(r.round_cid), r.contributors)
            for r in self.rounds(task_id)
        ]
        return verify_task(
            task_id,
            spec,
            committed,
            fetch,
            initial=initial,
            validation=revealed,
            seat=seat,
            local_data=local,
            posted_shares=posted,
            own_updates=((lambda n: kept_updates(kept_dir, n)) if kept_dir is not None else None),
            fetch_model=fetch_model,
        )

    # -- helpers --------------------------------------------------------------------

    def _contract(self) -> Federation:
        fed = self._market.contracts.federation
        if fed is None:
            raise FederationNotDeployedError(self._market.chain_id)
        return fed

    def _record(self, task_id: int) -> TaskRecord:
        record = self._contract().task(task_id)
        if record.status is TaskStatus.NONE:
            raise FederationTaskNotFoundError(task_id)
        return record

    def _splitter(self, record: TaskRecord) -> RevenueSplitter:
        if record.splitter is None:
            raise FederationInputError(
                f"Task {record.task_id} is not finalized, so it has no model or revenue "
                "splitter yet.",
                task_id=record.task_id,
            )
        return RevenueSplitter(self._market.w3, record.splitter, self._market.sender)

    def _chain_now(self) -> int:
        # The chain's clock, not this machine's, decides whether a permit expired.
        return int(self._market.w3.eth.get_block("latest")["timestamp"])


def _check_amount(amount: int, what: str) -> None:
    if not isinstance(amount, int) or not 0 <= amount <= MAX_AMOUNT:
        raise FederationInputError(
            f"The {what} must be a whole number of MCT base units from 0 to 2**96 - 1, "
            f"not {amount!r}."
        )


__all__ = [
    "FederationAPI",
    "FederationTask",
    "Participant",
    "RoundRecord",
    "contributors_bitmap",
    "raw_cid",
]
