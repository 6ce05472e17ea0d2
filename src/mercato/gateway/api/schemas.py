# SPDX-License-Identifier: AGPL-3.0-only
"""JSON shapes of the REST API (they make the published OpenAPI document).

Token amounts are decimal strings of base units (10**18 per MCT): they exceed what a
JavaScript number holds exactly.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mercato.index import (
    CreatorInfo,
    EvaluationInfo,
    LineageInfo,
    ModelDetail,
    ModelSummary,
    OrderInfo,
    ReviewInfo,
    VersionInfo,
)

SCORE_SCALE = 1_000_000


class ErrorOut(BaseModel):
    error: str
    message: str


class ModelOut(BaseModel):
    model_id: int
    name: str | None
    creator: str
    owner: str
    task: str | None
    license: str | None
    tags: list[str]
    price: str
    for_sale: bool
    license_duration: int
    rating: float | None
    rating_count: int
    purchases: int
    latest_version: int

    @classmethod
    def of(cls, m: ModelSummary) -> ModelOut:
        return cls(
            model_id=m.model_id,
            name=m.name,
            creator=m.creator,
            owner=m.owner,
            task=m.task,
            license=m.license,
            tags=list(m.tags),
            price=str(m.price),
            for_sale=m.for_sale,
            license_duration=m.license_duration,
            rating=m.rating,
            rating_count=m.rating_count,
            purchases=m.purchases,
            latest_version=m.latest_version,
        )


class SearchOut(BaseModel):
    items: list[ModelOut]
    next_cursor: str | None
    # Models matching the search that this node's moderation hides (counted up to 101).
    hidden: int = 0


class VersionOut(BaseModel):
    version: int
    artifact_cid: str
    manifest_cid: str
    artifact_cid_digest: str
    plaintext_sha256: str
    manifest_cid_digest: str
    block_number: int
    deprecated: bool

    @classmethod
    def of(cls, v: VersionInfo) -> VersionOut:
        from mercato.client.artifacts import cid_from_digest

        return cls(
            version=v.version,
            artifact_cid=str(cid_from_digest(bytes.fromhex(v.artifact_cid_digest))),
            manifest_cid=str(cid_from_digest(bytes.fromhex(v.manifest_cid_digest))),
            artifact_cid_digest=v.artifact_cid_digest,
            plaintext_sha256=v.plaintext_sha256,
            manifest_cid_digest=v.manifest_cid_digest,
            block_number=v.block_number,
            deprecated=v.deprecated,
        )


class ModelDetailOut(ModelOut):
    library: str | None
    description: str
    provider_url: str | None
    protocol_fee_bps: int
    versions: list[VersionOut]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    card: dict[str, Any]

    @classmethod
    def of_detail(cls, d: ModelDetail, fee_bps: int) -> ModelDetailOut:
        manifest = d.manifest or {}
        return cls(
            **ModelOut.of(d.summary).model_dump(),
            library=d.library,
            description=d.text,
            provider_url=d.provider_url,
            protocol_fee_bps=fee_bps,
            versions=[VersionOut.of(v) for v in d.versions],
            inputs=list(manifest.get("inputs", [])),
            outputs=list(manifest.get("outputs", [])),
            card=dict(manifest.get("card", {})),
        )


class LineageOut(BaseModel):
    model_id: int
    parents: list[dict[str, int]]
    children: list[int]

    @classmethod
    def of(cls, lineage: LineageInfo) -> LineageOut:
        return cls(
            model_id=lineage.model_id,
            parents=[{"model_id": p, "royalty_bps": b} for p, b in lineage.parents],
            children=lineage.children,
        )


class ReviewOut(BaseModel):
    reviewer: str
    rating: int
    text_cid_digest: str
    block_number: int
    edits: int

    @classmethod
    def of(cls, r: ReviewInfo) -> ReviewOut:
        return cls(**r.__dict__)


class EvaluationOut(BaseModel):
    author: str
    version: int
    dataset_cid_digest: str
    metric: str
    score: float
    block_number: int

    @classmethod
    def of(cls, e: EvaluationInfo) -> EvaluationOut:
        return cls(
            author=e.author,
            version=e.version,
            dataset_cid_digest=e.dataset_cid_digest,
            metric=e.metric,
            score=e.score / SCORE_SCALE,
            block_number=e.block_number,
        )


class OrderOut(BaseModel):
    model_id: int
    buyer: str
    state: str
    price: str
    fee_bps: int
    block_number: int
    tx_hash: str
    closed_block: int | None
    version: int | None
    expiry: int | None

    @classmethod
    def of(cls, o: OrderInfo) -> OrderOut:
        return cls(**{**o.__dict__, "price": str(o.price)})


class CreatorOut(BaseModel):
    account: str
    models_created: int
    models_owned: int
    provider_url: str | None
    agent: str | None

    @classmethod
    def of(cls, c: CreatorInfo) -> CreatorOut:
        return cls(**c.__dict__)


class CreditOut(BaseModel):
    model_id: int
    buyer: str
    role: str
    amount: str
    block_number: int


class EarningsOut(BaseModel):
    account: str
    credited: str
    withdrawn: str
    balance: str
    credits: list[CreditOut]
