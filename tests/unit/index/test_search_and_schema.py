# SPDX-License-Identifier: AGPL-3.0-only
"""Search (full text, filters, sorts, keyset pages) and migrations, on a real SQLite
file filled with hand-made rows: no chain needed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from eth_utils import to_checksum_address
from sqlalchemy import Connection, insert, inspect

from mercato.errors import IndexDatabaseError, IndexedModelNotFoundError, InvalidSearchQueryError
from mercato.index import Index, SearchQuery, Sort, search
from mercato.index import schema as s
from mercato.index.db import create_index_engine, downgrade

CREATOR = "0x" + "Aa" * 20
BIG = 2**95  # above 2**63: stored as padded decimal text, still ordered numerically


def _model(model_id: int, name: str, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "model_id": model_id,
        "creator": "0x" + "11" * 20,
        "owner": "0x" + "11" * 20,
        "created_block": model_id,
        "latest_version": 1,
        "metadata_version": 1,
        "searchable": True,
        "name": name,
        "license": "MIT",
        "task": "image-classification",
        "library": None,
        "tags_text": "vision",
        "text": "",
        "listed": True,
        "for_sale": True,
        "price": 10,
        "license_duration": 0,
        "fee_bps": 0,
        "rating_milli": 0,
        "rating_count": 0,
        "purchases": 0,
    }
    return row | fields


@pytest.fixture
def index(tmp_path: Path) -> Index:
    index = Index.open(data_dir=tmp_path)
    rows = [
        _model(
            1, "resnet-small", price=0, tags_text="vision cnn", text="Residual network for cats"
        ),
        _model(
            2,
            "bert-base",
            task="fill-mask",
            license="Apache-2.0",
            tags_text="nlp",
            price=BIG,
            rating_milli=4500,
            rating_count=2,
            purchases=9,
        ),
        _model(
            3,
            "resnet-large",
            price=50,
            rating_milli=3000,
            rating_count=1,
            purchases=3,
            creator=to_checksum_address(CREATOR),
        ),
        _model(4, "hidden", searchable=False),
        *[_model(10 + i, f"filler-{i}", price=100 + i) for i in range(25)],
    ]
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
        conn.execute(
            insert(s.Lineage),
            [{"model_id": 3, "parent_id": 1, "position": 0, "royalty_bps": 500, "block_number": 3}],
        )
        conn.execute(
            insert(s.ModelTag), [{"model_id": 1, "tag": "cnn"}, {"model_id": 1, "tag": "vision"}]
        )
    return index


def _ids(index: Index, **query: object) -> list[int]:
    return [m.model_id for m in index.search(SearchQuery(limit=100, **query)).items]  # type: ignore[arg-type]


def test_full_text_matches_name_tags_and_text_with_prefixes(index: Index) -> None:
    assert _ids(index, text="resnet") == [3, 1]
    assert _ids(index, text="resn") == [3, 1]  # the last word is a prefix
    assert _ids(index, text="cats residual") == [1]
    assert _ids(index, text="nlp") == [2]
    assert _ids(index, text='"; DROP TABLE models; --') == []  # quoted, never FTS syntax


def test_filters(index: Index) -> None:
    assert _ids(index, task="fill-mask") == [2]
    assert _ids(index, license="Apache-2.0") == [2]
    assert _ids(index, free_only=True) == [1]
    assert _ids(index, min_price=BIG) == [2]
    assert _ids(index, min_price=40, max_price=60) == [3]
    assert _ids(index, min_rating=4) == [2]
    assert _ids(index, creator=CREATOR.lower()) == [3]
    assert _ids(index, derived_from=1) == [3]
    assert _ids(index, tag="cnn") == [1]
    assert 4 not in _ids(index)  # metadata not arrived: not searchable


def test_sorts(index: Index) -> None:
    assert _ids(index, sort=Sort.NEWEST)[:3] == [34, 33, 32]
    assert _ids(index, sort=Sort.BEST_RATED)[:2] == [2, 3]
    assert _ids(index, sort=Sort.MOST_BOUGHT)[:2] == [2, 3]
    assert _ids(index, sort=Sort.PRICE_LOW)[:2] == [1, 3]
    assert _ids(index, sort=Sort.PRICE_HIGH)[0] == 2  # 2**95 beats every small price


@pytest.mark.parametrize("sort", list(Sort))
def test_keyset_pages_cover_everything_once(index: Index, sort: Sort) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        page = index.search(SearchQuery(sort=sort, limit=7, cursor=cursor))
        seen += [m.model_id for m in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == _ids(index, sort=sort) and len(seen) == 28


_PLAN_QUERIES = [
    {"text": "resnet"},
    {"text": "fill"},
    {"text": "filler", "sort": Sort.PRICE_HIGH},
    {"text": "resnet", "task": "image-classification", "sort": Sort.BEST_RATED},
    {"task": "image-classification", "license": "MIT", "sort": Sort.MOST_BOUGHT},
    {"tag": "vision", "sort": Sort.PRICE_LOW},
    {"derived_from": 1, "sort": Sort.NEWEST},
    {"creator": CREATOR, "sort": Sort.PRICE_LOW},
    {"free_only": True, "sort": Sort.BEST_RATED},
    {"min_price": 40, "max_price": 110, "sort": Sort.NEWEST},
    {"min_price": 40, "max_price": 110, "sort": Sort.PRICE_HIGH},
    {"min_rating": 3, "sort": Sort.MOST_BOUGHT},
    {"min_rating": 3, "sort": Sort.BEST_RATED},
]


def _all_pages(index: Index, limit: int, **query: object) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        page = index.search(SearchQuery(limit=limit, cursor=cursor, **query))  # type: ignore[arg-type]
        pages.append([m.model_id for m in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


@pytest.mark.parametrize("query", _PLAN_QUERIES, ids=str)
def test_plan_choice_never_changes_results(
    index: Index, monkeypatch: pytest.MonkeyPatch, query: dict[str, object]
) -> None:
    # Every filter driving the query, then every filter checked row by row: same pages.
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 10**9)
    driven = _all_pages(index, 3, **query)
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 0)
    checked_as_ids = _all_pages(index, 3, **query)  # full-text matches read, then checked
    monkeypatch.setattr(search, "MATCHES_READ_MAX", 0)
    checked = _all_pages(index, 3, **query)
    assert driven == checked == checked_as_ids
    assert [i for page in driven for i in page] == _ids(index, **query)


def test_big_filters_are_checked_along_the_sort_index(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filters selecting more than DRIVING_SET_MAX models leave the sort's index to
    drive: no sort of every match before the LIMIT."""
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 0)
    # (A license, not a task: on SQLite the task goes into the full-text query.)
    query = SearchQuery(text="filler", tag="vision", license="MIT")
    with index.engine.connect() as conn:
        statement = search.build_search(conn, replace(query, sort=Sort.BEST_RATED))
        sql = str(statement.compile(conn))
        assert "+models.license" in sql and "EXISTS" in sql and "+models.model_id IN" in sql
        plan = _plan(conn, statement)
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan and "ix_models_rating" in plan
    # A filter selecting few models drives, in its indexable form; a big one is checked.
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 5)
    with index.engine.connect() as conn:
        sql = str(search.build_search(conn, replace(query, text="resnet")).compile(conn))
        # (the words' few matches drive as their ids, read once off FTS5)
        assert "models.model_id IN (SELECT value" in sql and "+models.model_id" not in sql
        assert "+models.license" in sql  # most models have the license
        # 25 fillers: more than drive, but all read once and checked as those ids...
        rated = replace(query, sort=Sort.BEST_RATED)
        sql = str(search.build_search(conn, rated).compile(conn))
        assert "+models.model_id IN (SELECT value" in sql and "MATCH" not in sql
        # ...unless more than MATCHES_READ_MAX: FTS5 collects them in the query itself.
        monkeypatch.setattr(search, "MATCHES_READ_MAX", 10)
        sql = str(search.build_search(conn, rated).compile(conn))
        assert "+models.model_id IN (SELECT rowid" in sql
        # The newest first never reads them all: FTS5 yields them in that order.
        monkeypatch.setattr(search, "MATCHES_READ_MAX", 10**9)
        sql = str(search.build_search(conn, query).compile(conn))
        assert "json_each" not in sql and "MATCH" in sql


