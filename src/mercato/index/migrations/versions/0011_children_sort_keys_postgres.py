# SPDX-License-Identifier: AGPL-3.0-only
"""A parent's children in each sort's order on PostgreSQL too (`lineage_sort_keys`).

Migration 0007 gave SQLite `lineage_sort_keys`; PostgreSQL sorted a parent's children
itself, which on a million models is 2,000 scattered `models` rows read per page for a
popular parent (30-60 ms on a loaded machine). The same table, indexes and trigger
logic now exist on PostgreSQL, as plpgsql trigger functions: a lineage row inserted,
deleted or moved inserts, deletes or moves its pair, and a `models` row inserted or
changing a key passes the keys on. The upgrade fills the table in place.

The functions live in the index's schema beside its tables; `mercato index rebuild`
moves them with the tables when it swaps a rebuilt index in
(`mercato.index.rebuild._Scratch._swap_postgres`), so the triggers keep working.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KEYS = ("rating_milli", "purchases", "price")
_KEYS = ", ".join(KEYS)
_NEW = ", ".join(f"new.{k}" for k in KEYS)
_INDEXES = {
    "ix_lineage_sort_keys_child": "model_id",
    "ix_lineage_sort_keys_rating": "parent_id, rating_milli, model_id",
    "ix_lineage_sort_keys_purchases": "parent_id, purchases, model_id",
    "ix_lineage_sort_keys_price": "parent_id, price, model_id",
}
_INSERT_PAIR = (
    f"INSERT INTO lineage_sort_keys (parent_id, model_id, {_KEYS}) "
    f"SELECT new.parent_id, new.model_id, {_KEYS} FROM (SELECT 1) AS one "
    "LEFT JOIN models ON models.model_id = new.model_id;"
)
_DELETE_PAIR = (
    "DELETE FROM lineage_sort_keys WHERE parent_id = old.parent_id AND model_id = old.model_id;"
)
_STATEMENTS = [
    "CREATE TABLE lineage_sort_keys ("
    "parent_id BIGINT NOT NULL, model_id BIGINT NOT NULL, "
    "rating_milli INTEGER, purchases INTEGER, price VARCHAR(78), "
    "PRIMARY KEY (parent_id, model_id))",
    f"INSERT INTO lineage_sort_keys (parent_id, model_id, {_KEYS}) "
    f"SELECT l.parent_id, l.model_id, {', '.join(f'm.{k}' for k in KEYS)} "
    "FROM lineage l LEFT JOIN models m ON m.model_id = l.model_id",
    *(f"CREATE INDEX {name} ON lineage_sort_keys ({cols})" for name, cols in _INDEXES.items()),
    "CREATE FUNCTION mercato_lineage_sort_keys() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"IF tg_op <> 'INSERT' THEN {_DELETE_PAIR} END IF; "
    f"IF tg_op <> 'DELETE' THEN {_INSERT_PAIR} END IF; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER lineage_sort_keys_change AFTER INSERT OR DELETE OR UPDATE OF "
    "parent_id, model_id ON lineage FOR EACH ROW EXECUTE FUNCTION mercato_lineage_sort_keys()",
    "CREATE FUNCTION mercato_models_sort_keys() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"UPDATE lineage_sort_keys SET ({_KEYS}) = ({_NEW}) WHERE model_id = new.model_id; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER models_sort_keys_insert AFTER INSERT ON models "
    "FOR EACH ROW EXECUTE FUNCTION mercato_models_sort_keys()",
    f"CREATE TRIGGER models_sort_keys_update AFTER UPDATE OF {_KEYS} ON models "
    f"FOR EACH ROW WHEN (({', '.join(f'old.{k}' for k in KEYS)}) IS DISTINCT FROM ({_NEW})) "
    "EXECUTE FUNCTION mercato_models_sort_keys()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _STATEMENTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER models_sort_keys_update ON models")
        op.execute("DROP TRIGGER models_sort_keys_insert ON models")
        op.execute("DROP TRIGGER lineage_sort_keys_change ON lineage")
        op.execute("DROP FUNCTION mercato_models_sort_keys()")
        op.execute("DROP FUNCTION mercato_lineage_sort_keys()")
        op.execute("DROP TABLE lineage_sort_keys")
