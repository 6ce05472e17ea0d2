# SPDX-License-Identifier: AGPL-3.0-only
"""A federated task's privacy budget: epsilon after each round, and delta.

`fl_specs.dp_epsilons` holds, for a spec that adds noise (private mode, or local DP in
scored mode), the JSON list of epsilon after rounds 1..n from Flower's RDP accountant,
and `dp_delta` the delta they hold at; both are NULL for a spec that adds none. They are
a function of the spec document alone (`mercato.index.federation.privacy_columns`), so
specs cached before this revision are filled in here from the document kept.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fl_specs", sa.Column("dp_delta", sa.Float(), nullable=True))
    op.add_column("fl_specs", sa.Column("dp_epsilons", sa.Text(), nullable=True))
    from mercato.index.federation import privacy_columns

    bind = op.get_bind()
    specs = sa.table(
        "fl_specs",
        sa.column("digest", sa.String),
        sa.column("valid", sa.Boolean),
        sa.column("document", sa.Text),
        sa.column("dp_delta", sa.Float),
        sa.column("dp_epsilons", sa.Text),
    )
    for digest, document in bind.execute(
        sa.select(specs.c.digest, specs.c.document).where(specs.c.valid.is_(True))
    ):
        columns = privacy_columns(document)
        if columns["dp_epsilons"] is not None:
            bind.execute(specs.update().where(specs.c.digest == digest).values(**columns))


def downgrade() -> None:
    with op.batch_alter_table("fl_specs") as batch:
        batch.drop_column("dp_epsilons")
        batch.drop_column("dp_delta")
