# SPDX-License-Identifier: AGPL-3.0-only
"""Every fast path of search returns what a plain scan of the rows returns.

Search picks its plan per query (a filter drives or is checked, a prefix is searched
as the words it starts or merged by FTS5, the full text is probed per row or its
matches collected, the newest read off FTS5): each choice is forced here in turn on
random rows, and every page, followed through its cursors, is compared with a Python
scan of the same rows. Real SQLite files, hand-made rows: no chain needed.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from sqlalchemy import insert, text, update

from mercato.index import Index, SearchQuery, Sort, search
from mercato.index import schema as s

from .test_search_and_schema import _model

# Words sharing prefixes of every length, so that short and long prefixes, prefixes
# of one word and of several, all occur.
VOCABULARY = [
    "res",
    "resnet",
    "resnets",
    "resample",
    "bert",
    "berta",
    "vit",
    "vision",
    "visual",
    "tiny",
    "tinyllama",
    "a1",
    "a10",
    "a100",
    "zeta",
]
TAGS = ["vision", "nlp", "edge"]
TASKS = ["image-classification", "translation"]
SORT_COLUMNS = {
    Sort.NEWEST: ("model_id", True),
    Sort.BEST_RATED: ("rating_milli", True),
    Sort.MOST_BOUGHT: ("purchases", True),
    Sort.PRICE_LOW: ("price", False),
    Sort.PRICE_HIGH: ("price", True),
}
# Each plan search can choose, forced:
# (DRIVING_SET_MAX, CHECK_COST, PREFIX_WORDS_MAX, MATCHES_READ_MAX).
PLANS = {
    "driving": (10**9, 10**12, 32, 0),
    "checked-probed": (0, 0, 32, 0),
    "checked-collected": (0, 10**12, 32, 0),
    "checked-as-read-ids": (0, 10**12, 32, 10**9),
    "prefix-merged": (0, 0, 0, 0),
}


def _rows(rng: random.Random) -> list[dict[str, object]]:
    rows = []
    for model_id in range(1, 121):
        tags = rng.sample(TAGS, rng.randrange(0, 3))
        rows.append(
            _model(
                model_id,
                "-".join(rng.choices(VOCABULARY, k=2)),
                text=" ".join(rng.choices(VOCABULARY, k=rng.randrange(0, 4))),
                tags_text=" ".join(tags),
                task=rng.choice(TASKS),
                price=rng.randrange(0, 5),
                rating_milli=rng.randrange(0, 3) * 1000,
                rating_count=1,
                purchases=rng.randrange(0, 4),
                searchable=rng.random() > 0.05,
            )
        )
    return rows


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Index, list[dict[str, object]]]:
    rows = _rows(random.Random(17))
    index = Index.open(data_dir=tmp_path)
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
        tags = [
            {"model_id": r["model_id"], "tag": t} for r in rows for t in str(r["tags_text"]).split()
        ]
        conn.execute(insert(s.ModelTag), tags)
    return index, rows


def _tokens(row: dict[str, object]) -> set[str]:
    joined = " ".join(str(row[c] or "") for c in ("name", "tags_text", "text"))
    return set(re.findall(r"[a-z0-9]+", joined.lower()))


def _scan(rows: list[dict[str, object]], query: SearchQuery) -> list[int]:
    """What `query` returns, by a plain scan: every word a whole token, the last a prefix."""
    words = re.findall(r"\w+", (query.text or "").lower())
    kept = []
    for row in rows:
        tokens = _tokens(row)
        if not row["searchable"]:
            continue
        if words and not (
            all(w in tokens for w in words[:-1]) and any(t.startswith(words[-1]) for t in tokens)
        ):
            continue
        if query.tag and query.tag not in str(row["tags_text"]).split():
            continue
        if query.task and row["task"] != query.task:
            continue
        kept.append(row)
    column, descending = SORT_COLUMNS[query.sort]
    kept.sort(key=lambda r: (r[column], r["model_id"]), reverse=descending)
    return [int(r["model_id"]) for r in kept]  # type: ignore[call-overload]


def _pages(index: Index, query: SearchQuery) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        page = index.search(SearchQuery(**{**query.__dict__, "cursor": cursor}))
        seen += [m.model_id for m in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def _random_query(rng: random.Random) -> SearchQuery:
    words = [rng.choice(VOCABULARY) for _ in range(rng.choice([1, 1, 2]))]
    words[-1] = words[-1][: rng.randrange(1, len(words[-1]) + 1)]
    return SearchQuery(
        text=" ".join(words),
        tag=rng.choice([None, None, *TAGS]),
        task=rng.choice([None, None, *TASKS]),
        sort=rng.choice(list(Sort)),
        limit=rng.randrange(1, 8),
    )


@pytest.mark.parametrize("plan", PLANS)
def test_every_plan_pages_through_what_a_plain_scan_finds(
    seeded: tuple[Index, list[dict[str, object]]], monkeypatch: pytest.MonkeyPatch, plan: str
) -> None:
    index, rows = seeded
    driving, check_cost, prefix_words, read_ids = PLANS[plan]
    monkeypatch.setattr(search, "DRIVING_SET_MAX", driving)
    monkeypatch.setattr(search, "MATCHES_READ_MAX", read_ids)
    monkeypatch.setattr(search, "CHECK_COST", check_cost)
    monkeypatch.setattr(search, "PREFIX_WORDS_MAX", prefix_words)
    rng = random.Random(plan)
    queries = [_random_query(rng) for _ in range(60)]
    found = 0
    for query in queries:
        expected = _scan(rows, query)
        assert _pages(index, query) == expected, query
        found += len(expected)
    assert found > 100  # the queries find something to compare


def _sql(index: Index, query: SearchQuery) -> str:
    with index.engine.connect() as conn:
        statement = search.build_search(conn, query)
        return str(statement.compile(conn, compile_kwargs={"literal_binds": True}))


def test_a_longer_prefix_is_searched_as_the_words_it_starts(
    seeded: tuple[Index, list[dict[str, object]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before migration 0006, `resn*` reached FTS5 as a prefix, which it answers by
    merging the lists of every word it starts, for each model it checks (11 ms a check
    on a million models); now it is the words themselves, each one list."""
    index, _ = seeded
    # Every full text checked, so its FTS5 query shows (a few matches drive as ids).
    monkeypatch.setattr(search, "DRIVING_SET_MAX", -1)
    monkeypatch.setattr(search, "MATCHES_READ_MAX", 0)  # nor read first: FTS5 is asked
    monkeypatch.setattr(search, "CHECK_COST", 0)
    assert 'MATCH \'("resnet" OR "resnets")\'' in _sql(index, SearchQuery(text="resn"))
    assert 'MATCH \'"bert" AND "visual"\'' in _sql(index, SearchQuery(text="bert visu"))
    # Three letters or fewer have FTS5's own prefix lists; a word that starts nothing
    # stays a prefix (it matches nothing either way).
    assert "MATCH '\"res\"*'" in _sql(index, SearchQuery(text="res"))
    assert "MATCH '\"resq\"*'" in _sql(index, SearchQuery(text="resq"))
    # Past PREFIX_WORDS_MAX words, checking each would cost more than FTS5's merge.
    monkeypatch.setattr(search, "PREFIX_WORDS_MAX", 1)
    assert "MATCH '\"resn\"*'" in _sql(index, SearchQuery(text="resn"))


