# SPDX-License-Identifier: AGPL-3.0-only
"""The index's tables, as SQLAlchemy 2 declarative models.

Two kinds of table:

- **facts**, one row per contract event (versions, lineage, transfers, listings, orders,
  reviews, evaluations, credits, ...). Each carries the block it came from, so a reorg
  is undone by deleting the rows above the fork point.
- **current state** (`models`, `model_tags`), a pure function of the facts, recomputed
  for every model a batch or a rollback touched. Search reads only these.

`manifests` is not chain data: it caches manifest documents by digest, so it survives
rollbacks (a digest always names the same bytes).

Token amounts are uint256 and overflow every SQL integer type, so they are stored as
zero-padded 78-digit decimal strings: string order is numeric order on every backend,
which keeps price ranges and price sorts index-friendly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

UINT_DIGITS = 78  # len(str(2**256 - 1))


class Uint(TypeDecorator[int]):
    """A uint256 stored as a zero-padded decimal string (numeric order = string order)."""

    impl = String(UINT_DIGITS)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        return None if value is None else str(int(value)).zfill(UINT_DIGITS)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class Int256(TypeDecorator[int]):
    """A signed 256-bit integer stored as decimal text (never compared in SQL)."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        return None if value is None else str(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


Address = String(42)
Hex32 = String(64)


class Base(DeclarativeBase):
    pass


class Model(Base):
    """Current state of one model: what search filters and sorts on."""

    __tablename__ = "models"

    model_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    creator: Mapped[str] = mapped_column(Address, index=True)
    owner: Mapped[str] = mapped_column(Address, index=True)
    created_block: Mapped[int] = mapped_column(BigInteger)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    # The version whose manifest the metadata below comes from (None: none arrived yet).
    metadata_version: Mapped[int | None] = mapped_column(Integer)
    searchable: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str | None] = mapped_column(String(200))
    license: Mapped[str | None] = mapped_column(String(200), index=True)
    task: Mapped[str | None] = mapped_column(String(100))
    library: Mapped[str | None] = mapped_column(String(100))
    tags_text: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    listed: Mapped[bool] = mapped_column(Boolean, default=False)
    for_sale: Mapped[bool] = mapped_column(Boolean, default=False)
    price: Mapped[int] = mapped_column(Uint, default=0)
    license_duration: Mapped[int] = mapped_column(BigInteger, default=0)
    fee_bps: Mapped[int] = mapped_column(Integer, default=0)
    rating_milli: Mapped[int] = mapped_column(Integer, default=0)  # average stars x 1000
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    purchases: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("ix_models_rating", "rating_milli", "model_id"),
        Index("ix_models_purchases", "purchases", "model_id"),
        Index("ix_models_price", "price", "model_id"),
        # Whether a model has a task, probed without its row (migration 0012).
        Index("ix_models_task", "task", "model_id"),
    )


class ModelTag(Base):
    __tablename__ = "model_tags"

    model_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class Manifest(Base):
    """A manifest document fetched by its CID digest, with the fields the index uses."""

    __tablename__ = "manifests"

    digest: Mapped[str] = mapped_column(Hex32, primary_key=True)
    valid: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str | None] = mapped_column(String(200))
    license: Mapped[str | None] = mapped_column(String(200))
    task: Mapped[str | None] = mapped_column(String(100))
    library: Mapped[str | None] = mapped_column(String(100))
    tags_json: Mapped[str] = mapped_column(Text, default="[]")
    text: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[str] = mapped_column(Text)


class PendingMetadata(Base):
    """A version whose manifest has not arrived from storage yet: held, never dropped."""

    __tablename__ = "pending_metadata"

    model_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    manifest_digest: Mapped[str] = mapped_column(Hex32, index=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)


class Version(Base):
    __tablename__ = "versions"

    model_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_cid_digest: Mapped[str] = mapped_column(Hex32)
    plaintext_sha256: Mapped[str] = mapped_column(Hex32)
    manifest_cid_digest: Mapped[str] = mapped_column(Hex32)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    log_index: Mapped[int] = mapped_column(Integer)
    tx_hash: Mapped[str] = mapped_column(String(66))
    deprecated_block: Mapped[int | None] = mapped_column(BigInteger, index=True)


class Lineage(Base):
    __tablename__ = "lineage"

    model_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    parent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    royalty_bps: Mapped[int] = mapped_column(Integer)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)

    # A parent's children: one range, in id order, read without the table (migration 0010).
    __table_args__ = (Index("ix_lineage_children", "parent_id", "model_id"),)


