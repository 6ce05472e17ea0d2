# SPDX-License-Identifier: AGPL-3.0-only
"""Search at a million models: a parent's children in each sort's order (SQLite).

`derived_from` lists a parent's children (about 2,000 of a million models for a popular
parent in the benchmark). Found through `lineage`, every child's `models` row was read,
one scattered page each, then all of them sorted to cut a page of 20: 20-50 ms. Now
`lineage_sort_keys` holds each (parent, child) pair of `lineage` with copies of the
child's sort keys (rating, purchases, price; the newest order's key is the child's id),
with an index per sort that starts with the parent, so a page is the first rows of one
index range: about 21 children read, not 2,000 (`mercato.index.search._children_in_order`).

Triggers keep it equal to `lineage` joined with `models`, like the FTS5 table beside
`models`: a lineage row inserted or deleted inserts or deletes its pair (the keys are
NULL until the child's `models` row exists), and a `models` row inserted or changing a
key passes the keys to its pairs. So the projector, a rollback and `mercato index
rebuild` need nothing new, and `mercato index check` compares the table like any other.
The upgrade fills it from an existing index in place. This revision makes it on
SQLite only; migration 0011 makes the same on PostgreSQL.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

KEYS = ("rating_milli", "purchases", "price")
_KEYS = ", ".join(KEYS)
_NEW = ", ".join(f"new.{k}" for k in KEYS)
# The child's keys, read from its `models` row (NULL while it has none).
_OF_CHILD = ", ".join(f"(SELECT {k} FROM models WHERE model_id = new.model_id)" for k in KEYS)

_TABLE = (
    "CREATE TABLE lineage_sort_keys ("
    "parent_id BIGINT NOT NULL, model_id BIGINT NOT NULL, "
    "rating_milli INTEGER, purchases INTEGER, price VARCHAR(78), "
    "PRIMARY KEY (parent_id, model_id)) WITHOUT ROWID"
)
_INDEXES = {
    "ix_lineage_sort_keys_child": "model_id",
    "ix_lineage_sort_keys_rating": "parent_id, rating_milli, model_id",
    "ix_lineage_sort_keys_purchases": "parent_id, purchases, model_id",
    "ix_lineage_sort_keys_price": "parent_id, price, model_id",
}
_INSERT_PAIR = (
    f"INSERT INTO lineage_sort_keys (parent_id, model_id, {_KEYS}) "
    f"VALUES (new.parent_id, new.model_id, {_OF_CHILD});"
)
_DELETE_PAIR = (
    "DELETE FROM lineage_sort_keys WHERE parent_id = old.parent_id AND model_id = old.model_id;"
)
_PASS_KEYS = f"UPDATE lineage_sort_keys SET ({_KEYS}) = ({_NEW}) WHERE model_id = new.model_id;"
_TRIGGERS = {
    "lineage_sort_keys_insert": f"AFTER INSERT ON lineage BEGIN {_INSERT_PAIR} END",
    "lineage_sort_keys_delete": f"AFTER DELETE ON lineage BEGIN {_DELETE_PAIR} END",
    "lineage_sort_keys_update": (
        f"AFTER UPDATE OF parent_id, model_id ON lineage BEGIN {_DELETE_PAIR} {_INSERT_PAIR} END"
    ),
    "models_sort_keys_insert": f"AFTER INSERT ON models BEGIN {_PASS_KEYS} END",
    "models_sort_keys_update": f"AFTER UPDATE OF {_KEYS} ON models BEGIN {_PASS_KEYS} END",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(_TABLE)
    op.execute(
        f"INSERT INTO lineage_sort_keys (parent_id, model_id, {_KEYS}) "
        f"SELECT l.parent_id, l.model_id, {', '.join(f'm.{k}' for k in KEYS)} "
        "FROM lineage l LEFT JOIN models m ON m.model_id = l.model_id"
    )
    for name, columns in _INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON lineage_sort_keys ({columns})")
    for name, body in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    op.execute("DROP TABLE lineage_sort_keys")