def test_the_term_list_follows_the_index_as_models_change(
    seeded: tuple[Index, list[dict[str, object]]],
) -> None:
    """`models_fts_terms` is a view of the FTS5 index, not a copy: a word arriving or
    leaving with a model's card is found, or no longer, at once."""
    index, _ = seeded
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), [_model(500, "quokkanet-tiny")])
    assert [m.model_id for m in index.search(SearchQuery(text="quokk")).items] == [500]
    with index.engine.begin() as conn:
        conn.execute(update(s.Model).where(s.Model.model_id == 500).values(name="wombat"))
    assert index.search(SearchQuery(text="quokk")).items == []
    assert [m.model_id for m in index.search(SearchQuery(text="womba")).items] == [500]


def test_words_the_tokenizer_folds_keep_the_prefix_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-ASCII word is folded by FTS5 (`café` is indexed as `cafe`): looking its
    letters up in the term list as they are would miss it, so it stays a prefix."""
    index = Index.open(data_dir=tmp_path)
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), [_model(1, "Café-Classifier"), _model(2, "cafeteria")])
    with monkeypatch.context() as patched:
        patched.setattr(search, "DRIVING_SET_MAX", -1)  # checked: the FTS5 query shows
        patched.setattr(search, "MATCHES_READ_MAX", 0)  # nor read first: FTS5 is asked
        assert "MATCH '\"café\"*'" in _sql(index, SearchQuery(text="CAFÉ"))
    assert [m.model_id for m in index.search(SearchQuery(text="CAFÉ")).items] == [2, 1]
    assert [m.model_id for m in index.search(SearchQuery(text="cafe")).items] == [2, 1]
    assert [m.model_id for m in index.search(SearchQuery(text="classif")).items] == [1]


def test_migration_0006_adds_the_term_list(tmp_path: Path) -> None:
    index = Index.open(data_dir=tmp_path)
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), [_model(1, "resnet-tiny")])
    with index.engine.connect() as conn:
        terms = conn.execute(text("SELECT DISTINCT term FROM models_fts_terms")).scalars()
        assert {"resnet", "tiny", "vision"} <= set(terms)


def test_a_common_word_is_probed_and_a_rare_one_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probing a rare word along the sort's index walks most of the index (a check per
    model, seconds on a million); collecting a common one gathers most of the models.
    The sampled share picks: 60 of 100 models are probed for, 2 of 100 collected."""
    index = Index.open(data_dir=tmp_path)
    rows = [
        _model(i, "common-net" if i % 5 < 3 else "plain-net", text="rare" if i in (7, 70) else "")
        for i in range(1, 101)
    ]
    with index.engine.begin() as conn:
        conn.execute(insert(s.Model), rows)
    monkeypatch.setattr(search, "DRIVING_SET_MAX", 0)
    monkeypatch.setattr(search, "MATCHES_READ_MAX", 0)  # nor read first: FTS5 is asked
    monkeypatch.setattr(search, "CHECK_COST", 1)  # the threshold of a million models, scaled
    probe = "models_fts.rowid = models.model_id"
    assert probe in _sql(index, SearchQuery(text="common", sort=Sort.BEST_RATED))
    assert probe not in _sql(index, SearchQuery(text="rare", sort=Sort.BEST_RATED))
    assert "+models.model_id IN (SELECT rowid" in _sql(
        index, SearchQuery(text="rare", sort=Sort.BEST_RATED)
    )
    assert [m.model_id for m in index.search(SearchQuery(text="rare")).items] == [70, 7]
