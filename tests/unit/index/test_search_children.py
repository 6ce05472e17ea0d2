# SPDX-License-Identifier: AGPL-3.0-only
"""A parent's children, searched in each sort's order off `lineage_sort_keys` (SQLite,
migration 0007): the same pages a plain scan of the rows gives, a table that follows
`lineage` and `models` through every change, an in-place upgrade of an existing index,
and a plan that reads a page of children rather than all of them. Real SQLite files,
hand-made rows: no chain needed."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, delete, insert, text, update

from mercato.index import Index, SearchQuery, Sort, search
from mercato.index import schema as s
from mercato.index.db import create_index_engine, default_url, downgrade, migrate
from mercato.index.rebuild import index_content

from .test_search_and_schema import _model
from .test_search_fast_paths import SORT_COLUMNS, TAGS, VOCABULARY, _pages

PARENTS = (1, 2, 3)


def _rows(rng: random.Random) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    models = [
        _model(
            model_id,
            "-".join(rng.choices(VOCABULARY, k=2)),
            tags_text=" ".join(rng.sample(TAGS, rng.randrange(0, 3))),
            # Few distinct keys: ties, broken by the id, on every page boundary.
            price=rng.choice([0, 5, 2**70]),
            rating_milli=rng.randrange(0, 3) * 1000,
            rating_count=1,
            purchases=rng.randrange(0, 3),
            searchable=rng.random() > 0.1,
        )
        for model_id in range(1, 151)
    ]
    lineage = [
        {"model_id": child, "parent_id": parent, "position": p, "royalty_bps": 0, "block_number": 1}
        for child in range(4, 151)
        for p, parent in enumerate(rng.sample(PARENTS, rng.choice([0, 1, 1, 2])))
    ]
    return models, lineage


def _tags(models: list[dict[str, object]]) -> list[dict[str, object]]:
    return [
        {"model_id": m["model_id"], "tag": t} for m in models for t in str(m["tags_text"]).split()
    ]


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Index, list[dict[str, object]], list[dict[str, object]]]:
    models, lineage = _rows(random.Random(7))
    index = Index.open(data_dir=tmp_path)
    with index.engine.begin() as conn:
        # Half the lineage before the models it names, half after: both orders of arrival.
        conn.execute(insert(s.Lineage), lineage[::2])
        conn.execute(insert(s.Model), models)
        conn.execute(insert(s.Lineage), lineage[1::2])
        conn.execute(insert(s.ModelTag), _tags(models))
    return index, models, lineage


def _scan(
    models: list[dict[str, object]], lineage: list[dict[str, object]], query: SearchQuery
) -> list[int]:
    """The children of `query.derived_from` that pass its other filters, in its order."""
    children = {r["model_id"] for r in lineage if r["parent_id"] == query.derived_from}
    kept = [
        m
        for m in models
        if m["model_id"] in children
        and m["searchable"]
        and (query.tag is None or query.tag in str(m["tags_text"]).split())
        and (query.min_rating is None or int(m["rating_milli"]) >= query.min_rating * 1000)  # type: ignore[call-overload]
        and (query.max_price is None or int(m["price"]) <= query.max_price)  # type: ignore[call-overload]
        and m["model_id"] not in query.exclude
        and _text_matches(m, query.text)
    ]
    column, descending = SORT_COLUMNS[query.sort]
    kept.sort(key=lambda m: (m[column], m["model_id"]), reverse=descending)
    return [int(m["model_id"]) for m in kept]  # type: ignore[call-overload]


def _text_matches(row: dict[str, object], text_query: str | None) -> bool:
    """Every word a whole token of the row, the last one a prefix (as search reads it)."""
    words = re.findall(r"\w+", (text_query or "").lower())
    if not words:
        return True
    joined = " ".join(str(row[c] or "") for c in ("name", "tags_text", "text"))
    tokens = set(re.findall(r"[a-z0-9]+", joined.lower()))
    return all(w in tokens for w in words[:-1]) and any(t.startswith(words[-1]) for t in tokens)


def _sql(index: Index, query: SearchQuery) -> str:
    with index.engine.connect() as conn:
        return str(search.build_search(conn, query).compile(conn))


@pytest.mark.parametrize("driving", [10**9, 0], ids=["few-children", "many-children"])
@pytest.mark.parametrize("sort", list(Sort))
def test_children_pages_are_what_a_plain_scan_finds(
    seeded: tuple[Index, list[dict[str, object]], list[dict[str, object]]],
    monkeypatch: pytest.MonkeyPatch,
    sort: Sort,
    driving: int,
) -> None:
    index, models, lineage = seeded
    # Whether the parent's children would drive or be checked, they are read in order
    # off lineage_sort_keys whenever every other filter is checked.
    monkeypatch.setattr(search, "DRIVING_SET_MAX", driving)
    queries = [
        SearchQuery(derived_from=parent, sort=sort, limit=limit, **extra)  # type: ignore[arg-type]
        for parent in (*PARENTS, 99)
        for limit in (1, 4)
        for extra in (
            {},
            {"tag": "vision"},
            {"min_rating": 1.0},
            {"max_price": 5},
            {"exclude": frozenset({10, 11, 12, 40})},
            {"text": "res"},
            {"text": "vision resn", "tag": "edge"},
        )
    ]
    compared = 0
    for query in queries:
        if driving == 0 or not (query.tag or query.min_rating or query.max_price or query.text):
            assert "lineage_sort_keys" in _sql(index, query)
        expected = _scan(models, lineage, query)
        assert _pages(index, query) == expected, query
        compared += len(expected)
    assert compared > 400  # the queries find children to compare


def test_a_small_other_filter_still_drives(
    seeded: tuple[Index, list[dict[str, object]], list[dict[str, object]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rare word selects fewer models than the parent has children: it drives, and
    its few matches are checked against the parent, rather than the children walked."""
    index, _, _ = seeded
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), [_model(900, "quokka-net"), _model(901, "quokka-tiny")])
        conn.execute(
            insert(s.Lineage),
            [{"model_id": 900, "parent_id": 1, "position": 0, "royalty_bps": 0, "block_number": 9}],
        )
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 5)
    query = SearchQuery(derived_from=1, text="quokka", sort=Sort.BEST_RATED)
    assert "lineage_sort_keys" not in _sql(index, query)
    assert [m.model_id for m in index.search(query).items] == [900]


