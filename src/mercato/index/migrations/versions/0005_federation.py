# SPDX-License-Identifier: AGPL-3.0-only
"""Federated training tasks, their participants and rounds (federation contract events).

One fact table per event kind, each row stamped with its block like every other fact
(a reorg deletes the rows above the fork point), and `fl_specs`, a cache of task spec
documents by digest (like `manifests`: not chain data, kept across reorgs).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UINT = sa.String(78)
_ADDRESS = sa.String(42)
_HEX32 = sa.String(64)


def _fact(name: str, *columns: sa.Column, indexed: tuple[str, ...] = ()) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        *columns,
    )
    for column in ("block_number", "task_id", *indexed):
        op.create_index(f"ix_{name}_{column}", name, [column])


def upgrade() -> None:
    _fact(
        "fl_tasks",
        sa.Column("requester", _ADDRESS, nullable=False),
        sa.Column("coordinator", _ADDRESS, nullable=False),
        sa.Column("spec_digest", _HEX32, nullable=False),
        sa.Column("reward", _UINT, nullable=False),
        sa.Column("stake", _UINT, nullable=False),
        sa.Column("min_participants", sa.Integer(), nullable=False),
        sa.Column("max_participants", sa.Integer(), nullable=False),
        sa.Column("join_deadline", sa.BigInteger(), nullable=False),
        sa.Column("finish_deadline", sa.BigInteger(), nullable=False),
        sa.Column("parent_model_id", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        indexed=("requester", "spec_digest"),
    )
    _fact(
        "fl_participants",
        sa.Column("participant", _ADDRESS, nullable=False),
        sa.Column("seat", sa.Integer(), nullable=False),
        sa.Column("node_key_hash", _HEX32, nullable=False),
        indexed=("participant",),
    )
    _fact(
        "fl_rounds",
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("model_digest", _HEX32, nullable=False),
        sa.Column("round_digest", _HEX32, nullable=False),
        sa.Column("contributors", _UINT, nullable=False),
        sa.Column("metric", _UINT, nullable=False),
    )
    _fact(
        "fl_task_ends",
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("splitter", _ADDRESS, nullable=True),
        sa.Column("shares", sa.Text(), nullable=True),
    )
    _fact(
        "fl_claims",
        sa.Column("account", _ADDRESS, nullable=False),
        sa.Column("amount", _UINT, nullable=False),
        indexed=("account",),
    )
    op.create_table(
        "fl_specs",
        sa.Column("digest", _HEX32, primary_key=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for name in ("fl_specs", "fl_claims", "fl_task_ends", "fl_rounds", "fl_participants"):
        op.drop_table(name)
    op.drop_table("fl_tasks")
