# SPDX-License-Identifier: AGPL-3.0-only
"""Replicas started together on a fresh PostgreSQL index each open (and migrate) it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

from .conftest import PostgresServer

pytestmark = pytest.mark.integration
OPEN_INDEX = "from mercato.index import Index; import sys; Index.open(sys.argv[1]).close()"


def test_replicas_started_together_all_open_a_fresh_index(
    postgres_server: PostgresServer,
) -> None:
    # Before the migration lock, all but one failed with a duplicate-table error.
    for _ in range(3):  # a race: a few times, on fresh databases
        url = postgres_server.new_database()
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_INDEX, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(3)
        ]
        results = [(p.wait(timeout=300), p.stdout.read() if p.stdout else "") for p in processes]
        assert [code for code, _ in results] == [0, 0, 0], results
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        engine.dispose()
