# SPDX-License-Identifier: AGPL-3.0-only
"""`Index`: the typed read API over the index database.

    index = Index.open(data_dir=path)            # SQLite, WAL, migrated on open
    page = index.search(SearchQuery(text="resnet", sort=Sort.BEST_RATED))
    detail = index.model(page.items[0].model_id)

Writes happen only through `mercato.index.ingest.Indexer`; everything here reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy import Engine, func, select

from mercato.errors import IndexedModelNotFoundError, InvalidSearchQueryError
from mercato.index import schema as s
from mercato.index.db import create_index_engine, default_url, migrate
from mercato.index.search import ModelSummary, SearchPage, SearchQuery, run_search, summary_from_row
from mercato.index.tasks import TaskDetail, TaskPage, TaskQuery, search_tasks, task_detail


@dataclass(frozen=True)
class VersionInfo:
    version: int
    artifact_cid_digest: str  # hex sha256 digests, as the chain commits them
    plaintext_sha256: str
    manifest_cid_digest: str
    block_number: int
    tx_hash: str
    deprecated: bool
    metadata_arrived: bool


@dataclass(frozen=True)
class ModelDetail:
    """Everything the index knows about one model."""

    summary: ModelSummary
    library: str | None
    text: str
    searchable: bool  # False until a manifest of the model has arrived
    metadata_version: int | None
    versions: list[VersionInfo]
    provider_url: str | None
    manifest: dict[str, Any] | None  # the document of `metadata_version`


@dataclass(frozen=True)
class LineageInfo:
    model_id: int
    parents: list[tuple[int, int]]  # (parent id, royalty bps), in the order recorded
    children: list[int]


@dataclass(frozen=True)
class ReviewInfo:
    reviewer: str
    rating: int
    text_cid_digest: str
    block_number: int
    edits: int  # how many times the reviewer changed it


@dataclass(frozen=True)
class EvaluationInfo:
    author: str
    version: int
    dataset_cid_digest: str
    metric: str
    score: int  # fixed point, 6 decimals
    block_number: int


@dataclass(frozen=True)
class OrderInfo:
    model_id: int
    buyer: str
    state: str  # pending | delivered | refunded
    price: int
    fee_bps: int
    block_number: int
    tx_hash: str
    closed_block: int | None
    version: int | None
    expiry: int | None  # 0 = perpetual, once delivered


@dataclass(frozen=True)
class CreditInfo:
    model_id: int
    buyer: str
    role: str  # sale | royalty | fee
    amount: int
    block_number: int


@dataclass(frozen=True)
class Earnings:
    account: str
    credited: int
    withdrawn: int
    credits: list[CreditInfo]

    @property
    def balance(self) -> int:
        """Credited but not withdrawn (the contract keeps 1 base unit after a withdrawal)."""
        return self.credited - self.withdrawn


@dataclass(frozen=True)
class CreatorInfo:
    account: str
    models_created: int
    models_owned: int
    provider_url: str | None
    agent: str | None


def _account(value: str) -> str:
    if not is_address(value):
        raise InvalidSearchQueryError(f"{value!r} is not an Ethereum address (0x + 40 hex digits).")
    return to_checksum_address(value)


class Index:
    """Read access to one index database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None, *, data_dir: Path | None = None) -> Index:
        """Opens (creating and migrating if needed) an index database.

        Args:
            url: A SQLAlchemy URL (`postgresql://...`); None uses SQLite in `data_dir`.
            data_dir: The node's data directory, for the default SQLite file.

        Returns:
            The index.

        Raises:
            IndexDatabaseError: Neither argument given, or the database cannot be migrated.
        """
        if url is None:
            if data_dir is None:
                from mercato.errors import IndexDatabaseError

                raise IndexDatabaseError("Give the index a database URL or a data directory.")
            url = default_url(data_dir)
        engine = create_index_engine(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        """Closes every pooled connection."""
        self.engine.dispose()

    def search(self, query: SearchQuery) -> SearchPage:
        """One page of models matching `query`.

        Raises:
            InvalidSearchQueryError: A filter is out of range or the cursor is malformed.
        """
        with self.engine.connect() as conn:
            return run_search(conn, query)

    def model(self, model_id: int) -> ModelDetail:
        """One model with its versions.

        Raises:
            IndexedModelNotFoundError: The index has no such model (yet).
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(s.Model).where(s.Model.model_id == model_id)).first()
            if row is None:
                raise IndexedModelNotFoundError(model_id)
            arrived = set(
                conn.execute(
                    select(s.Manifest.digest)
                    .join(s.Version, s.Version.manifest_cid_digest == s.Manifest.digest)
                    .where(s.Version.model_id == model_id)
                ).scalars()
            )
            versions = [
                VersionInfo(
                    version=v.version,
                    artifact_cid_digest=v.artifact_cid_digest,
                    plaintext_sha256=v.plaintext_sha256,
                    manifest_cid_digest=v.manifest_cid_digest,
                    block_number=v.block_number,
                    tx_hash=v.tx_hash,
                    deprecated=v.deprecated_block is not None,
                    metadata_arrived=v.manifest_cid_digest in arrived,
                )
                for v in conn.execute(
                    select(s.Version)
                    .where(s.Version.model_id == model_id)
                    .order_by(s.Version.version)
                )
            ]
            document = None
            if row.metadata_version is not None:
                digest = next(
                    v.manifest_cid_digest for v in versions if v.version == row.metadata_version
                )
                raw = conn.execute(
                    select(s.Manifest.document).where(s.Manifest.digest == digest)
                ).scalar()
                document = json.loads(raw) if raw else None
            provider = self._latest_provider(conn, row.owner)
        return ModelDetail(
            summary=summary_from_row(row),
            library=row.library,
            text=row.text,
            searchable=bool(row.searchable),
            metadata_version=row.metadata_version,
            versions=versions,
            provider_url=provider,
            manifest=document,
        )

    @staticmethod
    def _latest_provider(conn: Any, account: str) -> str | None:
        url = conn.execute(
            select(s.ProviderSet.url)
            .where(s.ProviderSet.account == account)
            .order_by(s.ProviderSet.block_number.desc(), s.ProviderSet.log_index.desc())
            .limit(1)
        ).scalar()
        return url or None

    def lineage(self, model_id: int) -> LineageInfo:
        """A model's parents (with royalty shares) and its direct children.

        Raises:
            IndexedModelNotFoundError: The index has no such model (yet).
        """
        with self.engine.connect() as conn:
            if (
                conn.execute(select(s.Model.model_id).where(s.Model.model_id == model_id)).first()
                is None
            ):
                raise IndexedModelNotFoundError(model_id)
            parents = conn.execute(
                select(s.Lineage.parent_id, s.Lineage.royalty_bps)
                .where(s.Lineage.model_id == model_id)
                .order_by(s.Lineage.position)
            ).all()
            children = conn.execute(
                select(s.Lineage.model_id)
                .where(s.Lineage.parent_id == model_id)
                .order_by(s.Lineage.model_id)
            ).scalars()
            return LineageInfo(model_id, [(p, b) for p, b in parents], list(children))

    def reviews(self, model_id: int) -> list[ReviewInfo]:
        """Each reviewer's current review of a model, newest first."""
        latest: dict[str, ReviewInfo] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.Review)
                .where(s.Review.model_id == model_id)
                .order_by(s.Review.block_number, s.Review.log_index)
            ).all()
        for r in rows:
            edits = latest[r.reviewer].edits + 1 if r.reviewer in latest else 0
            latest[r.reviewer] = ReviewInfo(
                r.reviewer, r.rating, r.text_cid_digest, r.block_number, edits
            )
        return sorted(latest.values(), key=lambda r: r.block_number, reverse=True)

    def evaluations(self, model_id: int) -> list[EvaluationInfo]:
        """Every evaluation attested for a model, in chain order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.Evaluation)
                .where(s.Evaluation.model_id == model_id)
                .order_by(s.Evaluation.block_number, s.Evaluation.log_index)
            ).all()
        return [
            EvaluationInfo(
                r.author, r.version, r.dataset_cid_digest, r.metric, r.score, r.block_number
            )
            for r in rows
        ]

    def orders(self, account: str) -> list[OrderInfo]:
        """An account's purchases and free licenses, newest first.

        Raises:
            InvalidSearchQueryError: `account` is not an address.
        """
        buyer = _account(account)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.Order)
                .where(s.Order.buyer == buyer)
                .order_by(s.Order.block_number.desc(), s.Order.id.desc())
            ).all()
        return [
            OrderInfo(
                r.model_id,
                r.buyer,
                r.state,
                r.price,
                r.fee_bps,
                r.block_number,
                r.tx_hash,
                r.closed_block,
                r.version,
                r.expiry,
            )
            for r in rows
        ]

    def earnings(self, account: str) -> Earnings:
        """What sales, royalties and fees credited to an account, and what it withdrew.

        Raises:
            InvalidSearchQueryError: `account` is not an address.
        """
        who = _account(account)
        with self.engine.connect() as conn:
            credits = [
                CreditInfo(r.model_id, r.buyer, r.role, r.amount, r.block_number)
                for r in conn.execute(
                    select(s.Credit)
                    .where(s.Credit.account == who)
                    .order_by(s.Credit.block_number, s.Credit.log_index)
                )
            ]
            # Amounts are uint256 strings: summed here, not in SQL.
            withdrawn = sum(
                conn.execute(
                    select(s.Withdrawal.amount).where(s.Withdrawal.account == who)
                ).scalars()
            )
        return Earnings(who, sum(c.amount for c in credits), withdrawn, credits)

    def creator(self, account: str) -> CreatorInfo:
        """An account as a creator: its models, provider URL and delivering agent.

        Raises:
            InvalidSearchQueryError: `account` is not an address.
        """
        who = _account(account)
        with self.engine.connect() as conn:
            created = conn.execute(
                select(func.count()).select_from(s.Model).where(s.Model.creator == who)
            ).scalar_one()
            owned = conn.execute(
                select(func.count()).select_from(s.Model).where(s.Model.owner == who)
            ).scalar_one()
            agent = conn.execute(
                select(s.AgentSet.agent)
                .where(s.AgentSet.owner == who)
                .order_by(s.AgentSet.block_number.desc(), s.AgentSet.log_index.desc())
                .limit(1)
            ).scalar()
            provider = self._latest_provider(conn, who)
        zero = "0x" + "0" * 40
        return CreatorInfo(
            who, created, owned, provider, agent if agent and agent != zero else None
        )

    def block_times(self, numbers: Iterable[int]) -> dict[int, int]:
        """When each of these blocks was made (Unix seconds), for the ones with an event.

        Args:
            numbers: Block numbers the index recorded events in.

        Returns:
            Block number -> the block header's timestamp; blocks the index holds no
                event of are left out.
        """
        wanted = sorted(set(numbers))
        found: dict[int, int] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):  # bound the IN list
                chunk = wanted[start : start + 500]
                rows = conn.execute(
                    select(s.BlockTime.number, s.BlockTime.timestamp).where(
                        s.BlockTime.number.in_(chunk)
                    )
                )
                found.update({int(n): int(t) for n, t in rows})
        return found

    def manifests(self, model_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The current manifest document of each model (the one its metadata came from).

        Args:
            model_ids: Models, e.g. one page of search results.

        Returns:
            Model id -> manifest; models without an arrived manifest are left out.
        """
        wanted = sorted(set(model_ids))[:500]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(s.Model.model_id, s.Manifest.document)
                .join(
                    s.Version,
                    (s.Version.model_id == s.Model.model_id)
                    & (s.Version.version == s.Model.metadata_version),
                )
                .join(s.Manifest, s.Manifest.digest == s.Version.manifest_cid_digest)
                .where(s.Model.model_id.in_(wanted))
            ).all()
        found: dict[int, dict[str, Any]] = {}
        for model_id, raw in rows:
            document = json.loads(raw)
            if isinstance(document, dict):
                found[int(model_id)] = document
        return found

    def facets(self) -> dict[str, list[str]]:
        """The distinct tasks and licenses of searchable models, for filter choices.

        Returns:
            `{"task": [...], "license": [...]}`, each sorted, without empty values.
        """
        with self.engine.connect() as conn:
            return {
                name: sorted(
                    str(value)
                    for value in conn.execute(
                        select(column)
                        .where(s.Model.searchable.is_(True), column.is_not(None), column != "")
                        .distinct()
                    ).scalars()
                )
                for name, column in (("task", s.Model.task), ("license", s.Model.license))
            }

    def tasks(self, query: TaskQuery) -> TaskPage:
        """One page of federated training tasks matching `query`, newest first.

        Raises:
            InvalidSearchQueryError: A filter is out of range.
        """
        with self.engine.connect() as conn:
            return search_tasks(conn, query)

    def task(self, task_id: int) -> TaskDetail:
        """One federated training task with its participants, rounds and claims.

        Raises:
            IndexedTaskNotFoundError: The index has no such task (yet).
        """
        with self.engine.connect() as conn:
            return task_detail(conn, task_id)

    def status(self) -> tuple[int | None, int]:
        """The last indexed block (None before the first sync) and the events seen."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(s.Cursor.last_block, s.Cursor.events).where(s.Cursor.id == 1)
            ).first()
        return (None, 0) if row is None else (row.last_block, row.events)
