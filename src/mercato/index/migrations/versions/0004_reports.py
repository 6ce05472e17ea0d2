# SPDX-License-Identifier: AGPL-3.0-only
"""Reports on models from the reports contract (`Reported` events).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("reporter", sa.String(42), nullable=False),
        sa.Column("reason_code", sa.Integer(), nullable=False),
        sa.Column("evidence_cid_digest", sa.String(64), nullable=False),
        sa.Column("license_holder", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_reports_block_number", "reports", ["block_number"])
    op.create_index("ix_reports_model_id", "reports", ["model_id"])


def downgrade() -> None:
    op.drop_table("reports")
