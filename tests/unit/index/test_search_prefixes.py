# SPDX-License-Identifier: AGPL-3.0-only
"""Short prefixes (what a search box sends while someone types), the plans that keep
them fast on a big index, the migration that adds FTS5's prefix index to an existing
index, and the bounds that turn hostile numbers and words into typed errors. Real
SQLite files, hand-made rows: no chain needed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, insert, text

from mercato.errors import InvalidSearchQueryError
from mercato.index import Index, SearchQuery, Sort, search
from mercato.index import schema as s
from mercato.index.db import create_index_engine, default_url, migrate

from .test_search_and_schema import _model as base_model


def _model(model_id: int, name: str, **fields: object) -> dict[str, object]:
    """The schema tests' row, with prices, ratings and sales that differ per model so
    every sort has something to order."""
    varied: dict[str, object] = {
        "price": 10 + model_id % 7,
        "rating_milli": 1000 + (model_id * 37) % 4000,
        "rating_count": 1,
        "purchases": (model_id * 13) % 50,
    }
    return base_model(model_id, name, **(varied | fields))


# 60 models: every third a "resnet", every fourth tagged nlp, model 7 not searchable.
ROWS = [
    _model(
        i,
        f"resnet-{i}" if i % 3 == 0 else f"forecaster-{i}",
        tags_text="nlp" if i % 4 == 0 else "vision",
        searchable=i != 7,
    )
    for i in range(1, 61)
]


@pytest.fixture
def index(tmp_path: Path) -> Index:
    index = Index.open(data_dir=tmp_path)
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), ROWS)
        tags = [{"model_id": r["model_id"], "tag": r["tags_text"]} for r in ROWS]
        conn.execute(insert(s.ModelTag), tags)
    return index


def _all_pages(index: Index, limit: int, **query: Any) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        page = index.search(SearchQuery(limit=limit, cursor=cursor, **query))
        seen += [m.model_id for m in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def _expected(sort: Sort, keep: Any) -> list[int]:
    rows = [r for r in ROWS if r["searchable"] and keep(r)]
    column, descending = {
        Sort.NEWEST: ("model_id", True),
        Sort.BEST_RATED: ("rating_milli", True),
        Sort.MOST_BOUGHT: ("purchases", True),
        Sort.PRICE_LOW: ("price", False),
        Sort.PRICE_HIGH: ("price", True),
    }[sort]
    rows.sort(key=lambda r: (r[column], r["model_id"]), reverse=descending)
    return [int(r["model_id"]) for r in rows]  # type: ignore[call-overload]


@pytest.mark.parametrize("sort", list(Sort))
@pytest.mark.parametrize("driving", [10**9, 0], ids=["driving", "checked"])
def test_one_letter_prefixes_page_through_every_match_once(
    index: Index, monkeypatch: pytest.MonkeyPatch, sort: Sort, driving: int
) -> None:
    # Checked (as on a big index), a short prefix is probed row by row, or read off
    # FTS5 newest first; driving, its matches are collected: the same pages either way.
    monkeypatch.setattr(search, "DRIVING_SET_MAX", driving)
    assert _all_pages(index, 7, text="r", sort=sort) == _expected(
        sort, lambda r: str(r["name"]).startswith("r")
    )
    assert _all_pages(index, 4, text="Fo", tag="nlp", sort=sort) == _expected(
        sort, lambda r: str(r["name"]).startswith("f") and r["tags_text"] == "nlp"
    )
    assert _all_pages(index, 5, text="n", sort=sort) == _expected(
        sort, lambda r: r["tags_text"] == "nlp"
    )


def _plan(conn: Connection, statement: Any) -> str:
    compiled = statement.compile(conn)
    params = compiled.construct_params()
    values = []
    for name in compiled.positiontup:
        processor = compiled.binds[name].type._cached_bind_processor(conn.dialect)
        values.append(processor(params[name]) if processor else params[name])
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), tuple(values)).all()
    return "\n".join(row[3] for row in rows)


def test_a_broad_short_prefix_never_collects_all_its_matches(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prefix matching more than DRIVING_SET_MAX models: the newest are read off FTS5
    in id order; other sorts walk their own index and probe FTS5 for each row. Neither
    gathers every match (hundreds of milliseconds on a million models) nor sorts them."""
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 0)
    monkeypatch.setattr(search, "MATCHES_READ_MAX", 0)  # nor read first: FTS5 is asked
    monkeypatch.setattr(search, "CHECK_COST", 0)  # as for a common word on a big index
    with index.engine.connect() as conn:
        newest = _plan(conn, search.build_search(conn, SearchQuery(text="r")))
        rated = _plan(conn, search.build_search(conn, SearchQuery(text="r", sort=Sort.BEST_RATED)))
        longer = search.build_search(conn, SearchQuery(text="resnet", sort=Sort.BEST_RATED))
        longer_sql = str(longer.compile(conn))
        monkeypatch.setattr(search, "PREFIX_WORDS_MAX", 0)
        gathered = search.build_search(conn, SearchQuery(text="resne", sort=Sort.BEST_RATED))
        gathered_sql = str(gathered.compile(conn))
    assert newest.splitlines()[0].startswith("SCAN models_fts VIRTUAL TABLE")
    assert "TEMP B-TREE" not in newest and "LIST SUBQUERY" not in newest
    assert "ix_models_rating" in rated and "CORRELATED SCALAR SUBQUERY" in rated
    assert "TEMP B-TREE" not in rated and "LIST SUBQUERY" not in rated
    # A longer prefix is searched as the words it starts, each one list: probed too.
    assert "models_fts.rowid = models.model_id" in longer_sql
    # One that starts too many words is no single list: its matches are gathered once.
    assert "+models.model_id IN (SELECT rowid" in gathered_sql


