# SPDX-License-Identifier: AGPL-3.0-only
"""Operators' tools: check the index against a fresh rebuild, and rebuild it atomically.

The index is a cache of the chain's events, so its truth is what a fresh ingestion of
the same blocks gives. Both tools build that fresh index in a scratch place beside the
live one, on the same backend (so values compare exactly):

    SQLite                                  PostgreSQL
    <dir>/                                  <database>
    ├── index.sqlite        the live one    ├── <current schema>     the live tables
    └── index.sqlite.rebuild-<hex>          └── mercato_rebuild_<hex>  the scratch tables
                            the scratch one

`check_index` builds the scratch index up to the block the live one stands at and
compares their rows, table by table; `rebuild_index` builds it up to the chain's head,
then swaps it in within one transaction (SQLite: the online backup API copies every
page into the live file in one write transaction; PostgreSQL: the live tables are
dropped and the scratch ones moved into their schema, transactional DDL). A crash or a
kill before the swap leaves the old index as it was, used by the node meanwhile; the
scratch leftovers are removed by the next run.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, inspect, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError
from web3 import Web3

from mercato.chain.deployment import Deployment
from mercato.errors import IndexDatabaseError
from mercato.index import schema as s
from mercato.index.db import create_index_engine, migrate
from mercato.index.ingest import Indexer, IndexerConfig
from mercato.index.metadata import MetadataSource
from mercato.index.store import Index

SCRATCH_PREFIX = "mercato_rebuild_"
_SQLITE_SCRATCH = ".rebuild-"
# Where ingestion stands, not what it found (they differ between batchings of one chain),
# and the manifest and task spec caches (documents by digest, kept across reorgs on purpose).
_NOT_COMPARED = {"alembic_version", "blocks", "cursor", "manifests", "fl_specs"}
_NOT_COMPARED_COLUMNS = {"id", "search_vector"}  # autoincrement counters; derived
_EXAMPLES = 3
_SNAPSHOT_TRIES = 20


@dataclass(frozen=True)
class TableDifference:
    """How one table of the live index differs from a fresh rebuild.

    Attributes:
        table: The table's name.
        only_in_index: Rows the live index has that the chain does not give.
        only_in_rebuild: Rows the chain gives that the live index lacks.
        examples: A few of those rows, for a person to read.
    """

    table: str
    only_in_index: int
    only_in_rebuild: int
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IndexCheck:
    """What `check_index` found.

    Attributes:
        block: The block both indexes were compared at (the live index's cursor).
        rows: Rows compared in the fresh rebuild.
        differences: One entry per table that differs; empty when the index is right.
    """

    block: int
    rows: int
    differences: list[TableDifference]

    @property
    def matches(self) -> bool:
        """True when the live index holds exactly what a rebuild gives."""
        return not self.differences


@dataclass(frozen=True)
class RebuildReport:
    """What `rebuild_index` did.

    Attributes:
        block: The block the new index stands at.
        events: Events ingested.
        rows: Rows the new index holds (in the compared tables).
    """

    block: int
    events: int
    rows: int


def index_content(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every chain-derived table's rows, sorted, without autoincrement ids.

    Args:
        engine: An index database.

    Returns:
        Table name to its rows (bookkeeping, the manifest cache and full-text tables
        left out).
    """
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        inspector = inspect(conn)
        for table in sorted(inspector.get_table_names()):
            if table.startswith("models_fts") or table in _NOT_COMPARED:
                continue
            columns = [
                c["name"]
                for c in inspector.get_columns(table)
                if c["name"] not in _NOT_COMPARED_COLUMNS
            ]
            quoted = ", ".join(f'"{c}"' for c in columns)
            rows = conn.execute(text(f'SELECT {quoted} FROM "{table}"')).all()
            out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


def check_index(
    index: Index,
    w3: Web3,
    deployment: Deployment,
    metadata: MetadataSource,
    config: IndexerConfig | None = None,
) -> IndexCheck:
    """Compare the index with a fresh rebuild from the chain up to the same block.

    Nothing in the live index is changed. A follower writing to it meanwhile is fine:
    its rows are read between two identical readings of its cursor (each batch commits
    rows and cursor together).

    Args:
        index: The live index.
        w3: The chain.
        deployment: The contracts the index follows.
        metadata: Where manifests come from (as for the live index).
        config: Ingestion settings (confirmations, batch size).

    Returns:
        The differences, table by table.

    Raises:
        IndexDatabaseError: The scratch database could not be made or read.
        IndexRpcError: The chain failed to answer.
        IndexDeploymentMismatchError: The index belongs to another deployment.
    """
    block, live = _live_snapshot(index, deployment)
    with _scratch(index.engine) as scratch:
        fresh = Indexer(Index(scratch.engine), w3, deployment, metadata, config)
        fresh.sync_once(to_block=block)
        rebuilt = index_content(scratch.engine)
    differences = []
    for table in sorted(set(live) | set(rebuilt)):
        have, want = Counter(live.get(table, [])), Counter(rebuilt.get(table, []))
        extra, missing = have - want, want - have
        if extra or missing:
            examples = [f"only in the index: {row!r}" for row in list(extra)[:_EXAMPLES]]
            examples += [f"only in a rebuild: {row!r}" for row in list(missing)[:_EXAMPLES]]
            differences.append(
                TableDifference(table, sum(extra.values()), sum(missing.values()), examples)
            )
    rows = sum(len(r) for r in rebuilt.values())
    return IndexCheck(block=block, rows=rows, differences=differences)


def rebuild_index(
    index: Index,
    w3: Web3,
    deployment: Deployment,
    metadata: MetadataSource,
    config: IndexerConfig | None = None,
) -> RebuildReport:
    """Rebuild the index from the chain into a scratch database, then swap it in.

    The swap is one transaction; until then the live index stays as it was (a crash
    leaves it usable). A follower writing to it meanwhile continues from the new
    index's cursor after the swap.

    Args:
        index: The live index.
        w3: The chain.
        deployment: The contracts to index.
        metadata: Where manifests come from.
        config: Ingestion settings (confirmations, batch size).

    Returns:
        Where the new index stands.

    Raises:
        IndexDatabaseError: The scratch database could not be made, or the swap failed
            (the live index is then unchanged).
        IndexRpcError: The chain failed to answer (the live index is unchanged).
    """
    _remove_leftovers(index.engine)
    with _scratch(index.engine) as scratch:
        report = Indexer(Index(scratch.engine), w3, deployment, metadata, config).sync_once()
        rows = sum(len(r) for r in index_content(scratch.engine).values())
        scratch.swap_into(index.engine)
    return RebuildReport(block=report.indexed_to, events=report.events, rows=rows)


def _live_snapshot(
    index: Index, deployment: Deployment
) -> tuple[int, dict[str, list[tuple[Any, ...]]]]:
    """The live index's block and rows, read between two identical cursor readings."""
    for _ in range(_SNAPSHOT_TRIES):
        before = _cursor(index.engine)
        content = index_content(index.engine)
        if _cursor(index.engine) == before:
            block = before[0] if before is not None else deployment.deploy_block - 1
            return int(block), content
    raise IndexDatabaseError(
        "The index kept changing while it was read. Run 'mercato index check' again, or "
        "stop the node while it runs."
    )


def _cursor(engine: Engine) -> tuple[Any, ...] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(s.Cursor.last_block, s.Cursor.last_hash, s.Cursor.events).where(s.Cursor.id == 1)
        ).first()
    return None if row is None else tuple(row)