def _pairs_from_lineage(conn: Connection) -> list[tuple[Any, ...]]:
    return sorted(
        tuple(r)
        for r in conn.execute(
            text(
                "SELECT l.parent_id, l.model_id, m.rating_milli, m.purchases, m.price "
                "FROM lineage l LEFT JOIN models m ON m.model_id = l.model_id"
            )
        )
    )


def _pairs(conn: Connection) -> list[tuple[Any, ...]]:
    return sorted(
        tuple(r)
        for r in conn.execute(
            text(
                "SELECT parent_id, model_id, rating_milli, purchases, price FROM lineage_sort_keys"
            )
        )
    )


def test_the_sort_keys_follow_lineage_and_models_through_every_change(
    seeded: tuple[Index, list[dict[str, object]], list[dict[str, object]]],
) -> None:
    index, _, lineage = seeded
    moved, old_parent = lineage[0]["model_id"], lineage[0]["parent_id"]
    steps = [
        # A child's rating, sales and price change (refresh_models updates the row).
        update(s.Model).where(s.Model.model_id == 20).values(rating_milli=4900, purchases=77),
        update(s.Model).where(s.Model.model_id == 21).values(price=2**90),
        update(s.Model).where(s.Model.model_id < 60).values(purchases=s.Model.purchases + 1),
        # A name change alone leaves the keys as they are.
        update(s.Model).where(s.Model.model_id == 22).values(name="renamed"),
        # Lineage of a model not indexed yet, then the model (its keys arrive with it).
        insert(s.Lineage).values(
            model_id=500, parent_id=1, position=0, royalty_bps=0, block_number=9
        ),
        insert(s.Model).values(**_model(500, "late-child", rating_milli=4000, purchases=3)),
        # A rollback removes lineage above the fork, and models created above it.
        delete(s.Lineage).where(s.Lineage.model_id.in_([30, 31])),
        delete(s.Model).where(s.Model.model_id == 32),
        # Lineage rows are never updated today; if they were, the pair would move.
        update(s.Lineage)
        .where(s.Lineage.model_id == moved, s.Lineage.parent_id == old_parent)
        .values(parent_id=77),
    ]
    for step in steps:
        with index.engine.begin() as conn:
            conn.execute(step)
            pairs = _pairs(conn)
            assert pairs == _pairs_from_lineage(conn), step
    assert (1, 500, 4000, 3, str(10).zfill(78)) in pairs  # the price as stored, padded
    assert (77, moved) in {p[:2] for p in pairs}
    with index.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM models"))]
        links = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM lineage"))]
    for sort in Sort:
        query = SearchQuery(derived_from=1, sort=sort, limit=6)
        expected = _scan(rows, links, query)
        assert 500 in expected and len(expected) > 20
        assert _pages(index, query) == expected


def test_a_rebuild_and_the_live_index_agree_whatever_the_order_of_arrival(
    tmp_path: Path,
) -> None:
    """`mercato index check` compares every table: the pairs must not depend on whether
    a lineage row or its child's model row was written first."""
    models, lineage = _rows(random.Random(3))
    contents = []
    for name, lineage_first in (("a", True), ("b", False)):
        index = Index.open(data_dir=tmp_path / name)
        with index.engine.begin() as conn:
            if lineage_first:
                conn.execute(insert(s.Lineage), lineage)
            conn.execute(insert(s.Model), models)
            if not lineage_first:
                conn.execute(insert(s.Lineage), lineage)
        contents.append(index_content(index.engine))
        index.close()
    assert "lineage_sort_keys" in contents[0]
    assert len(contents[0]["lineage_sort_keys"]) == len(lineage)
    assert contents[0] == contents[1]


