# SPDX-License-Identifier: AGPL-3.0-only
"""`ix_models_task` on (task, model_id): whether a model has a task, off the index alone.

Words and a task on SQLite drove the query by the words' matches (~3,000 for two common
name words of a million models) and read every match's `models` row to keep the sixth
with the task: 30-50 ms. With the model's id beside the task in the index, each match is
checked against the task with one probe of this index, without the row, and only the
rows with the task are read (`mercato.index.search._fts_filter`): ~3x less. Everything
the old (task) index served, this one serves. Rebuilt in place on both databases.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_models_task", table_name="models")
    op.create_index("ix_models_task", "models", ["task", "model_id"])


def downgrade() -> None:
    op.drop_index("ix_models_task", table_name="models")
    op.create_index("ix_models_task", "models", ["task"])
