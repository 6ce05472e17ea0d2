# SPDX-License-Identifier: AGPL-3.0-only
"""Several words and a task on a real PostgreSQL server: found through the exact words
and markers each task has in `ix_models_task_words` (migration 0014) and checked
against the full query, they page through exactly what a plain scan of the rows finds;
the index is used with no prefix gathered; the migration builds it on an existing index
in place. Same hand-made rows as the SQLite fast-path tests
(`tests/unit/index/test_search_fast_paths.py`), no chain."""

from __future__ import annotations

import random
from dataclasses import replace
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
# What the narrowed plan's SQL holds (the index's expression), and no other plan's.
NARROWED = "md5(models.task)"


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
        if NARROWED in _sql(index, query):
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
    assert NARROWED in _sql(index, query)
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
    assert "ix_models_task_words" in plan
    assert index_lines and not any(":*" in line for line in index_lines), plan
    assert "ix_models_rating" not in plan  # the few rows found are sorted, not walked
    # Without a task, or with one word, the plan is the one it was.
    assert NARROWED not in _sql(index, SearchQuery(text="resnet bert"))
    assert NARROWED not in _sql(index, SearchQuery(text="resnet", task="translation"))
    assert NARROWED not in _sql(index, SearchQuery(text="resnet bi", task="translation"))


def test_a_three_letter_last_word_and_odd_words_are_narrowed_exactly(
    postgres_server: PostgresServer,
) -> None:
    """A last word of three letters is narrowed by its marker (`^vit`): before 0014 it
    had none and the plan walked a sort's index checking every row. Words that are not
    plain (`vité`, `vit.b16`, `café`) still give the markers of their plain start, so a
    prefix finds them; a model without a task has no entries."""
    rows = [
        _model(1, "resnet-vit", task="translation"),
        _model(2, "resnet vitamin", task="translation"),
        _model(3, "resnet vité", task="translation"),
        _model(4, "resnet vit.b16", task="translation"),
        _model(5, "resnet vi", task="translation"),  # `vi` is not `vit`
        _model(6, "resnet vit", task="image-classification"),
        _model(7, "resnet vit", task=None),
        _model(8, "café resnet vitæ", task="translation", text="bert"),
    ]
    index = Index.open(postgres_server.new_database())
    _seed(index, rows)
    query = SearchQuery(text="resnet vit", task="translation", sort=Sort.PRICE_LOW)
    assert NARROWED in _sql(index, query)
    assert "ix_models_task_words" in _plan(index, query)
    assert sorted(m.model_id for m in index.search(query).items) == [1, 2, 3, 4, 8]
    assert [m.model_id for m in index.search(replace(query, text="resnet vita")).items] == [2]
    assert [m.model_id for m in index.search(replace(query, text="bert vit")).items] == [8]
    other = replace(query, task="image-classification")
    assert [m.model_id for m in index.search(other).items] == [6]
    with index.engine.connect() as conn:
        entries = conn.execute(
            text(f"SELECT {search.TASK_WORDS_VECTOR} IS NULL FROM models WHERE model_id = 7")
        ).scalar_one()
    assert entries  # no task, no entries


def test_migration_0014_builds_the_index_on_an_existing_index(
    postgres_server: PostgresServer,
) -> None:
    rows = _seeded_rows()
    url = postgres_server.new_database()
    engine = create_index_engine(url)
    migrate(engine, "0013")
    with engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
    migrate(engine)
    index = Index(engine)
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT indexname FROM pg_indexes")).scalars())
    assert "ix_models_task_words" in names and "ix_models_search_task" not in names
    for words in ("resnet bert", "resnet res", "vision berth"):
        query: Any = SearchQuery(text=words, task="translation", limit=3)
        assert NARROWED in _sql(index, query)
        assert _pages(index, query) == _scan(rows, query)
    downgrade(engine, "0013")
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT indexname FROM pg_indexes")).scalars())
    assert "ix_models_search_task" in names and "ix_models_task_words" not in names


def test_a_word_spelled_as_another_tasks_entry_finds_nothing(
    postgres_server: PostgresServer,
) -> None:
    # The per-task index's entries are `<md5 of the task><word>`: a card holding such a
    # word for another task must not be listed under it.
    other = search.task_words_query(["resnet", "bert"], "translation")
    spelled = [term.strip("'") for term in other.split(" & ")]
    rows = [
        _model(1, "resnet bert", task="image-classification", text=" ".join(spelled)),
        _model(2, "resnet bert", task="translation"),
    ]
    index = Index.open(postgres_server.new_database())
    _seed(index, rows)
    query = SearchQuery(text="resnet bert", task="translation")
    assert NARROWED in _sql(index, query)
    assert [m.model_id for m in index.search(query).items] == [2]
    with index.engine.connect() as conn:
        held = conn.execute(
            text(
                f"SELECT {search.TASK_WORDS_VECTOR} @@ CAST(:q AS tsquery) "
                "FROM models ORDER BY model_id"
            ),
            {"q": other},
        ).scalars()
        assert list(held) == [False, True]  # the index itself never lists model 1 there
