# SPDX-License-Identifier: AGPL-3.0-only
"""Words and a task on SQLite page through what a plain scan finds, whether the words
drive or are checked, and migration 0012 rebuilds `ix_models_task` as (task, model_id)
on an existing index in place. Real SQLite files, hand-made rows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from mercato.index import Index, SearchQuery, Sort, search
from mercato.index import schema as s
from mercato.index.db import create_index_engine, default_url, downgrade, migrate

from .test_search_fast_paths import TASKS, VOCABULARY, _pages, _rows, _scan


@pytest.mark.parametrize("driving", [10**9, 0], ids=["words-drive", "words-checked"])
def test_words_and_a_task_page_through_what_a_plain_scan_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driving: int
) -> None:
    rows = _rows(random.Random(23))
    index = Index.open(data_dir=tmp_path)
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
    monkeypatch.setattr(search, "DRIVING_SET_MAX", driving)
    rng = random.Random(4)
    found = 0
    for _ in range(60):
        words = rng.sample(VOCABULARY, rng.choice([1, 2, 3]))
        words[-1] = words[-1][: rng.randrange(1, len(words[-1]) + 1)]
        query = SearchQuery(
            text=" ".join(words),
            task=rng.choice([*TASKS, "absent-task"]),
            sort=rng.choice(list(Sort)),
            limit=rng.randrange(1, 5),
        )
        expected = _scan(rows, query)
        assert _pages(index, query) == expected, query
        found += len(expected)
    assert found > 50


def test_migration_0012_rebuilds_the_task_index_in_place(tmp_path: Path) -> None:
    rows = _rows(random.Random(8))
    engine = create_index_engine(default_url(tmp_path))
    migrate(engine, "0011")
    with engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
    migrate(engine)

    def task_index(conn: object) -> str:
        return str(
            conn.execute(  # type: ignore[attr-defined]
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_models_task'")
            ).scalar()
        )

    with engine.connect() as conn:
        assert "task, model_id" in task_index(conn)
    query = SearchQuery(text="bert vi", task="translation", limit=2)
    assert _pages(Index(engine), query) == _scan(rows, query)
    downgrade(engine, "0011")
    with engine.connect() as conn:
        assert "model_id" not in task_index(conn)
