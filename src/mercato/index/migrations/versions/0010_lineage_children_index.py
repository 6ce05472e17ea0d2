# SPDX-License-Identifier: AGPL-3.0-only
"""A parent's children straight off one index: `lineage (parent_id, model_id)`.

`ix_lineage_parent_id` held the parent alone, so listing a parent's children read each
lineage row from the table for its child's id; on a million models PostgreSQL chose to
scan the whole primary key (child, parent) in parallel instead, ~100,000 entries for a
parent's 2,000 children. `ix_lineage_children` holds the child's id after the parent:
the children are one range of it, read without the table, already in id order (what
`derived_from` search and a model's page list). It serves every lookup the old index
served, which goes. Built in place on upgrade, on both databases.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_lineage_children", "lineage", ["parent_id", "model_id"])
    op.drop_index("ix_lineage_parent_id", table_name="lineage")


def downgrade() -> None:
    op.create_index("ix_lineage_parent_id", "lineage", ["parent_id"])
    op.drop_index("ix_lineage_children", table_name="lineage")
