# SPDX-License-Identifier: AGPL-3.0-only
"""Search on a real PostgreSQL server: short prefixes page through every match once,
a small filter drives the query past the planner's habit of walking the sort's index,
and hostile numbers are typed errors rather than driver errors. Same hand-made rows as
the SQLite tests (`tests/unit/index/test_search_prefixes.py`), no chain."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import delete, insert, update

from mercato.errors import InvalidSearchQueryError
from mercato.index import Index, SearchQuery, Sort, search
from mercato.index import schema as s
from mercato.index.rebuild import _scratch
from tests.unit.index.test_search_and_schema import _model as base_model
from tests.unit.index.test_search_children import _pairs as pairs
from tests.unit.index.test_search_children import _pairs_from_lineage as pairs_from_lineage
from tests.unit.index.test_search_children import _rows as children_rows
from tests.unit.index.test_search_children import _scan as children_scan
from tests.unit.index.test_search_fast_paths import _pages as fast_pages
from tests.unit.index.test_search_prefixes import ROWS, _all_pages, _cursor, _expected

from .conftest import PostgresServer


@pytest.fixture
def index(postgres_server: PostgresServer) -> Index:
    index = Index.open(postgres_server.new_database())
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), ROWS)
        tags = [{"model_id": r["model_id"], "tag": r["tags_text"]} for r in ROWS]
        conn.execute(insert(s.ModelTag), tags)
        lineage = [
            {"model_id": i, "parent_id": 1, "position": 0, "royalty_bps": 0, "block_number": i}
            for i in range(2, 61, 5)
        ]
        conn.execute(insert(s.Lineage), lineage)
    return index


@pytest.mark.parametrize("sort", list(Sort))
def test_short_prefixes_and_small_filters_page_through_every_match_once(
    index: Index, monkeypatch: pytest.MonkeyPatch, sort: Sort
) -> None:
    children = set(range(2, 61, 5))
    for driving in (10**9, 0):  # every filter fenced to drive, then none
        monkeypatch.setattr(search, "DRIVING_SET_MAX", driving)
        assert _all_pages(index, 7, text="r", sort=sort) == _expected(
            sort, lambda r: str(r["name"]).startswith("r")
        )
        assert _all_pages(index, 4, text="fo", tag="nlp", sort=sort) == _expected(
            sort, lambda r: str(r["name"]).startswith("f") and r["tags_text"] == "nlp"
        )
        assert _all_pages(index, 3, derived_from=1, sort=sort) == _expected(
            sort, lambda r: r["model_id"] in children
        )


def _plan(index: Index, query: SearchQuery) -> str:
    with index.engine.connect() as conn:
        statement = search.build_search(conn, query)
        sql = str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
        # As on a big index, where the planner would rather walk the sort's index.
        conn.exec_driver_sql("SET enable_sort = off")
        return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))


def test_a_small_filter_drives_instead_of_a_walk_of_the_sort_index(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 20)  # 12 children, 45 models tagged vision
    query = SearchQuery(derived_from=1, sort=Sort.BEST_RATED)
    plan = _plan(index, query)
    assert "ix_models_rating" not in plan and "lineage" in plan
    # A filter selecting many models leaves the planner free to walk the sort's index.
    assert "ix_models_rating" in _plan(index, SearchQuery(tag="vision", sort=Sort.BEST_RATED))


@pytest.mark.parametrize(
    "query",
    [
        SearchQuery(derived_from=2**64),
        SearchQuery(cursor=_cursor(Sort.NEWEST, 2**64, 2**64)),
        SearchQuery(sort=Sort.BEST_RATED, cursor=_cursor(Sort.BEST_RATED, 2**70, 5)),
    ],
    ids=["huge-parent", "huge-id", "huge-rating"],
)
def test_numbers_past_64_bits_are_typed_errors(index: Index, query: Any) -> None:
    with pytest.raises(InvalidSearchQueryError):
        index.search(query)


def test_a_rating_bound_is_an_integer_so_the_rating_index_serves_it(index: Index) -> None:
    # Against 4500.0 PostgreSQL casts every rating to numeric, and no index serves that.
    query = SearchQuery(min_rating=4.5, sort=Sort.MOST_BOUGHT)
    with index.engine.connect() as conn:
        sql = str(
            search.build_search(conn, query).compile(conn, compile_kwargs={"literal_binds": True})
        )
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))
    assert "numeric" not in plan
    assert _all_pages(index, 4, min_rating=4.5, sort=Sort.MOST_BOUGHT) == _expected(
        Sort.MOST_BOUGHT, lambda r: r["rating_milli"] >= 4500
    )


def test_a_parents_children_are_one_range_of_the_children_index(index: Index) -> None:
    """Migration 0010: the children come off `ix_lineage_children` (parent, child)
    alone, not a scan of the whole primary key (child, parent)."""
    with index.engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.exec_driver_sql(
                "EXPLAIN SELECT model_id FROM lineage WHERE parent_id = 1 ORDER BY model_id"
            )
        )
    assert "ix_lineage_children" in plan and "lineage_pkey" not in plan
    assert _all_pages(index, 5, derived_from=1, sort=Sort.PRICE_HIGH) == _expected(
        Sort.PRICE_HIGH, lambda r: r["model_id"] in set(range(2, 61, 5))
    )


def test_children_in_each_sort_follow_every_change_and_survive_a_rebuild_swap(
    postgres_server: PostgresServer,
) -> None:
    """Migration 0011: `lineage_sort_keys` and its plpgsql triggers on PostgreSQL. Pages
    of a parent's children equal a plain scan; the pairs follow inserts, key changes and
    deletes in either order of arrival; and after a rebuilt index is swapped in from its
    scratch schema, the triggers (and the functions they call) still work."""
    models, lineage = children_rows(random.Random(7))
    live = Index.open(postgres_server.new_database())
    with _scratch(live.engine) as scratch:
        with scratch.engine.begin() as conn:
            conn.execute(insert(s.Lineage), lineage[::2])
            conn.execute(insert(s.Model), models)
            conn.execute(insert(s.Lineage), lineage[1::2])
        scratch.swap_into(live.engine)
    for sort in Sort:
        for parent in (1, 2, 3):
            query = SearchQuery(derived_from=parent, sort=sort, limit=4)
            assert "lineage_sort_keys" in _children_sql(live, query)
            assert fast_pages(live, query) == children_scan(models, lineage, query)
    steps = [
        update(s.Model).where(s.Model.model_id == 20).values(rating_milli=4900, purchases=77),
        update(s.Model).where(s.Model.model_id == 21).values(price=2**90),
        insert(s.Lineage).values(
            model_id=500, parent_id=1, position=0, royalty_bps=0, block_number=9
        ),
        insert(s.Model).values(**base_model(500, "late-child", rating_milli=4000, purchases=3)),
        delete(s.Lineage).where(s.Lineage.model_id.in_([30, 31])),
        delete(s.Model).where(s.Model.model_id == 32),
    ]
    for step in steps:
        with live.engine.begin() as conn:
            conn.execute(step)
            assert pairs(conn) == pairs_from_lineage(conn), step
    with live.engine.connect() as conn:
        assert (1, 500, 4000, 3, str(10).zfill(78)) in pairs(conn)


def _children_sql(index: Index, query: SearchQuery) -> str:
    with index.engine.connect() as conn:
        return str(search.build_search(conn, query).compile(conn))