def test_migration_0007_fills_an_existing_index_in_place(tmp_path: Path) -> None:
    models, lineage = _rows(random.Random(11))
    engine = create_index_engine(default_url(tmp_path))
    migrate(engine, "0006")
    with engine.begin() as conn:
        conn.execute(insert(s.Model), models)
        conn.execute(insert(s.Lineage), lineage)
    migrate(engine, "0007")
    with engine.begin() as conn:
        assert len(_pairs(conn)) == len(lineage)
        assert _pairs(conn) == _pairs_from_lineage(conn)
    index = Index(engine)
    for sort in Sort:
        query = SearchQuery(derived_from=2, sort=sort, limit=3)
        assert _pages(index, query) == _scan(models, lineage, query)
    # And back: the table and its triggers go, lineage and models stay.
    downgrade(engine, "0006")
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM sqlite_master")).scalars())
        assert not {n for n in names if "sort_keys" in n}
        assert conn.execute(text("SELECT count(*) FROM lineage")).scalar() == len(lineage)


def test_a_page_of_children_reads_a_page_not_every_child(tmp_path: Path) -> None:
    """No statistics (a node never runs ANALYZE): the plan still walks the parent's
    range of the sort's index and sorts nothing, for a parent with many children."""
    index = Index.open(data_dir=tmp_path)
    with index.engine.begin() as conn:
        conn.execute(
            insert(s.Model), [_model(i, f"m-{i}", rating_milli=i % 5000) for i in range(1, 3001)]
        )
        conn.execute(
            insert(s.Lineage),
            [
                {"model_id": i, "parent_id": 1, "position": 0, "royalty_bps": 0, "block_number": i}
                for i in range(2, 3001)
            ],
        )
    indexes = {
        Sort.NEWEST: "PRIMARY KEY",
        Sort.BEST_RATED: "ix_lineage_sort_keys_rating",
        Sort.MOST_BOUGHT: "ix_lineage_sort_keys_purchases",
        Sort.PRICE_LOW: "ix_lineage_sort_keys_price",
        Sort.PRICE_HIGH: "ix_lineage_sort_keys_price",
    }
    with index.engine.connect() as conn:
        for sort, name in indexes.items():
            first = search.build_search(conn, SearchQuery(derived_from=1, sort=sort))
            page = index.search(SearchQuery(derived_from=1, sort=sort))
            later = search.build_search(
                conn, SearchQuery(derived_from=1, sort=sort, cursor=page.next_cursor)
            )
            for statement in (first, later):
                plan = _plan(conn, statement)
                assert "TEMP B-TREE" not in plan, plan
                assert plan.splitlines()[0].startswith("SEARCH lineage_sort_keys"), plan
                assert name in plan, plan


def _plan(conn: Connection, statement: Any) -> str:
    compiled = statement.compile(conn)
    params = compiled.construct_params()
    values = []
    for name in compiled.positiontup:
        processor = compiled.binds[name].type._cached_bind_processor(conn.dialect)
        values.append(processor(params[name]) if processor else params[name])
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), tuple(values)).all()
    return "\n".join(row[3] for row in rows)


def test_migration_0010_lists_children_off_one_index(tmp_path: Path) -> None:
    """`ix_lineage_children` (parent, child) replaces `ix_lineage_parent_id` in place:
    a parent's children are one range of it, in id order, without reading the table."""
    models, lineage = _rows(random.Random(5))
    engine = create_index_engine(default_url(tmp_path))
    migrate(engine, "0009")
    with engine.begin() as conn:
        conn.execute(insert(s.Model), models)
        conn.execute(insert(s.Lineage), lineage)
    migrate(engine)
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM sqlite_master")).scalars())
        plan = " ".join(
            r[3]
            for r in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT model_id FROM lineage WHERE parent_id = 2 "
                "ORDER BY model_id"
            )
        )
        children = conn.execute(
            text("SELECT model_id FROM lineage WHERE parent_id = 2 ORDER BY model_id")
        ).scalars()
        assert list(children) == sorted(r["model_id"] for r in lineage if r["parent_id"] == 2)
    assert "ix_lineage_children" in names and "ix_lineage_parent_id" not in names
    assert "COVERING INDEX ix_lineage_children" in plan and "TEMP B-TREE" not in plan
    downgrade(engine, "0009")
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM sqlite_master")).scalars())
    assert "ix_lineage_parent_id" in names and "ix_lineage_children" not in names
