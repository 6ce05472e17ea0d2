# SPDX-License-Identifier: AGPL-3.0-only
"""Current state recomputed from facts: after each batch, after a rollback, on metadata.

A model row is a pure function of the fact rows (transfers, versions with arrived
manifests, listings, reviews, orders), so the same function serves forward ingestion
and reorg repair, and a rebuilt index ends in the same state as one that followed the
chain block by block.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, select, update

from mercato.index import schema as s
from mercato.index.metadata import MetadataSource, document_json, extract_metadata


def manifest_row(digest: str, document: Any) -> dict[str, Any]:
    """The `manifests` row for a document that arrived under `digest`."""
    meta = extract_metadata(document)
    return {
        "digest": digest,
        "valid": meta.valid,
        "name": meta.name,
        "license": meta.license,
        "task": meta.task,
        "library": meta.library,
        "tags_json": json.dumps(list(meta.tags)),
        "text": meta.text,
        "document": document_json(document),
    }


def refresh_models(conn: Connection, model_ids: Iterable[int]) -> None:
    """Recomputes the `models` and `model_tags` rows of `model_ids` from the facts.

    Args:
        conn: An open transaction.
        model_ids: The models to recompute; ids without a model row are skipped.
    """
    for model_id in sorted(set(model_ids)):
        _refresh_model(conn, model_id)


def _refresh_model(conn: Connection, model_id: int) -> None:
    current = conn.execute(select(s.Model).where(s.Model.model_id == model_id)).first()
    if current is None:
        return
    values: dict[str, Any] = {}
    owner = conn.execute(
        select(s.Transfer.receiver)
        .where(s.Transfer.model_id == model_id)
        .order_by(s.Transfer.block_number.desc(), s.Transfer.log_index.desc())
        .limit(1)
    ).scalar()
    values["owner"] = owner or current.owner
    values["latest_version"] = (
        conn.execute(
            select(func.max(s.Version.version)).where(s.Version.model_id == model_id)
        ).scalar()
        or 0
    )
    meta = conn.execute(
        select(s.Version.version, s.Manifest)
        .join(s.Manifest, s.Manifest.digest == s.Version.manifest_cid_digest)
        .where(s.Version.model_id == model_id, s.Manifest.valid.is_(True))
        .order_by(s.Version.version.desc())
        .limit(1)
    ).first()
    tags: list[str] = json.loads(meta.tags_json) if meta else []
    values |= {
        "metadata_version": meta.version if meta else None,
        "searchable": meta is not None,
        "name": meta.name if meta else None,
        "license": meta.license if meta else None,
        "task": meta.task if meta else None,
        "library": meta.library if meta else None,
        "tags_text": " ".join(tags),
        "text": meta.text if meta else "",
    }
    listing = conn.execute(
        select(s.Listing)
        .where(s.Listing.model_id == model_id)
        .order_by(s.Listing.block_number.desc(), s.Listing.log_index.desc())
        .limit(1)
    ).first()
    values |= {
        "listed": listing is not None,
        "for_sale": bool(listing.for_sale) if listing else False,
        "price": listing.price if listing else 0,
        "license_duration": listing.license_duration if listing else 0,
        "fee_bps": listing.fee_bps if listing else 0,
    }
    ratings: dict[str, int] = {}
    for row in conn.execute(
        select(s.Review.reviewer, s.Review.rating)
        .where(s.Review.model_id == model_id)
        .order_by(s.Review.block_number, s.Review.log_index)
    ):
        ratings[row.reviewer] = row.rating  # later reviews replace earlier ones
    values["rating_count"] = len(ratings)
    values["rating_milli"] = sum(ratings.values()) * 1000 // len(ratings) if ratings else 0
    values["purchases"] = conn.execute(
        select(func.count())
        .select_from(s.Order)
        .where(s.Order.model_id == model_id, s.Order.state == "delivered")
    ).scalar_one()
    # Only changed columns are written: an unchanged name must not re-index full text.
    changed = {k: v for k, v in values.items() if getattr(current, k) != v}
    if changed:
        conn.execute(update(s.Model).where(s.Model.model_id == model_id).values(**changed))
    if "tags_text" in changed:
        conn.execute(delete(s.ModelTag).where(s.ModelTag.model_id == model_id))
        if tags:
            conn.execute(insert(s.ModelTag), [{"model_id": model_id, "tag": t} for t in tags])


def rollback_above(conn: Connection, fork_block: int) -> set[int]:
    """Removes everything recorded above `fork_block` and repairs the models it touched.

    Args:
        conn: An open transaction.
        fork_block: The last block both the index and the chain agree on.

    Returns:
        The ids of the models whose state changed.
    """
    affected: set[int] = set()
    with_model = [s.Transfer, s.Listing, s.Order, s.Review, s.Evaluation, s.Credit]
    for table in (*with_model, s.Version, s.Lineage, s.PendingMetadata):
        affected.update(
            conn.execute(
                select(table.model_id).where(table.block_number > fork_block).distinct()  # type: ignore[attr-defined]
            ).scalars()
        )
    affected.update(
        conn.execute(
            select(s.Order.model_id).where(s.Order.closed_block > fork_block).distinct()
        ).scalars()
    )
    affected.update(
        conn.execute(
            select(s.Version.model_id).where(s.Version.deprecated_block > fork_block).distinct()
        ).scalars()
    )
    for table in (*s.FACT_TABLES, s.Version, s.Lineage, s.PendingMetadata):
        conn.execute(delete(table).where(table.block_number > fork_block))
    conn.execute(
        update(s.Order)
        .where(s.Order.closed_block > fork_block)
        .values(state="pending", closed_block=None, version=None, expiry=None)
    )
    conn.execute(
        update(s.Version)
        .where(s.Version.deprecated_block > fork_block)
        .values(deprecated_block=None)
    )
    gone = select(s.Model.model_id).where(s.Model.created_block > fork_block)
    conn.execute(delete(s.ModelTag).where(s.ModelTag.model_id.in_(gone)))
    conn.execute(delete(s.Model).where(s.Model.created_block > fork_block))
    conn.execute(delete(s.Block).where(s.Block.number > fork_block))
    conn.execute(delete(s.BlockTime).where(s.BlockTime.number > fork_block))
    # Manifests only versions on the abandoned branch named go too, so the index holds
    # exactly what a rebuild from the chain would fetch.
    referenced = select(s.Version.manifest_cid_digest).where(
        s.Version.manifest_cid_digest == s.Manifest.digest
    )
    conn.execute(delete(s.Manifest).where(~exists(referenced)))
    refresh_models(conn, affected)
    return affected


def apply_arrived_metadata(conn: Connection, metadata: MetadataSource, limit: int = 256) -> int:
    """Asks the source again for manifests still missing; applies those that arrived.

    Args:
        conn: An open transaction.
        metadata: The manifest source.
        limit: Most digests asked per call, so a slow source cannot stall ingestion.

    Returns:
        How many held versions were applied.
    """
    digests = (
        conn.execute(select(s.PendingMetadata.manifest_digest).distinct().limit(limit))
        .scalars()
        .all()
    )
    applied = 0
    for digest in digests:
        document = metadata.manifest(bytes.fromhex(digest))
        if document is None:
            continue
        known = exists().where(s.Manifest.digest == digest)
        if not conn.execute(select(known)).scalar():
            conn.execute(insert(s.Manifest), [manifest_row(digest, document)])
        held = conn.execute(
            delete(s.PendingMetadata)
            .where(s.PendingMetadata.manifest_digest == digest)
            .returning(s.PendingMetadata.model_id)
        ).scalars()
        models = set(held)
        applied += len(models)
        refresh_models(conn, models)
    return applied