class _Fact:
    """Columns every event fact has: where in the chain it happened."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    log_index: Mapped[int] = mapped_column(Integer)


class Transfer(_Fact, Base):
    """ERC-721 transfers of models (a mint comes from the zero address)."""

    __tablename__ = "transfers"

    model_id: Mapped[int] = mapped_column(BigInteger, index=True)
    sender: Mapped[str] = mapped_column(Address)
    receiver: Mapped[str] = mapped_column(Address)


class Listing(_Fact, Base):
    __tablename__ = "listings"

    model_id: Mapped[int] = mapped_column(BigInteger, index=True)
    price: Mapped[int] = mapped_column(Uint)
    license_duration: Mapped[int] = mapped_column(BigInteger)
    for_sale: Mapped[bool] = mapped_column(Boolean)
    fee_bps: Mapped[int] = mapped_column(Integer)


class Order(_Fact, Base):
    """One purchase (paid: pending until delivered or refunded) or free license grant."""

    __tablename__ = "orders"

    model_id: Mapped[int] = mapped_column(BigInteger, index=True)
    buyer: Mapped[str] = mapped_column(Address, index=True)
    state: Mapped[str] = mapped_column(String(16))  # pending | delivered | refunded
    price: Mapped[int] = mapped_column(Uint)
    fee_bps: Mapped[int] = mapped_column(Integer)
    buyer_key: Mapped[str | None] = mapped_column(Hex32)
    tx_hash: Mapped[str] = mapped_column(String(66))
    # Set when a Delivered / Refunded event closes the order; undone by a rollback.
    closed_block: Mapped[int | None] = mapped_column(BigInteger, index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    expiry: Mapped[int | None] = mapped_column(BigInteger)


class Review(_Fact, Base):
    """Every Reviewed event; a reviewer's current review of a model is their latest."""

    __tablename__ = "reviews"

    model_id: Mapped[int] = mapped_column(BigInteger, index=True)
    reviewer: Mapped[str] = mapped_column(Address)
    rating: Mapped[int] = mapped_column(Integer)
    text_cid_digest: Mapped[str] = mapped_column(Hex32)
    updated: Mapped[bool] = mapped_column(Boolean)


class Evaluation(_Fact, Base):
    __tablename__ = "evaluations"

    model_id: Mapped[int] = mapped_column(BigInteger, index=True)
    author: Mapped[str] = mapped_column(Address, index=True)
    version: Mapped[int] = mapped_column(Integer)
    dataset_cid_digest: Mapped[str] = mapped_column(Hex32)
    metric: Mapped[str] = mapped_column(String(64))
    score: Mapped[int] = mapped_column(Int256)


class Report(_Fact, Base):
    """Every Reported event: a report on a model, and whether its author held a license."""

    __tablename__ = "reports"

    model_id: Mapped[int] = mapped_column(BigInteger, index=True)
    reporter: Mapped[str] = mapped_column(Address)
    reason_code: Mapped[int] = mapped_column(Integer)
    evidence_cid_digest: Mapped[str] = mapped_column(Hex32)
    license_holder: Mapped[bool] = mapped_column(Boolean)


class Credit(_Fact, Base):
    """Revenue credited by a Delivered event: to the owner, a parent (royalty) or the fee."""

    __tablename__ = "credits"

    account: Mapped[str] = mapped_column(Address, index=True)
    model_id: Mapped[int] = mapped_column(BigInteger, index=True)
    buyer: Mapped[str] = mapped_column(Address)
    role: Mapped[str] = mapped_column(String(16))  # sale | royalty | fee
    amount: Mapped[int] = mapped_column(Uint)


class Withdrawal(_Fact, Base):
    __tablename__ = "withdrawals"

    account: Mapped[str] = mapped_column(Address, index=True)
    amount: Mapped[int] = mapped_column(Uint)


class ProviderSet(_Fact, Base):
    __tablename__ = "providers"

    account: Mapped[str] = mapped_column(Address, index=True)
    url: Mapped[str] = mapped_column(Text)


class AgentSet(_Fact, Base):
    __tablename__ = "agents"

    owner: Mapped[str] = mapped_column(Address, index=True)
    agent: Mapped[str] = mapped_column(Address)


class ProtocolFeeSet(_Fact, Base):
    __tablename__ = "protocol_fees"

    fee_bps: Mapped[int] = mapped_column(Integer)


class OwnershipTransfer(_Fact, Base):
    """Ownable transfers of the marketplace and token (the marketplace owner gets fees)."""

    __tablename__ = "contract_owners"

    contract: Mapped[str] = mapped_column(String(16))
    previous_owner: Mapped[str] = mapped_column(Address)
    new_owner: Mapped[str] = mapped_column(Address)


class TokenTransfer(_Fact, Base):
    __tablename__ = "token_transfers"

    sender: Mapped[str] = mapped_column(Address, index=True)
    receiver: Mapped[str] = mapped_column(Address, index=True)
    value: Mapped[int] = mapped_column(Uint)


