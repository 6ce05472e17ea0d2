# SPDX-License-Identifier: AGPL-3.0-only
"""Turning decoded events into rows, and undoing them after a reorg.

Every event becomes a fact row stamped with its block. Append-only facts are buffered
and written with one multi-row INSERT per table; an event that must read earlier rows
(a delivery closing its purchase, for example) flushes the buffers first, so reads
always see every earlier event. The `models` rows are then recomputed from the facts
for every model the batch touched, which is also exactly how a rollback repairs them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, Table, insert, select, update

from mercato.index import schema as s
from mercato.index.decode import DecodedEvent
from mercato.index.federation import FederationProjection
from mercato.index.metadata import MetadataSource
from mercato.index.state import manifest_row, refresh_models

log = logging.getLogger(__name__)

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
BPS = 10_000


def _hex(value: bytes) -> str:
    return bytes(value).hex()


def _metric(raw: bytes) -> str:
    return bytes(raw).rstrip(b"\0").decode("utf-8", errors="replace")


class Projector(FederationProjection):
    """Applies one batch of events inside one open transaction."""

    def __init__(self, conn: Connection, metadata: MetadataSource) -> None:
        self.conn = conn
        self.metadata = metadata
        self.touched: set[int] = set()
        self.events = 0
        self._buffers: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        self._owners: dict[int, str] = {}
        self._lineage: dict[int, list[tuple[int, int]]] = {}
        self._market_owner: str | None = None
        self._manifests_seen: set[str] = set()

    # --- batching ------------------------------------------------------------------

    def _add(self, table: type[s.Base], row: dict[str, Any]) -> None:
        self._buffers[table.__table__].append(row)  # type: ignore[index]

    def flush(self) -> None:
        """Writes every buffered row (models first, so later reads find them)."""
        models = s.Model.__table__
        if self._buffers.get(models):  # type: ignore[call-overload]
            self.conn.execute(insert(models), self._buffers.pop(models))  # type: ignore[call-overload, arg-type]
        for table, rows in self._buffers.items():
            if rows:
                self.conn.execute(insert(table), rows)
        self._buffers.clear()

    def finish(self) -> None:
        """Flushes and recomputes every touched model."""
        self.flush()
        refresh_models(self.conn, self.touched)

    # --- events ----------------------------------------------------------------------

    def apply(self, event: DecodedEvent) -> None:
        """Records one event."""
        self.events += 1
        handler = getattr(self, f"_on_{event.contract}_{event.name}", None)
        if handler is not None:
            handler(event, event.args)

    @staticmethod
    def _where(event: DecodedEvent) -> dict[str, Any]:
        return {"block_number": event.block_number, "log_index": event.log_index}

    def _on_model_registry_Transfer(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        model_id = a["token_id"]
        if a["sender"] == ZERO_ADDRESS:
            self._add(
                s.Model,
                {
                    "model_id": model_id,
                    "creator": a["receiver"],
                    "owner": a["receiver"],
                    "created_block": event.block_number,
                    "latest_version": 0,
                    "searchable": False,
                    "tags_text": "",
                    "text": "",
                    "listed": False,
                    "for_sale": False,
                    "price": 0,
                    "license_duration": 0,
                    "fee_bps": 0,
                    "rating_milli": 0,
                    "rating_count": 0,
                    "purchases": 0,
                },
            )
        row = {"model_id": model_id, "sender": a["sender"], "receiver": a["receiver"]}
        self._add(s.Transfer, row | self._where(event))
        self._owners[model_id] = a["receiver"]
        self.touched.add(model_id)

    def _on_model_registry_LineageRecorded(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        pairs = list(zip(a["parents"], a["royalty_bps"], strict=True))
        self._lineage[a["model_id"]] = pairs
        for position, (parent, bps) in enumerate(pairs):
            self._add(
                s.Lineage,
                {
                    "model_id": a["model_id"],
                    "parent_id": parent,
                    "position": position,
                    "royalty_bps": bps,
                    "block_number": event.block_number,
                },
            )

    def _on_model_registry_VersionAdded(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        digest = _hex(a["manifest_cid_digest"])
        self._add(
            s.Version,
            {
                "model_id": a["model_id"],
                "version": a["version"],
                "artifact_cid_digest": _hex(a["artifact_cid_digest"]),
                "plaintext_sha256": _hex(a["plaintext_sha256"]),
                "manifest_cid_digest": digest,
                "block_number": event.block_number,
                "log_index": event.log_index,
                "tx_hash": event.tx_hash,
                "deprecated_block": None,
            },
        )
        self.touched.add(a["model_id"])
        if not self._have_manifest(digest):
            self._add(
                s.PendingMetadata,
                {
                    "model_id": a["model_id"],
                    "version": a["version"],
                    "manifest_digest": digest,
                    "block_number": event.block_number,
                },
            )

    def _have_manifest(self, digest: str) -> bool:
        """True when the manifest is stored, fetching it from the source if it is there."""
        if digest in self._manifests_seen:
            return True
        stored = self.conn.execute(
            select(s.Manifest.digest).where(s.Manifest.digest == digest)
        ).first()
        if stored is None:
            document = self.metadata.manifest(bytes.fromhex(digest))
            if document is None:
                return False
            self._add(s.Manifest, manifest_row(digest, document))
        self._manifests_seen.add(digest)
        return True

    def _on_model_registry_VersionDeprecated(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self.flush()
        self.conn.execute(
            update(s.Version)
            .where(s.Version.model_id == a["model_id"], s.Version.version == a["version"])
            .values(deprecated_block=event.block_number)
        )

    def _on_model_registry_ProviderSet(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._add(s.ProviderSet, {"account": a["account"], "url": a["url"]} | self._where(event))

    def _on_marketplace_Listed(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {k: a[k] for k in ("model_id", "price", "license_duration", "for_sale", "fee_bps")}
        self._add(s.Listing, row | self._where(event))
        self.touched.add(a["model_id"])

    def _order(self, event: DecodedEvent, a: dict[str, Any], **fields: Any) -> None:
        row = {
            "model_id": a["model_id"],
            "buyer": a["buyer"],
            "tx_hash": event.tx_hash,
            "closed_block": None,
            "version": None,
            "expiry": None,
            "buyer_key": None,
        }
        self._add(s.Order, row | fields | self._where(event))

    def _on_marketplace_Purchased(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._order(
            event,
            a,
            state="pending",
            price=a["price"],
            fee_bps=a["fee_bps"],
            buyer_key=_hex(a["buyer_key"]),
        )

    def _on_marketplace_LicenseGranted(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._order(
            event,
            a,
            state="delivered",
            price=0,
            fee_bps=0,
            expiry=a["expiry"],
            closed_block=event.block_number,
        )
        self.touched.add(a["model_id"])

    def _open_order(self, model_id: int, buyer: str) -> Any:
        self.flush()
        return self.conn.execute(
            select(s.Order.id, s.Order.price, s.Order.fee_bps)
            .where(s.Order.model_id == model_id, s.Order.buyer == buyer, s.Order.state == "pending")
            .order_by(s.Order.id.desc())
            .limit(1)
        ).first()

    def _on_marketplace_Delivered(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        model_id, buyer = a["model_id"], a["buyer"]
        order = self._open_order(model_id, buyer)
        self.touched.add(model_id)
        if order is None:  # cannot happen on a consistent chain; keep going, but say so
            log.warning("Delivered without a pending purchase: model %s buyer %s", model_id, buyer)
            return
        self.conn.execute(
            update(s.Order)
            .where(s.Order.id == order.id)
            .values(
                state="delivered",
                closed_block=event.block_number,
                version=a["version"],
                expiry=a["expiry"],
            )
        )
        # The same split the marketplace makes in `_deliver`.
        price, rest = order.price, order.price
        credits: list[tuple[str, str, int]] = []
        if order.fee_bps:
            fee = price * order.fee_bps // BPS
            rest -= fee
            credits.append((self._marketplace_owner(), "fee", fee))
        for parent, bps in self._parents(model_id):
            royalty = price * bps // BPS
            if royalty:
                rest -= royalty
                credits.append((self._owner_of(parent), "royalty", royalty))
        credits.append((self._owner_of(model_id), "sale", rest))
        for account, role, amount in credits:
            if amount:
                row = {"account": account, "model_id": model_id, "buyer": buyer}
                self._add(s.Credit, row | {"role": role, "amount": amount} | self._where(event))

    def _owner_of(self, model_id: int) -> str:
        if model_id not in self._owners:
            row = self.conn.execute(
                select(s.Transfer.receiver)
                .where(s.Transfer.model_id == model_id)
                .order_by(s.Transfer.block_number.desc(), s.Transfer.log_index.desc())
                .limit(1)
            ).first()
            self._owners[model_id] = row.receiver if row else ZERO_ADDRESS
        return self._owners[model_id]

    def _parents(self, model_id: int) -> list[tuple[int, int]]:
        if model_id not in self._lineage:
            rows = self.conn.execute(
                select(s.Lineage.parent_id, s.Lineage.royalty_bps)
                .where(s.Lineage.model_id == model_id)
                .order_by(s.Lineage.position)
            ).all()
            self._lineage[model_id] = [(r.parent_id, r.royalty_bps) for r in rows]
        return self._lineage[model_id]

    def _marketplace_owner(self) -> str:
        if self._market_owner is None:
            row = self.conn.execute(
                select(s.OwnershipTransfer.new_owner)
                .where(s.OwnershipTransfer.contract == "marketplace")
                .order_by(s.OwnershipTransfer.block_number.desc(), s.OwnershipTransfer.id.desc())
                .limit(1)
            ).first()
            self._market_owner = row.new_owner if row else ZERO_ADDRESS
        return self._market_owner

    def _on_marketplace_Refunded(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        order = self._open_order(a["model_id"], a["buyer"])
        if order is not None:
            self.conn.execute(
                update(s.Order)
                .where(s.Order.id == order.id)
                .values(state="refunded", closed_block=event.block_number)
            )

    def _on_marketplace_Withdrawn(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._add(
            s.Withdrawal, {"account": a["account"], "amount": a["amount"]} | self._where(event)
        )

    def _on_marketplace_AgentSet(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._add(s.AgentSet, {"owner": a["owner"], "agent": a["agent"]} | self._where(event))

    def _on_marketplace_ProtocolFeeSet(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._add(s.ProtocolFeeSet, {"fee_bps": a["fee_bps"]} | self._where(event))

    def _ownership(self, contract: str, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {"contract": contract, "previous_owner": a["previous_owner"]}
        self._add(s.OwnershipTransfer, row | {"new_owner": a["new_owner"]} | self._where(event))

    def _on_marketplace_OwnershipTransferred(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._ownership("marketplace", event, a)
        self._market_owner = a["new_owner"]

    def _on_token_OwnershipTransferred(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._ownership("token", event, a)

    def _on_token_Transfer(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {"sender": a["sender"], "receiver": a["receiver"], "value": a["value"]}
        self._add(s.TokenTransfer, row | self._where(event))

    def _on_reviews_Reviewed(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {k: a[k] for k in ("model_id", "reviewer", "rating", "updated")}
        row["text_cid_digest"] = _hex(a["text_cid_digest"])
        self._add(s.Review, row | self._where(event))
        self.touched.add(a["model_id"])

    def _on_reports_Reported(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {k: a[k] for k in ("model_id", "reporter", "reason_code", "license_holder")}
        row["evidence_cid_digest"] = _hex(a["evidence_cid_digest"])
        self._add(s.Report, row | self._where(event))

    def _on_reviews_EvaluationAttested(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {k: a[k] for k in ("model_id", "author", "version", "score")}
        row["dataset_cid_digest"] = _hex(a["dataset_cid_digest"])
        row["metric"] = _metric(a["metric"])
        self._add(s.Evaluation, row | self._where(event))