@dataclass
class _Scratch:
    """A fresh index database beside the live one, on the same backend."""

    engine: Engine
    sqlite_path: Path | None = None
    schema: str | None = None

    def swap_into(self, live: Engine) -> None:
        """Replace the live index's content by this one's, in one transaction."""
        try:
            if self.sqlite_path is not None:
                self._swap_sqlite(live)
            else:
                self._swap_postgres(live)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise IndexDatabaseError(
                f"Could not swap the rebuilt index in ({exc}); the index is unchanged. "
                "Check that its database is writable and run 'mercato index rebuild' again."
            ) from exc

    def _swap_sqlite(self, live: Engine) -> None:
        self.engine.dispose()
        source = sqlite3.connect(str(self.sqlite_path))
        destination = sqlite3.connect(str(live.url.database), timeout=60)
        try:
            # One write transaction on the live file: readers see the old index or the
            # new one, and a crash in the middle is rolled back from the WAL.
            source.backup(destination)
        finally:
            destination.close()
            source.close()

    def _swap_postgres(self, live: Engine) -> None:
        with live.begin() as conn:
            target = conn.execute(text("SELECT current_schema()")).scalar_one()
            tables = inspect(conn).get_table_names(schema=self.schema)
            for table in tables:
                conn.execute(text(f'DROP TABLE IF EXISTS "{target}"."{table}" CASCADE'))
                conn.execute(text(f'ALTER TABLE "{self.schema}"."{table}" SET SCHEMA "{target}"'))
            # Trigger functions (migration 0011) go with the tables whose triggers call
            # them; the live index's own lost their triggers with its tables.
            functions = conn.execute(
                text(
                    "SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p "
                    "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :schema"
                ),
                {"schema": self.schema},
            ).all()
            for name, arguments in functions:
                conn.execute(text(f'DROP FUNCTION IF EXISTS "{target}"."{name}"({arguments})'))
                conn.execute(
                    text(
                        f'ALTER FUNCTION "{self.schema}"."{name}"({arguments}) '
                        f'SET SCHEMA "{target}"'
                    )
                )
            conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))

    def remove(self, live: Engine) -> None:
        self.engine.dispose()
        if self.sqlite_path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
        elif self.schema is not None:
            with live.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))


