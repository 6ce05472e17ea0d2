# SPDX-License-Identifier: AGPL-3.0-only
"""Search at a million models: the task as a term of the full-text index (SQLite).

Two common words and a task (`tiny vision` in translation) matched ~3,000 models by
their words on a million, and each was read from `models` to keep the sixth with the
task: 25-50 ms on a loaded machine. FTS5 now holds each model's task as one more term,
in a fourth column `task_term`: U+E000 (a private-use character, which FTS5's
unicode61 tokenizer keeps inside a word and which no search word holds) followed by
the hex digits of the task's UTF-8 bytes, so `translation` is one term, distinct for
each task, case and all, and no search word or prefix can match it. Search asks FTS5
for the words and that term together (`mercato.index.search.task_term`): FTS5
intersects the lists in its index, and the ~500 models it yields are the matches,
counted and read alone.

FTS5 reads its columns from an external content table by name, and `models` has no
`task_term`: the content table becomes the view `models_fts_content` (the models' ids,
name, tags, text and that term), the full-text table is recreated over it and rebuilt,
and the triggers that keep it in step hand it the term too, also when only the task
changes. `models_fts_terms` (migration 0006) is recreated over the new table.
`mercato index rebuild` copies the whole file on SQLite, view and triggers with it.
PostgreSQL has held the task as a word of `ix_models_search_task` since migration 0009.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_OPTIONS = "content_rowid='model_id', tokenize='unicode61 remove_diacritics 2', prefix='1 2 3'"
# Kept equal to `mercato.index.search.task_term`: char(57344) is U+E000.
_TERM = "CASE WHEN {0}.task IS NULL THEN NULL ELSE char(57344) || hex({0}.task) END"
_COLUMNS = "rowid, name, tags_text, text, task_term"


def _values(row: str) -> str:
    return f"{row}.model_id, {row}.name, {row}.tags_text, {row}.text, {_TERM.format(row)}"


_UPGRADE = [
    "DROP TRIGGER models_fts_insert",
    "DROP TRIGGER models_fts_delete",
    "DROP TRIGGER models_fts_update",
    "DROP TABLE models_fts_terms",
    "DROP TABLE models_fts",
    "CREATE VIEW models_fts_content AS SELECT model_id, name, tags_text, text, "
    f"{_TERM.format('models')} AS task_term FROM models",
    "CREATE VIRTUAL TABLE models_fts USING fts5(name, tags_text, text, task_term, "
    f"content='models_fts_content', {_OPTIONS})",
    "INSERT INTO models_fts(models_fts) VALUES ('rebuild')",
    "CREATE VIRTUAL TABLE models_fts_terms USING fts5vocab(models_fts, instance)",
    "CREATE TRIGGER models_fts_insert AFTER INSERT ON models BEGIN "
    f"INSERT INTO models_fts({_COLUMNS}) VALUES ({_values('new')}); END",
    "CREATE TRIGGER models_fts_delete AFTER DELETE ON models BEGIN "
    f"INSERT INTO models_fts(models_fts, {_COLUMNS}) VALUES ('delete', {_values('old')}); END",
    "CREATE TRIGGER models_fts_update AFTER UPDATE OF name, tags_text, text, task ON models "
    f"BEGIN INSERT INTO models_fts(models_fts, {_COLUMNS}) VALUES ('delete', {_values('old')}); "
    f"INSERT INTO models_fts({_COLUMNS}) VALUES ({_values('new')}); END",
]

_OLD_COLUMNS = "rowid, name, tags_text, text"
_OLD_NEW = "new.model_id, new.name, new.tags_text, new.text"
_OLD_OLD = "old.model_id, old.name, old.tags_text, old.text"
_DOWNGRADE = [
    "DROP TRIGGER models_fts_insert",
    "DROP TRIGGER models_fts_delete",
    "DROP TRIGGER models_fts_update",
    "DROP TABLE models_fts_terms",
    "DROP TABLE models_fts",
    "DROP VIEW models_fts_content",
    "CREATE VIRTUAL TABLE models_fts USING fts5(name, tags_text, text, content='models', "
    f"{_OPTIONS})",
    "INSERT INTO models_fts(models_fts) VALUES ('rebuild')",
    "CREATE VIRTUAL TABLE models_fts_terms USING fts5vocab(models_fts, instance)",
    "CREATE TRIGGER models_fts_insert AFTER INSERT ON models BEGIN "
    f"INSERT INTO models_fts({_OLD_COLUMNS}) VALUES ({_OLD_NEW}); END",
    "CREATE TRIGGER models_fts_delete AFTER DELETE ON models BEGIN "
    f"INSERT INTO models_fts(models_fts, {_OLD_COLUMNS}) VALUES ('delete', {_OLD_OLD}); END",
    "CREATE TRIGGER models_fts_update AFTER UPDATE OF name, tags_text, text ON models BEGIN "
    f"INSERT INTO models_fts(models_fts, {_OLD_COLUMNS}) VALUES ('delete', {_OLD_OLD}); "
    f"INSERT INTO models_fts({_OLD_COLUMNS}) VALUES ({_OLD_NEW}); END",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _DOWNGRADE:
            op.execute(statement)
