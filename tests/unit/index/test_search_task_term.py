# SPDX-License-Identifier: AGPL-3.0-only
"""The task as a term of SQLite's full-text index (migration 0013): words and a task
find what a plain scan finds, whatever the task's spelling, case or characters; no
search word reaches the term; the triggers follow a task that changes; the migration
upgrades an existing index in place and back. Real SQLite files, hand-made rows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, text, update

from mercato.index import Index, SearchQuery, Sort, search
from mercato.index import schema as s
from mercato.index.db import create_index_engine, default_url, downgrade, migrate

from .test_search_fast_paths import PLANS, VOCABULARY, _pages, _rows, _scan

# Tasks that differ only in case, hold characters the tokenizer folds, splits or drops,
# a quote (FTS5 syntax) and one task that is a prefix of another.
ODD_TASKS = [
    "translation",
    "Translation",
    "traduction-é",
    "tráduction-e",
    'say "hi"',
    "a",
    "ab",
    "画像分類",
]


def _odd_rows(seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = _rows(rng)
    for row in rows:
        row["task"] = rng.choice([*ODD_TASKS, None])
    return rows


def _seeded(tmp_path: Path, rows: list[dict[str, object]]) -> Index:
    index = Index.open(data_dir=tmp_path)
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
    return index


@pytest.mark.parametrize("plan", PLANS)
def test_words_and_any_task_page_through_what_a_plain_scan_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plan: str
) -> None:
    rows = _odd_rows(31)
    index = _seeded(tmp_path, rows)
    driving, check_cost, prefix_words, read_ids = PLANS[plan]
    monkeypatch.setattr(search, "DRIVING_SET_MAX", driving)
    monkeypatch.setattr(search, "MATCHES_READ_MAX", read_ids)
    monkeypatch.setattr(search, "CHECK_COST", check_cost)
    monkeypatch.setattr(search, "PREFIX_WORDS_MAX", prefix_words)
    rng = random.Random(plan)
    found = 0
    for _ in range(60):
        words = rng.sample(VOCABULARY, rng.choice([1, 2]))
        words[-1] = words[-1][: rng.randrange(1, len(words[-1]) + 1)]
        query = SearchQuery(
            text=" ".join(words),
            task=rng.choice([*ODD_TASKS, "absent"]),
            sort=rng.choice(list(Sort)),
            limit=rng.randrange(1, 6),
        )
        expected = _scan(rows, query)
        assert _pages(index, query) == expected, query
        found += len(expected)
    assert found > 30


def test_each_task_is_its_own_term_exactly(tmp_path: Path) -> None:
    rows = _odd_rows(5)
    index = _seeded(tmp_path, rows)
    for task in ODD_TASKS:
        query = SearchQuery(text="res", task=task, limit=100)
        expected = _scan(rows, query)
        assert expected, task  # every task has matches to compare
        assert _pages(index, query) == expected, task
    # An empty task is no filter, as without words.
    query = SearchQuery(text="res", task="", limit=100)
    assert _pages(index, query) == _scan(rows, SearchQuery(text="res", limit=100))


def test_no_search_word_reaches_the_task_term(tmp_path: Path) -> None:
    """The term is U+E000 and hex digits: the hex digits themselves, their prefixes or
    U+E000 typed into the box find nothing a plain scan would not."""
    rows = _odd_rows(9)
    index = _seeded(tmp_path, rows)
    hex_digits = b"translation".hex()  # 7472616e736c6174696f6e
    for typed in [hex_digits, hex_digits[:3], hex_digits[:1], "\ue0007472", "\ue000 7"]:
        query = SearchQuery(text=typed, limit=100)
        assert _pages(index, query) == _scan(rows, query) == [], typed
    # U+E000 alone is no word at all: every model, as with an empty box.
    assert _pages(index, SearchQuery(text="\ue000", limit=100)) == _scan(rows, SearchQuery())
    with index.engine.connect() as conn:
        terms = conn.execute(
            text("SELECT count(*) FROM models_fts_terms WHERE term >= :low"), {"low": "\ue000"}
        ).scalar_one()
    assert terms > 0  # the task terms are there, past every word a search can send


def test_words_and_a_task_are_one_full_text_query_without_the_task_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = _seeded(tmp_path, _odd_rows(3))
    query = SearchQuery(text="resnet bert", task="translation", sort=Sort.BEST_RATED)
    monkeypatch.setattr(search, "DRIVING_SET_MAX", -1)  # checked: the FTS5 query shows
    monkeypatch.setattr(search, "MATCHES_READ_MAX", 0)  # nor read first: FTS5 is asked
    with index.engine.connect() as conn:
        sql = str(
            search.build_search(conn, query).compile(conn, compile_kwargs={"literal_binds": True})
        )
    assert search.task_term("translation") in sql
    where = sql.split("WHERE", 1)[1]
    assert "task" not in where.replace(search.task_term("translation"), "")  # no row checked
    # Few matches: FTS5 is asked once, and its ids drive the query.
    asked: list[str] = []
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 3_000)
    monkeypatch.setattr(
        search, "_fts_matches", lambda c, fts, bound: asked.append(fts) or (2, "[1,2]")
    )
    with index.engine.connect() as conn:
        sql = str(
            search.build_search(conn, query).compile(conn, compile_kwargs={"literal_binds": True})
        )
    assert asked == [search._fts5_query(["resnet", "bert"], ["bert", "berta"], "translation")]
    assert "MATCH" not in sql and "json_each('[1,2]')" in sql


def test_the_term_follows_a_task_that_changes_and_a_model_removed(tmp_path: Path) -> None:
    rows = _odd_rows(12)
    index = _seeded(tmp_path, rows)
    moved = next(r for r in rows if r["task"] == "translation" and r["searchable"])
    with index.engine.begin() as conn:
        conn.execute(update(s.Model).where(s.Model.model_id == moved["model_id"]).values(task="a"))
    moved["task"] = "a"
    gone = next(r for r in rows if r["task"] == "Translation" and r is not moved)
    with index.engine.begin() as conn:
        conn.execute(delete(s.Model).where(s.Model.model_id == gone["model_id"]))
    rows.remove(gone)
    for task in ("translation", "a", "Translation"):
        for typed in ("r", "res", "bert vi", "tiny"):
            query = SearchQuery(text=typed, task=task, limit=100)
            assert _pages(index, query) == _scan(rows, query), (typed, task)
    assert moved["model_id"] in _pages(index, SearchQuery(text=str(moved["name"]), task="a"))
    with index.engine.connect() as conn:
        check = conn.execute(
            text("INSERT INTO models_fts(models_fts, rank) VALUES ('integrity-check', 1)")
        )
        check.close()


def test_migration_0013_adds_the_task_term_in_place_and_back(tmp_path: Path) -> None:
    rows = _odd_rows(8)
    engine = create_index_engine(default_url(tmp_path))
    migrate(engine, "0012")
    with engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
    migrate(engine)
    index = Index(engine)
    for task in ODD_TASKS:
        for typed in ("bert vi", "tiny res", "a1"):
            query = SearchQuery(text=typed, task=task, limit=3)
            assert _pages(index, query) == _scan(rows, query), (typed, task)
    with engine.connect() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(models_fts)")).all()]
        assert columns == ["name", "tags_text", "text", "task_term"]
        # The term list (migration 0006) reads the new table.
        assert conn.execute(text("SELECT count(*) FROM models_fts_terms")).scalar_one() > 0
        conn.execute(text("INSERT INTO models_fts(models_fts, rank) VALUES ('integrity-check', 1)"))
    downgrade(engine, "0012")
    with engine.begin() as conn:
        columns = [r[1] for r in conn.execute(text("PRAGMA table_info(models_fts)")).all()]
        assert columns == ["name", "tags_text", "text"]
        conn.execute(text("INSERT INTO models_fts(models_fts, rank) VALUES ('integrity-check', 1)"))
        # Without the term the task is a column filter again, and the triggers still work.
        conn.execute(update(s.Model).where(s.Model.model_id == 1).values(name="zzunique"))
    assert [m.model_id for m in index.search(SearchQuery(text="zzunique")).items] == [1]
    engine.dispose()
