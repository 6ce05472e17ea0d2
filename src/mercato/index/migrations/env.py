# SPDX-License-Identifier: AGPL-3.0-only
"""Alembic environment: runs on the connection `mercato.index.db.migrate` hands over."""

from __future__ import annotations

from alembic import context

from mercato.index.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables when needed.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
