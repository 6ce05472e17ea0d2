# SPDX-License-Identifier: AGPL-3.0-only
"""Federated training tasks, their participants and rounds (federation contract events).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