def test_migration_adds_prefix_indexes_to_an_existing_index(tmp_path: Path) -> None:
    engine = create_index_engine(default_url(tmp_path))
    migrate(engine, "0002")
    with engine.begin() as conn:
        conn.execute(insert(s.Model), ROWS[:10])
    fts_sql = "SELECT sql FROM sqlite_master WHERE name = 'models_fts'"
    with engine.connect() as conn:
        assert "prefix" not in conn.execute(text(fts_sql)).scalar_one()
    migrate(engine)
    with engine.connect() as conn:
        assert "prefix='1 2 3'" in conn.execute(text(fts_sql)).scalar_one()
    index = Index(engine)
    # Rows indexed before the upgrade are found, and the triggers still feed the table.
    assert [m.model_id for m in index.search(SearchQuery(text="r")).items] == [9, 6, 3]
    with engine.begin() as conn:
        conn.execute(insert(s.Model), [_model(99, "rocket")])
    assert [m.model_id for m in index.search(SearchQuery(text="ro")).items] == [99]
    with engine.connect() as conn:
        check = "INSERT INTO models_fts(models_fts) VALUES ('integrity-check')"
        conn.exec_driver_sql(check)  # raises on an index out of step with `models`


def _cursor(sort: Sort, value: int, model_id: int) -> str:
    raw = json.dumps([sort.value, value, model_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        SearchQuery(derived_from=2**64),
        SearchQuery(derived_from=-1),
        SearchQuery(cursor=_cursor(Sort.NEWEST, 2**64, 2**64)),
        SearchQuery(sort=Sort.MOST_BOUGHT, cursor=_cursor(Sort.MOST_BOUGHT, 2**70, 5)),
        SearchQuery(sort=Sort.PRICE_LOW, cursor=_cursor(Sort.PRICE_LOW, 2**257, 5)),
        SearchQuery(text="resnet " + "x" * 101),
    ],
    ids=["huge-parent", "negative-parent", "huge-id", "huge-count", "huge-price", "long-word"],
)
def test_hostile_numbers_and_words_are_typed_errors(index: Index, query: SearchQuery) -> None:
    # Before the bounds, a number past 64 bits reached the driver (OverflowError: a 500)
    # and a word of any length made the full-text index work for nothing.
    with pytest.raises(InvalidSearchQueryError):
        index.search(query)


def test_prices_past_64_bits_stay_valid_cursors(index: Index) -> None:
    cursor = _cursor(Sort.PRICE_HIGH, 2**255, 10**6)
    page = index.search(SearchQuery(sort=Sort.PRICE_HIGH, cursor=cursor, limit=100))
    assert len(page.items) == 59
