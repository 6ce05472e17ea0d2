# SPDX-License-Identifier: AGPL-3.0-only
"""`ix_models_task` on (task, model_id): whether a model has a task, off the index alone.

Meant for words and a task on SQLite, which drive the query by the words' matches
(~3,000 for two common name words of a million models) and read every match's row to
keep the sixth with the task: each match probed in this index instead, without its
row, took a third of the time in isolation, but measured through search (the matches
counted first, probes and all) it saved nothing, so search does not use it; the index
serves everything the old (task) one served, and stays. Rebuilt in place on both
databases.

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
