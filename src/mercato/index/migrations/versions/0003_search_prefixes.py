# SPDX-License-Identifier: AGPL-3.0-only
"""Prefix indexes for full-text search, so a one- to three-letter prefix stays fast.

Search sends the last word of a query as a prefix (`r*` while someone types "resnet").
Without a prefix index, SQLite's FTS5 answers `r*` by reading and merging the list of
every indexed word that starts with "r", which over a million models is hundreds of
milliseconds; with `prefix='1 2 3'` it keeps one list per prefix of one, two and three
letters and reads only that one. The upgrade recreates the FTS5 table with the option
and rebuilds it from `models` (its content table, so nothing is lost); the triggers
that keep it in step name the table and go on working. PostgreSQL's GIN index answers
prefixes from its sorted lexicon and needs no change.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = (
    "name, tags_text, text, content='models', content_rowid='model_id', "
    "tokenize='unicode61 remove_diacritics 2'"
)


def _recreate(options: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TABLE models_fts")
    op.execute(f"CREATE VIRTUAL TABLE models_fts USING fts5({options})")
    op.execute("INSERT INTO models_fts(models_fts) VALUES ('rebuild')")


def upgrade() -> None:
    _recreate(f"{_COLUMNS}, prefix='1 2 3'")


def downgrade() -> None:
    _recreate(_COLUMNS)
