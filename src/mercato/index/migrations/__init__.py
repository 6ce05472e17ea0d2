# SPDX-License-Identifier: AGPL-3.0-only
"""Alembic migrations of the index database, run programmatically (no alembic.ini)."""
