# SPDX-License-Identifier: AGPL-3.0-only
"""Several words and a task on a real PostgreSQL server: found through the exact words
of `ix_models_search_task` (migration 0009) and checked against the full query, they
page through exactly what a plain scan of the rows finds; the index is used with no
prefix gathered; the migration builds it on an existing index in place. Same hand-made
rows as the SQLite fast-path tests (`tests/unit/index/test_search_fast_paths.py`), no
chain."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import insert, text

from mercato.index import Index, SearchQuery, Sort, search
from mercato.index import schema as s
from mercato.index.db import create_index_engine, downgrade, migrate
from tests.unit.index.test_search_and_schema import _model
from tests.unit.index.test_search_fast_paths import TAGS, TASKS, VOCABULARY, _pages, _rows, _scan

from .conftest import PostgresServer

# A task with every character tsquery syntax could read, and one the rows do not hold.
ODD_TASK = "it's a \\ task & | ! :* ()"


def _seed(index: Index, rows: list[dict[str, object]]) -> None:
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
        tags = [
            {"model_id": r["model_id"], "tag": t} for r in rows for t in str(r["tags_text"]).split()
        ]
        conn.execute(insert(s.ModelTag), tags)


def _seeded_rows() -> list[dict[str, object]]:
    rows = _rows(random.Random(17))
    # Words that share their first four letters but not more (`bert`, `berta`,
    # `bertha`): the marker `^bert` finds all three, the full query keeps the right ones.
    rows += [
        _model(200, "bertha-vision", task="translation", tags_text="nlp"),
        _model(201, "berta-resnet", task="translation", text="bertz"),
        _model(202, "resnet-bertha", task=ODD_TASK, text="tiny"),
        _model(203, "tiny-resnets", task=None),
    ]
    return rows


@pytest.fixture
def seeded(postgres_server: PostgresServer) -> tuple[Index, list[dict[str, object]]]:
    rows = _seeded_rows()
    index = Index.open(postgres_server.new_database())
    _seed(index, rows)
    return index, rows


def _query(rng: random.Random) -> SearchQuery:
    words = rng.sample(VOCABULARY, rng.choice([2, 2, 3]))
    words[-1] = words[-1][: rng.randrange(1, len(words[-1]) + 1)]
    return SearchQuery(
        text=" ".join(words),
        task=rng.choice([*TASKS, "translation", ODD_TASK]),
        tag=rng.choice([None, None, *TAGS]),
        sort=rng.choice(list(Sort)),
        limit=rng.randrange(1, 6),
    )


def _sql(index: Index, query: SearchQuery) -> str:
    with index.engine.connect() as conn:
        return str(search.build_search(conn, query).compile(conn))


def test_words_and_a_task_page_through_what_a_plain_scan_finds(
    seeded: tuple[Index, list[dict[str, object]]],
) -> None:
    index, rows = seeded
    rng = random.Random(9)
    queries = [_query(rng) for _ in range(120)]
    queries += [
        SearchQuery(text=f"{first} {last}", task=task, sort=sort, limit=2)
        for first, last in (("resnet", "bert"), ("vision", "bert"), ("resnet", "berth"))
        for task in ("translation", ODD_TASK)
        for sort in Sort
    ]
    narrowed = found = 0
    for query in queries:
        if "^" in _sql(index, query):  # the marker words: the narrowed plan
            narrowed += 1
        expected = _scan(rows, query)
        assert _pages(index, query) == expected, query
        found += len(expected)
    assert narrowed > 60 and found > 100  # both plans ran, on queries that find models


def test_an_odd_task_is_a_word_not_query_syntax(
    seeded: tuple[Index, list[dict[str, object]]],
) -> None:
    index, _ = seeded
    query = SearchQuery(text="resnet berth", task=ODD_TASK)
    assert "^" in _sql(index, query)
    assert [m.model_id for m in index.search(query).items] == [202]
    assert [
        m.model_id for m in index.search(SearchQuery(text="resnet bertz", task="translation")).items
    ] == [201]
    assert index.search(SearchQuery(text="resnet bertz", task=ODD_TASK)).items == []
    assert [m.model_id for m in index.search(SearchQuery(text="bertz berta")).items] == [201]


def _plan(index: Index, query: SearchQuery) -> str:
    with index.engine.connect() as conn:
        sql = str(
            search.build_search(conn, query).compile(conn, compile_kwargs={"literal_binds": True})
        )
        # As on a big index, where a sequential scan is never the cheapest way.
        conn.exec_driver_sql("SET enable_seqscan = off")
        return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))


def test_words_and_a_task_are_one_exact_scan_of_the_narrowing_index(
    seeded: tuple[Index, list[dict[str, object]]],
) -> None:
    """Every word asked of the index is exact: no `:*` prefix reaches it (GIN would
    gather every row of every word the prefix starts), and the full query with its
    prefix is checked on the rows found only."""
    index, _ = seeded
    plan = _plan(index, SearchQuery(text="resnet bert", task="translation", sort=Sort.BEST_RATED))
    index_lines = [line for line in plan.splitlines() if "Index Cond" in line]
    assert "ix_models_search_task" in plan
    assert index_lines and not any(":*" in line for line in index_lines), plan
    assert "ix_models_rating" not in plan  # the few rows found are sorted, not walked
    # Without a task, or with one word, the plan is the one it was.
    assert "^" not in _sql(index, SearchQuery(text="resnet bert"))
    assert "^" not in _sql(index, SearchQuery(text="resnet", task="translation"))
    assert "^" not in _sql(index, SearchQuery(text="resnet bit", task="translation"))


def test_migration_0009_builds_the_index_on_an_existing_index(
    postgres_server: PostgresServer,
) -> None:
    rows = _seeded_rows()
    url = postgres_server.new_database()
    engine = create_index_engine(url)
    migrate(engine, "0008")
    with engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
    migrate(engine)
    index = Index(engine)
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT indexname FROM pg_indexes")).scalars())
    assert "ix_models_search_task" in names
    query: Any = SearchQuery(text="resnet bert", task="translation", limit=3)
    assert _pages(index, query) == _scan(rows, query)
    downgrade(engine, "0008")
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT indexname FROM pg_indexes")).scalars())
    assert "ix_models_search_task" not in names and "ix_models_search_vector" in names
