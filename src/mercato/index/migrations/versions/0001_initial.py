# SPDX-License-Identifier: AGPL-3.0-only
"""The first schema: event facts, current model state, block hashes, cursor, full-text.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Full-text search differs per backend: an FTS5 table kept in step by triggers on
# SQLite, a generated tsvector column with a GIN index on PostgreSQL. The 'simple'
# configuration (no stemming) matches what FTS5's unicode61 tokenizer does, so a query
# finds the same models on both.
_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE models_fts USING fts5(name, tags_text, text, content='models', "
    "content_rowid='model_id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER models_fts_insert AFTER INSERT ON models BEGIN "
    "INSERT INTO models_fts(rowid, name, tags_text, text) "
    "VALUES (new.model_id, new.name, new.tags_text, new.text); END",
    "CREATE TRIGGER models_fts_delete AFTER DELETE ON models BEGIN "
    "INSERT INTO models_fts(models_fts, rowid, name, tags_text, text) "
    "VALUES ('delete', old.model_id, old.name, old.tags_text, old.text); END",
    "CREATE TRIGGER models_fts_update AFTER UPDATE OF name, tags_text, text ON models BEGIN "
    "INSERT INTO models_fts(models_fts, rowid, name, tags_text, text) "
    "VALUES ('delete', old.model_id, old.name, old.tags_text, old.text); "
    "INSERT INTO models_fts(rowid, name, tags_text, text) "
    "VALUES (new.model_id, new.name, new.tags_text, new.text); END",
]
_POSTGRES_FTS = [
    "ALTER TABLE models ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('simple', coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('simple', tags_text), 'B') || "
    "to_tsvector('simple', text)) STORED",
    "CREATE INDEX ix_models_search_vector ON models USING gin (search_vector)",
]


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("owner", sa.String(length=42), nullable=False),
        sa.Column("agent", sa.String(length=42), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_agents_block_number"), "agents", ["block_number"], unique=False)
    op.create_index(op.f("ix_agents_owner"), "agents", ["owner"], unique=False)
    op.create_table(
        "blocks",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "contract_owners",
        sa.Column("contract", sa.String(length=16), nullable=False),
        sa.Column("previous_owner", sa.String(length=42), nullable=False),
        sa.Column("new_owner", sa.String(length=42), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_contract_owners_block_number"), "contract_owners", ["block_number"], unique=False
    )
    op.create_table(
        "credits",
        sa.Column("account", sa.String(length=42), nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("buyer", sa.String(length=42), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.String(length=78), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_credits_account"), "credits", ["account"], unique=False)
    op.create_index(op.f("ix_credits_block_number"), "credits", ["block_number"], unique=False)
    op.create_index(op.f("ix_credits_model_id"), "credits", ["model_id"], unique=False)
    op.create_table(
        "cursor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contracts", sa.Text(), nullable=False),
        sa.Column("start_block", sa.BigInteger(), nullable=False),
        sa.Column("last_block", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=66), nullable=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "evaluations",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(length=42), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("dataset_cid_digest", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("score", sa.String(length=80), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_evaluations_author"), "evaluations", ["author"], unique=False)
    op.create_index(
        op.f("ix_evaluations_block_number"), "evaluations", ["block_number"], unique=False
    )
    op.create_index(op.f("ix_evaluations_model_id"), "evaluations", ["model_id"], unique=False)
    op.create_table(
        "lineage",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("royalty_bps", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "parent_id"),
    )
    op.create_index(op.f("ix_lineage_block_number"), "lineage", ["block_number"], unique=False)
    op.create_index(op.f("ix_lineage_parent_id"), "lineage", ["parent_id"], unique=False)
    op.create_table(
        "listings",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.String(length=78), nullable=False),
        sa.Column("license_duration", sa.BigInteger(), nullable=False),
        sa.Column("for_sale", sa.Boolean(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_listings_block_number"), "listings", ["block_number"], unique=False)
    op.create_index(op.f("ix_listings_model_id"), "listings", ["model_id"], unique=False)
    op.create_table(
        "manifests",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("license", sa.String(length=200), nullable=True),
        sa.Column("task", sa.String(length=100), nullable=True),
        sa.Column("library", sa.String(length=100), nullable=True),
        sa.Column("tags_json", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "model_tags",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "tag"),
    )
    op.create_index(op.f("ix_model_tags_tag"), "model_tags", ["tag"], unique=False)
    op.create_table(
        "models",
        sa.Column("model_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("creator", sa.String(length=42), nullable=False),
        sa.Column("owner", sa.String(length=42), nullable=False),
        sa.Column("created_block", sa.BigInteger(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("metadata_version", sa.Integer(), nullable=True),
        sa.Column("searchable", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("license", sa.String(length=200), nullable=True),
        sa.Column("task", sa.String(length=100), nullable=True),
        sa.Column("library", sa.String(length=100), nullable=True),
        sa.Column("tags_text", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("for_sale", sa.Boolean(), nullable=False),
        sa.Column("price", sa.String(length=78), nullable=False),
        sa.Column("license_duration", sa.BigInteger(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("rating_milli", sa.Integer(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model_id"),
    )
    op.create_index(op.f("ix_models_creator"), "models", ["creator"], unique=False)
    op.create_index(op.f("ix_models_license"), "models", ["license"], unique=False)
    op.create_index(op.f("ix_models_owner"), "models", ["owner"], unique=False)
    op.create_index("ix_models_price", "models", ["price", "model_id"], unique=False)
    op.create_index("ix_models_purchases", "models", ["purchases", "model_id"], unique=False)
    op.create_index("ix_models_rating", "models", ["rating_milli", "model_id"], unique=False)
    op.create_index(op.f("ix_models_task"), "models", ["task"], unique=False)
    op.create_table(
        "orders",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("buyer", sa.String(length=42), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("price", sa.String(length=78), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("buyer_key", sa.String(length=64), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("closed_block", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("expiry", sa.BigInteger(), nullable=True),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_orders_block_number"), "orders", ["block_number"], unique=False)
    op.create_index(op.f("ix_orders_buyer"), "orders", ["buyer"], unique=False)
    op.create_index(op.f("ix_orders_closed_block"), "orders", ["closed_block"], unique=False)
    op.create_index(op.f("ix_orders_model_id"), "orders", ["model_id"], unique=False)
    op.create_table(
        "pending_metadata",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("manifest_digest", sa.String(length=64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "version"),
    )
    op.create_index(
        op.f("ix_pending_metadata_block_number"), "pending_metadata", ["block_number"], unique=False
    )
    op.create_index(
        op.f("ix_pending_metadata_manifest_digest"),
        "pending_metadata",
        ["manifest_digest"],
        unique=False,
    )
    op.create_table(
        "protocol_fees",
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_protocol_fees_block_number"), "protocol_fees", ["block_number"], unique=False
    )
    op.create_table(
        "providers",
        sa.Column("account", sa.String(length=42), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_providers_account"), "providers", ["account"], unique=False)
    op.create_index(op.f("ix_providers_block_number"), "providers", ["block_number"], unique=False)
    op.create_table(
        "reviews",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("reviewer", sa.String(length=42), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("text_cid_digest", sa.String(length=64), nullable=False),
        sa.Column("updated", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_reviews_block_number"), "reviews", ["block_number"], unique=False)
    op.create_index(op.f("ix_reviews_model_id"), "reviews", ["model_id"], unique=False)
    op.create_table(
        "token_transfers",
        sa.Column("sender", sa.String(length=42), nullable=False),
        sa.Column("receiver", sa.String(length=42), nullable=False),
        sa.Column("value", sa.String(length=78), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_token_transfers_block_number"), "token_transfers", ["block_number"], unique=False
    )
    op.create_index(
        op.f("ix_token_transfers_receiver"), "token_transfers", ["receiver"], unique=False
    )
    op.create_index(op.f("ix_token_transfers_sender"), "token_transfers", ["sender"], unique=False)
    op.create_table(
        "transfers",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(length=42), nullable=False),
        sa.Column("receiver", sa.String(length=42), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_transfers_block_number"), "transfers", ["block_number"], unique=False)
    op.create_index(op.f("ix_transfers_model_id"), "transfers", ["model_id"], unique=False)
    op.create_table(
        "versions",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_cid_digest", sa.String(length=64), nullable=False),
        sa.Column("plaintext_sha256", sa.String(length=64), nullable=False),
        sa.Column("manifest_cid_digest", sa.String(length=64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("deprecated_block", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("model_id", "version"),
    )
    op.create_index(op.f("ix_versions_block_number"), "versions", ["block_number"], unique=False)
    op.create_index(
        op.f("ix_versions_deprecated_block"), "versions", ["deprecated_block"], unique=False
    )
    op.create_table(
        "withdrawals",
        sa.Column("account", sa.String(length=42), nullable=False),
        sa.Column("amount", sa.String(length=78), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_withdrawals_account"), "withdrawals", ["account"], unique=False)
    op.create_index(
        op.f("ix_withdrawals_block_number"), "withdrawals", ["block_number"], unique=False
    )

    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_FTS if dialect == "sqlite" else _POSTGRES_FTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE models_fts")
    op.drop_index(op.f("ix_withdrawals_block_number"), table_name="withdrawals")
    op.drop_index(op.f("ix_withdrawals_account"), table_name="withdrawals")
    op.drop_table("withdrawals")
    op.drop_index(op.f("ix_versions_deprecated_block"), table_name="versions")
    op.drop_index(op.f("ix_versions_block_number"), table_name="versions")
    op.drop_table("versions")
    op.drop_index(op.f("ix_transfers_model_id"), table_name="transfers")
    op.drop_index(op.f("ix_transfers_block_number"), table_name="transfers")
    op.drop_table("transfers")
    op.drop_index(op.f("ix_token_transfers_sender"), table_name="token_transfers")
    op.drop_index(op.f("ix_token_transfers_receiver"), table_name="token_transfers")
    op.drop_index(op.f("ix_token_transfers_block_number"), table_name="token_transfers")
    op.drop_table("token_transfers")
    op.drop_index(op.f("ix_reviews_model_id"), table_name="reviews")
    op.drop_index(op.f("ix_reviews_block_number"), table_name="reviews")
    op.drop_table("reviews")
    op.drop_index(op.f("ix_providers_block_number"), table_name="providers")
    op.drop_index(op.f("ix_providers_account"), table_name="providers")
    op.drop_table("providers")
    op.drop_index(op.f("ix_protocol_fees_block_number"), table_name="protocol_fees")
    op.drop_table("protocol_fees")
    op.drop_index(op.f("ix_pending_metadata_manifest_digest"), table_name="pending_metadata")
    op.drop_index(op.f("ix_pending_metadata_block_number"), table_name="pending_metadata")
    op.drop_table("pending_metadata")
    op.drop_index(op.f("ix_orders_model_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_closed_block"), table_name="orders")
    op.drop_index(op.f("ix_orders_buyer"), table_name="orders")
    op.drop_index(op.f("ix_orders_block_number"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_models_task"), table_name="models")
    op.drop_index("ix_models_rating", table_name="models")
    op.drop_index("ix_models_purchases", table_name="models")
    op.drop_index("ix_models_price", table_name="models")
    op.drop_index(op.f("ix_models_owner"), table_name="models")
    op.drop_index(op.f("ix_models_license"), table_name="models")
    op.drop_index(op.f("ix_models_creator"), table_name="models")
    op.drop_table("models")
    op.drop_index(op.f("ix_model_tags_tag"), table_name="model_tags")
    op.drop_table("model_tags")
    op.drop_table("manifests")
    op.drop_index(op.f("ix_listings_model_id"), table_name="listings")
    op.drop_index(op.f("ix_listings_block_number"), table_name="listings")
    op.drop_table("listings")
    op.drop_index(op.f("ix_lineage_parent_id"), table_name="lineage")
    op.drop_index(op.f("ix_lineage_block_number"), table_name="lineage")
    op.drop_table("lineage")
    op.drop_index(op.f("ix_evaluations_model_id"), table_name="evaluations")
    op.drop_index(op.f("ix_evaluations_block_number"), table_name="evaluations")
    op.drop_index(op.f("ix_evaluations_author"), table_name="evaluations")
    op.drop_table("evaluations")
    op.drop_table("cursor")
    op.drop_index(op.f("ix_credits_model_id"), table_name="credits")
    op.drop_index(op.f("ix_credits_block_number"), table_name="credits")
    op.drop_index(op.f("ix_credits_account"), table_name="credits")
    op.drop_table("credits")
    op.drop_index(op.f("ix_contract_owners_block_number"), table_name="contract_owners")
    op.drop_table("contract_owners")
    op.drop_table("blocks")
    op.drop_index(op.f("ix_agents_owner"), table_name="agents")
    op.drop_index(op.f("ix_agents_block_number"), table_name="agents")
    op.drop_table("agents")
