# SPDX-License-Identifier: AGPL-3.0-only
"""Search at a million models: words and their markers kept per task (PostgreSQL).

Two words and a task still cost 20-95 ms on a million models through
`ix_models_search_task` (migration 0009). Its lists are the words' and the task's over
all models: `tabular` (~310,000 models), `^clas` (~80,000) and `=text-classification`
(~166,000) were intersected to find ~3,500 (11 ms in the index alone, 19 ms for two
words that are also common tags), and a last word under four letters (`speech vit`)
had no marker at all, so the plan walked a sort's index checking each row (50-95 ms).

`ix_models_task_words` replaces it: each model's plain words, and `^` + the first three
and `^` + the first four letters of each of its plain-started words, every one behind
the md5 hex digits of the model's task (`<md5>tabular`, `<md5>^vit`). A word's list is
then split by task, each a sixth as long in six tasks, and a last word of three letters
is narrowed by its marker too. The query asks for the first words exactly and the last
word's marker, in the task (`mercato.index.search.task_words_query`); the full query
and the task are then checked on the rows found, as before. The task is only hashed,
never parsed. A model without a task has no entries (no task filter matches it).

Built in place on upgrade from columns the row already holds (no new column or
trigger). SQLite's FTS5 plan is unchanged.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Kept equal to `mercato.index.search.TASK_WORDS_VECTOR`: PostgreSQL uses an expression
# index only for the very same expression (a test checks the plan).
_TASK_KEY = "md5(models.task)"
TASK_WORDS_VECTOR = (
    "array_to_tsvector(array_remove(array_remove(string_to_array("
    "regexp_replace(models.search_vector::text, '''([a-z0-9]+)''[^ ]*|[^ ]+', "
    f"{_TASK_KEY} || '\\1', 'g') || ' ' || "
    "regexp_replace(models.search_vector::text, '''(([a-z0-9]{3})([a-z0-9])?)?[^ ]*', "
    f"{_TASK_KEY} || '^\\2 ' || {_TASK_KEY} || '^\\2\\3', 'g'), ' '), "
    f"{_TASK_KEY}), {_TASK_KEY} || '^'))"
)
# Migration 0009's index, for the downgrade.
NARROWING_VECTOR = (
    "(search_vector"
    " || CASE WHEN task IS NULL THEN ''::tsvector"
    " ELSE array_to_tsvector(ARRAY['=' || task]) END"
    " || array_to_tsvector(array_remove(string_to_array(regexp_replace("
    r"search_vector::text, '''([a-z0-9]{4})?[^ ]*', '^\1', 'g'), ' '), '^')))"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_models_search_task")
        op.execute(f"CREATE INDEX ix_models_task_words ON models USING gin ({TASK_WORDS_VECTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_models_task_words")
        op.execute(f"CREATE INDEX ix_models_search_task ON models USING gin ({NARROWING_VECTOR})")
