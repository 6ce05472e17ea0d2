# SPDX-License-Identifier: AGPL-3.0-only
"""Block timestamps, so pages can show when something happened instead of a block number.

An index built before this revision has no timestamps for the blocks it already read;
the upgrade rewinds its cursor to the deployment block, so the next sync reads the
events again (the index is a cache of the chain: rebuilding it loses nothing).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Every table filled from events, in the order a full rebuild empties them.
_FACTS = (
    "transfers",
    "listings",
    "orders",
    "reviews",
    "evaluations",
    "credits",
    "withdrawals",
    "providers",
    "agents",
    "protocol_fees",
    "contract_owners",
    "token_transfers",
    "versions",
    "lineage",
    "pending_metadata",
    "model_tags",
    "models",
    "blocks",
)


def upgrade() -> None:
    op.create_table(
        "block_times",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    # Re-read every event from the start so each indexed block gets its timestamp.
    for name in _FACTS:
        op.execute(sa.table(name).delete())
    cursor = sa.table(
        "cursor",
        sa.column("start_block"),
        sa.column("last_block"),
        sa.column("last_hash"),
        sa.column("events"),
    )
    op.execute(cursor.update().values(last_block=cursor.c.start_block, last_hash=None, events=0))


def downgrade() -> None:
    op.drop_table("block_times")
