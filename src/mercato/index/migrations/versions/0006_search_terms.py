# SPDX-License-Identifier: AGPL-3.0-only
"""Search at a million models: the full-text index's term list (SQLite).

A search word longer than FTS5's prefix lists (`resnet` while someone types it) is a
prefix FTS5 answers by merging the list of every indexed word it starts, again for
each model it checks: 11 ms per check for a word in a third of a million models. Search
reads the words a prefix starts from this list instead and asks for them whole, one
seek each (`mercato.index.search._prefix_words`). `models_fts_terms` is an `fts5vocab`
table of the `instance` kind: a view of the FTS5 index itself, in term order and read
lazily (the `row` kind would count every document of each word it passes), so it takes
no space and needs no upkeep.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE models_fts_terms USING fts5vocab(models_fts, instance)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE models_fts_terms")