@contextmanager
def _scratch(live: Engine) -> Iterator[_Scratch]:
    """Make an empty, migrated index beside `live`; removed on the way out."""
    name = secrets.token_hex(6)
    backend = live.url.get_backend_name()
    try:
        if backend == "sqlite":
            database = live.url.database
            if not database or database == ":memory:":
                raise IndexDatabaseError(
                    "An in-memory index cannot be rebuilt beside itself; give it a file."
                )
            path = Path(f"{database}{_SQLITE_SCRATCH}{name}")
            scratch = _Scratch(create_index_engine(f"sqlite:///{path}"), sqlite_path=path)
        elif backend == "postgresql":
            schema = f"{SCRATCH_PREFIX}{name}"
            with live.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = make_url(live.url.render_as_string(hide_password=False))
            engine = create_engine(
                url, pool_pre_ping=True, connect_args={"options": f"-c search_path={schema}"}
            )
            scratch = _Scratch(engine, schema=schema)
        else:
            raise IndexDatabaseError(f"Cannot rebuild an index on {backend!r}.")
    except SQLAlchemyError as exc:
        raise IndexDatabaseError(
            f"Could not make a scratch index beside {live.url!r} ({exc}). Check that the "
            "database is writable (PostgreSQL: that the user may create a schema)."
        ) from exc
    try:
        migrate(scratch.engine)
        yield scratch
    finally:
        scratch.remove(live)


def _remove_leftovers(live: Engine) -> None:
    """Delete scratch indexes an earlier run left behind when it was killed."""
    if live.url.get_backend_name() == "sqlite":
        database = live.url.database
        if database and database != ":memory:":
            base = Path(database)
            for path in base.parent.glob(f"{base.name}{_SQLITE_SCRATCH}*"):
                path.unlink(missing_ok=True)
        return
    try:
        with live.begin() as conn:
            names = conn.execute(
                text("SELECT nspname FROM pg_namespace WHERE left(nspname, :n) = :prefix"),
                {"n": len(SCRATCH_PREFIX), "prefix": SCRATCH_PREFIX},
            ).scalars()
            for schema in list(names):
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    except SQLAlchemyError as exc:
        raise IndexDatabaseError(
            f"Could not remove an earlier rebuild's leftovers from {live.url!r} ({exc})."
        ) from exc
