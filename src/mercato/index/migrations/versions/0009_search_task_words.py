# SPDX-License-Identifier: AGPL-3.0-only
"""Search at a million models: words and a task in one exact index scan (PostgreSQL).

Two words and a task (`resnet bert` in translation) cost ~50 ms on a million models:
the last word is a prefix (`bert:*`), which GIN answers by gathering every match of
every word it starts into a bitmap (115,000 rows for `bert`) before intersecting, and
the ~3,000 models both words match were then read from the table to keep the sixth
with the task (or the task's btree index, 166,000 rows, was intersected too).

`ix_models_search_task` is a second GIN index, over each model's words plus two kinds
of marker word: `=<task>`, the model's task, and `^` followed by the first four letters
of each of its words (plain `[a-z0-9]` ones). Search words start with a letter or digit,
so no search word is, or starts with, a marker. A query of several plain words and a
task then asks this index for exact words only: the first words, `^` + the last word's
first four letters, and the task's word; a model holding a word the last one starts
holds that marker too, so the index keeps every match, and the few it keeps besides
(`bertha` for `berta`) are dropped by the full query, checked on those rows alone
(`mercato.index.search._narrowed`). Searches without a task keep using
`ix_models_search_vector`, so checking a row along a sort's index stays as cheap.

The index is an expression over columns the row already holds: no new column, no
trigger or function to keep in step (so a rebuild swapped in from a scratch schema
keeps it), built in place on upgrade. SQLite's FTS5 plan is unchanged.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Kept equal to `mercato.index.search.NARROWING_VECTOR`: PostgreSQL uses an expression
# index only for the very same expression (a test checks the plan).
NARROWING_VECTOR = (
    "(search_vector"
    " || CASE WHEN task IS NULL THEN ''::tsvector"
    " ELSE array_to_tsvector(ARRAY['=' || task]) END"
    " || array_to_tsvector(array_remove(string_to_array(regexp_replace("
    r"search_vector::text, '''([a-z0-9]{4})?[^ ]*', '^\1', 'g'), ' '), '^')))"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_models_search_task ON models USING gin ({NARROWING_VECTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_models_search_task")
