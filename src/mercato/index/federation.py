# SPDX-License-Identifier: AGPL-3.0-only
"""Federated training tasks in the index: the federation contract's events as facts.

Each event becomes one fact row stamped with its block (a reorg deletes the rows above
the fork point, like every other fact), and a task's state is read from its facts, never
stored: a task is `open` from TaskCreated, `running` from its first RoundCommitted, and
`finalized`, `cancelled` or `aborted` from the event that ended it.

A task's name and description are not on-chain: TaskCreated carries the digest inside
the spec's CID (a raw-codec CIDv1 of a JSON document), and the document reaches this
node from storage, possibly later than the event. `fl_specs` caches documents by digest;
a task whose spec has not arrived is listed under its id and found by search once it
has. A spec is data someone else wrote: only a bounded, JSON-object document is kept,
its text fields are cut to size, and pages escape everything they show of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, exists, insert, select

from mercato.index import schema as s
from mercato.index.metadata import MAX_TEXT, document_json

if TYPE_CHECKING:
    from mercato.index.decode import DecodedEvent

MAX_SPEC_JSON = 64 * 1024  # characters of a spec document kept; larger ones are invalid
SPECS_PER_SYNC = 64  # most missing specs asked for per poll, so a slow source cannot stall


class SpecSource(Protocol):
    """Where task specs come from, by the sha256 digest inside their CID."""

    def task_spec(self, digest: bytes, accounts: Sequence[str]) -> Mapping[str, Any] | None:
        """Returns the spec document for `digest`, or None if not available yet.

        Args:
            digest: The 32-byte digest from `TaskCreated.spec_digest`.
            accounts: The task's requester and coordinator: whose provider URLs may
                serve the spec (never a URL the spec or anyone else names).

        Returns:
            The decoded JSON document ({} when present but unreadable), or None while
                its bytes have not arrived.
        """
        ...


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def spec_row(digest: str, document: Any) -> dict[str, Any]:
    """The `fl_specs` row for a document that arrived under `digest`.

    A document that is not a JSON object, has no name or is too large is kept as invalid
    (so it is not asked for again) and its task is listed without a name.
    """
    raw = document_json(document)
    valid = isinstance(document, Mapping) and len(raw) <= MAX_SPEC_JSON
    name = _text(document.get("name"), 200) if valid else None
    description = _text(document.get("description"), MAX_TEXT) if valid else None
    privacy = privacy_columns(raw) if valid else {"dp_delta": None, "dp_epsilons": None}
    return {
        "digest": digest,
        "valid": valid and name is not None,
        "name": name,
        "description": description or "",
        "document": raw if valid else "{}",
    } | privacy


def privacy_columns(document_json: str) -> dict[str, Any]:
    """A spec's privacy budget as `fl_specs` stores it: the delta and the JSON list of
    epsilon after each round, both None when the spec adds no noise.

    The numbers come from the spec alone, through the same accountant the coordinator
    states in each committed round record (`mercato.federation.privacy.budget_record`),
    so the index shows what anyone recomputes, not what a coordinator claims. A document
    that is not a spec Mercato would run (someone else wrote it) has no budget here.
    """
    none: dict[str, Any] = {"dp_delta": None, "dp_epsilons": None}
    try:
        document = json.loads(document_json)
    except ValueError:
        return none
    privacy = document.get("privacy") if isinstance(document, dict) else None
    settings = document.get("privacy_settings") if isinstance(document, dict) else None
    if privacy != "private" and not (isinstance(settings, dict) and settings.get("local_dp")):
        return none  # the common case answers without loading Flower's accountant
    from mercato.errors import FederationSpecError
    from mercato.federation.privacy import epsilons_by_round, settings_of
    from mercato.federation.spec import load_spec

    try:
        spec = load_spec(document_json.encode("utf-8"))
        epsilons = epsilons_by_round(spec)
    except (FederationSpecError, ValueError, TypeError):
        return none
    if epsilons is None:
        return none
    return {"dp_delta": settings_of(spec).delta, "dp_epsilons": json.dumps(epsilons)}


def _spec_of(metadata: Any, digest: str, accounts: Sequence[str]) -> Mapping[str, Any] | None:
    source = getattr(metadata, "task_spec", None)
    if source is None:  # a metadata source that serves manifests only
        return None
    document: Mapping[str, Any] | None = source(bytes.fromhex(digest), accounts)
    return document


def store_spec_if_arrived(
    conn: Connection, metadata: Any, digest: str, accounts: Sequence[str]
) -> bool:
    """Stores the spec for `digest` if it is not stored and the source has it.

    Args:
        conn: An open transaction.
        metadata: The index's metadata source.
        digest: The spec's digest (hex).
        accounts: The task's requester and coordinator (see `SpecSource.task_spec`).

    Returns:
        True when the spec is (now) stored.
    """
    if conn.execute(select(exists().where(s.FlSpec.digest == digest))).scalar():
        return True
    document = _spec_of(metadata, digest, accounts)
    if document is None:
        return False
    conn.execute(insert(s.FlSpec), [spec_row(digest, document)])
    return True


def apply_arrived_specs(conn: Connection, metadata: Any, limit: int = SPECS_PER_SYNC) -> int:
    """Asks the source again for the specs of tasks still listed without one.

    Args:
        conn: An open transaction.
        metadata: The index's metadata source (specs come from its `task_spec`).
        limit: Most digests asked per call.

    Returns:
        How many specs arrived.
    """
    if getattr(metadata, "task_spec", None) is None:
        return 0
    missing: dict[str, list[str]] = {}
    for digest, requester, coordinator in conn.execute(
        select(s.FlTask.spec_digest, s.FlTask.requester, s.FlTask.coordinator)
        .where(~exists().where(s.FlSpec.digest == s.FlTask.spec_digest))
        .order_by(s.FlTask.task_id)
        .limit(limit)
    ):
        accounts = missing.setdefault(digest, [])
        accounts.extend(a for a in (requester, coordinator) if a not in accounts)
    return sum(
        store_spec_if_arrived(conn, metadata, digest, accounts)
        for digest, accounts in missing.items()
    )


class FederationProjection:
    """The federation contract's event handlers, mixed into `Projector`.

    `Projector.apply` calls `_on_federation_<Event>` for each decoded event.
    """

    conn: Connection
    metadata: Any

    if TYPE_CHECKING:

        def _add(self, table: type[s.Base], row: dict[str, Any]) -> None: ...

        @staticmethod
        def _where(event: DecodedEvent) -> dict[str, Any]: ...

    def _on_federation_TaskCreated(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {
            k: a[k]
            for k in (
                "task_id",
                "requester",
                "coordinator",
                "reward",
                "stake",
                "min_participants",
                "max_participants",
                "join_deadline",
                "finish_deadline",
                "parent_model_id",
            )
        }
        digest = bytes(a["spec_digest"]).hex()
        row |= {"spec_digest": digest, "tx_hash": event.tx_hash}
        self._add(s.FlTask, row | self._where(event))
        accounts = list(dict.fromkeys((a["requester"], a["coordinator"])))
        store_spec_if_arrived(self.conn, self.metadata, digest, accounts)

    def _on_federation_Joined(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {"task_id": a["task_id"], "participant": a["participant"], "seat": a["seat"]}
        row["node_key_hash"] = bytes(a["node_key_hash"]).hex()
        self._add(s.FlParticipant, row | self._where(event))

    def _on_federation_RoundCommitted(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {k: a[k] for k in ("task_id", "round", "contributors", "metric")}
        row["model_digest"] = bytes(a["model_digest"]).hex()
        row["round_digest"] = bytes(a["round_digest"]).hex()
        self._add(s.FlRound, row | self._where(event))

    def _end(self, event: DecodedEvent, task_id: int, outcome: str, **fields: Any) -> None:
        row = {"task_id": task_id, "outcome": outcome, "splitter": None, "shares": None}
        self._add(s.FlTaskEnd, row | fields | self._where(event))

    def _on_federation_Finalized(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        shares = json.dumps([int(b) for b in a.get("shares", ())])
        self._end(event, a["task_id"], "finalized", splitter=a["splitter"], shares=shares)

    def _on_federation_Cancelled(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._end(event, a["task_id"], "cancelled")

    def _on_federation_Aborted(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        self._end(event, a["task_id"], "aborted")

    def _on_federation_Claimed(self, event: DecodedEvent, a: dict[str, Any]) -> None:
        row = {"task_id": a["task_id"], "account": a["account"], "amount": a["amount"]}
        self._add(s.FlClaim, row | self._where(event))


def spec_document(raw: str | None) -> dict[str, Any] | None:
    """A stored spec document back as a dict (None when missing or not an object)."""
    if not raw:
        return None
    document = json.loads(raw)
    return document if isinstance(document, dict) and document else None