def _plan(conn: Connection, statement: Any) -> str:
    compiled = statement.compile(conn)
    params = compiled.construct_params()
    values = []
    for name in compiled.positiontup:
        processor = compiled.binds[name].type._cached_bind_processor(conn.dialect)
        values.append(processor(params[name]) if processor else params[name])
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), tuple(values)).all()
    return "\n".join(row[3] for row in rows)


def test_bad_queries_raise_typed_errors(index: Index) -> None:
    with pytest.raises(InvalidSearchQueryError):
        index.search(SearchQuery(cursor="not-a-cursor"))
    page = index.search(SearchQuery(sort=Sort.NEWEST, limit=2))
    with pytest.raises(InvalidSearchQueryError):
        index.search(SearchQuery(sort=Sort.PRICE_LOW, cursor=page.next_cursor))
    with pytest.raises(InvalidSearchQueryError):
        index.search(SearchQuery(limit=0))
    with pytest.raises(InvalidSearchQueryError):
        index.search(SearchQuery(creator="0x1234"))
    with pytest.raises(IndexedModelNotFoundError) as caught:
        index.model(999)
    assert caught.value.model_id == 999


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    index = Index.open(data_dir=tmp_path)
    with index.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), s.Base.metadata)
        # FTS5's shadow tables and `lineage_sort_keys` (a parent's children in each sort's
        # order, SQLite's only) are made by migrations on purpose, outside the models.
        search_only = ("models_fts", "lineage_sort_keys")
        diff = [
            d
            for d in diff
            if not (d[0] == "remove_table" and d[1].name.startswith(search_only))
            and not (d[0] == "remove_index" and d[1].table.name == "lineage_sort_keys")
        ]
        journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert diff == [] and journal == "wal"
    downgrade(index.engine)
    assert set(inspect(index.engine).get_table_names()) <= {"alembic_version"}


def test_sqlite_connections_get_the_search_settings(tmp_path: Path) -> None:
    index = Index.open(data_dir=tmp_path)
    with index.engine.connect() as conn:
        pragmas = ("mmap_size", "temp_store")
        settings = [conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in pragmas]
    assert settings == [256 * 2**20, 2]  # 2: MEMORY


def test_unsupported_database_urls_are_refused() -> None:
    with pytest.raises(IndexDatabaseError):
        create_index_engine("mysql://localhost/x")
    with pytest.raises(IndexDatabaseError):
        Index.open()