# --- federated training tasks (the federation contract) --------------------------------


class FlTask(_Fact, Base):
    """Every TaskCreated event: a training task, its escrowed reward and its terms."""

    __tablename__ = "fl_tasks"

    task_id: Mapped[int] = mapped_column(BigInteger, index=True)
    requester: Mapped[str] = mapped_column(Address, index=True)
    coordinator: Mapped[str] = mapped_column(Address)
    spec_digest: Mapped[str] = mapped_column(Hex32, index=True)
    reward: Mapped[int] = mapped_column(Uint)
    stake: Mapped[int] = mapped_column(Uint)
    min_participants: Mapped[int] = mapped_column(Integer)
    max_participants: Mapped[int] = mapped_column(Integer)
    join_deadline: Mapped[int] = mapped_column(BigInteger)
    finish_deadline: Mapped[int] = mapped_column(BigInteger)
    parent_model_id: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66))


class FlParticipant(_Fact, Base):
    """Every Joined event: a seat taken, bound to the participant's Flower node key."""

    __tablename__ = "fl_participants"

    task_id: Mapped[int] = mapped_column(BigInteger, index=True)
    participant: Mapped[str] = mapped_column(Address, index=True)
    seat: Mapped[int] = mapped_column(Integer)
    node_key_hash: Mapped[str] = mapped_column(Hex32)


class FlRound(_Fact, Base):
    """Every RoundCommitted event: a round's global model, participant list and metric."""

    __tablename__ = "fl_rounds"

    task_id: Mapped[int] = mapped_column(BigInteger, index=True)
    round: Mapped[int] = mapped_column(Integer)
    model_digest: Mapped[str] = mapped_column(Hex32)
    round_digest: Mapped[str] = mapped_column(Hex32)
    contributors: Mapped[int] = mapped_column(Uint)  # bitmap of seats
    metric: Mapped[int] = mapped_column(Uint)  # metric x 1e6


class FlTaskEnd(_Fact, Base):
    """A Finalized, Cancelled or Aborted event: how a task ended (and its splitter)."""

    __tablename__ = "fl_task_ends"

    task_id: Mapped[int] = mapped_column(BigInteger, index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # finalized | cancelled | aborted
    splitter: Mapped[str | None] = mapped_column(Address)
    shares: Mapped[str | None] = mapped_column(Text)  # JSON: basis points by seat


class FlClaim(_Fact, Base):
    """Every Claimed event: tokens a participant or the requester took out of a task."""

    __tablename__ = "fl_claims"

    task_id: Mapped[int] = mapped_column(BigInteger, index=True)
    account: Mapped[str] = mapped_column(Address, index=True)
    amount: Mapped[int] = mapped_column(Uint)


class FlSpec(Base):
    """A task spec document fetched by its digest (a cache like `manifests`, not chain data)."""

    __tablename__ = "fl_specs"

    digest: Mapped[str] = mapped_column(Hex32, primary_key=True)
    valid: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[str] = mapped_column(Text)
    # Privacy budget of a spec that adds noise (NULL: none): the delta, and the JSON list
    # of epsilon after each round (`mercato.index.federation.privacy_columns`).
    dp_delta: Mapped[float | None] = mapped_column(Float, nullable=True)
    dp_epsilons: Mapped[str | None] = mapped_column(Text, nullable=True)


class Block(Base):
    """Hashes of recent processed blocks, to find the fork point after a reorg."""

    __tablename__ = "blocks"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(66))


class BlockTime(Base):
    """When each block that holds an indexed event was made (the block header's timestamp).

    Pages show dates, not block numbers; the timestamp comes with the logs (or the block
    header when a node leaves it out) and is removed with the block's facts on a reorg.
    """

    __tablename__ = "block_times"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class Cursor(Base):
    """Where ingestion stands; committed in the same transaction as the rows."""

    __tablename__ = "cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    contracts: Mapped[str] = mapped_column(Text)  # JSON: name -> checksum address
    start_block: Mapped[int] = mapped_column(BigInteger)
    last_block: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str | None] = mapped_column(String(66))
    events: Mapped[int] = mapped_column(BigInteger, default=0)


# Fact tables undone by deleting rows above a fork point, with their model column.
FACT_TABLES = (
    Transfer,
    Listing,
    Order,
    Review,
    Evaluation,
    Report,
    Credit,
    Withdrawal,
    ProviderSet,
    AgentSet,
    ProtocolFeeSet,
    OwnershipTransfer,
    TokenTransfer,
    FlTask,
    FlParticipant,
    FlRound,
    FlTaskEnd,
    FlClaim,
)
