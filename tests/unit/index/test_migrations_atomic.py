# SPDX-License-Identifier: AGPL-3.0-only
"""A migration that fails half-way leaves the SQLite index as it was: no half schema.

Real SQLite files and Alembic; the failure is injected at a chosen SQL statement (a disk
error or a crash of the statement would do the same)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, event, inspect, text

from mercato.errors import IndexDatabaseError
from mercato.index.db import create_index_engine, migrate


class Interrupted(RuntimeError):
    """Stands in for a statement that fails mid-migration."""


def test_a_migration_failing_half_way_leaves_an_empty_index_and_can_be_run_again(
    tmp_path: Path,
) -> None:
    engine = create_index_engine(f"sqlite:///{tmp_path / 'index.sqlite'}")
    statements = 0

    def fail_at_the_twentieth_ddl(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        nonlocal statements
        if statement.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
            statements += 1
            if statements == 20:
                raise Interrupted("the disk went away")

    # On every engine: migrations run on one of their own (`db._sqlite_migration_engine`).
    event.listen(Engine, "before_cursor_execute", fail_at_the_twentieth_ddl)
    try:
        with pytest.raises(Interrupted):
            migrate(engine)
    finally:
        event.remove(Engine, "before_cursor_execute", fail_at_the_twentieth_ddl)
    assert statements == 20
    assert inspect(engine).get_table_names() == []  # not even alembic_version
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"alembic_version", "models"} <= tables
    engine.dispose()


def test_an_index_from_a_newer_version_is_a_typed_error_saying_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    engine = create_index_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'nonexistent'"))
    with pytest.raises(IndexDatabaseError, match="written by a newer Mercato"):
        migrate(engine)


@pytest.mark.parametrize(
    "url_of",
    [
        lambda tmp: "sqlite:///:memory:",
        lambda tmp: f"sqlite:///{tmp / '100% models' / 'index.sqlite'}",
    ],
    ids=["in-memory", "percent-in-path"],
)
def test_a_url_with_a_percent_sign_migrates(tmp_path: Path, url_of) -> None:  # type: ignore[no-untyped-def]
    # Alembic reads its options through ConfigParser interpolation, which refused any
    # `%` (`:memory:` is rendered `%3Amemory%3A`): the node could not open such an index.
    engine = create_index_engine(url_of(tmp_path))
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM models")).scalar_one() == 0
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
