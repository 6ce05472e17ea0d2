# SPDX-License-Identifier: AGPL-3.0-only
"""Shared steps of the index tests: manifests, publishing, and table dumps to compare."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Engine, inspect, text

from mercato.chain.contracts import VersionDigests
from mercato.chain.deployment import TOKEN_UNIT

PRICE = 5 * TOKEN_UNIT
# Tables whose ids are autoincrement counters: compared by content, not by id.
_VOLATILE = {"id"}
# Where ingestion stands, not what it found: differs between batchings of the same chain.
_BOOKKEEPING = {"alembic_version", "blocks", "cursor"}


def manifest(
    name: str, *, tags: list[str], task: str, license: str, text: str = ""
) -> dict[str, Any]:
    """A manifest document shaped like `mercato.models.manifest.build_manifest` output."""
    card: dict[str, Any] = {
        "license": license,
        "language": ["en"],
        "tags": tags,
        "datasets": [],
        "metrics": ["accuracy"],
        "base_model": [],
        "pipeline_tag": task,
    }
    if text:
        card["text"] = text
    return {"manifest_version": 1, "name": name, "card": card, "future_field": {"x": 1}}


def digests_for(name: str, version: int = 1) -> VersionDigests:
    seed = f"{name}/{version}".encode()
    return VersionDigests(
        hashlib.sha256(b"artifact" + seed).digest(),
        hashlib.sha256(b"plain" + seed).digest(),
        hashlib.sha256(b"manifest" + seed).digest(),
    )


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every chain-derived table's rows, sorted, without autoincrement ids."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            if table.startswith("models_fts") or table in _BOOKKEEPING:
                continue
            columns = [
                c["name"]
                for c in inspect(conn).get_columns(table)
                if c["name"] not in _VOLATILE and c["name"] != "search_vector"
            ]
            rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out
