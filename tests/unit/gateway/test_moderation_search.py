# SPDX-License-Identifier: AGPL-3.0-only
"""Search leaves out the models a node denies and counts those it hid (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from sqlalchemy import insert

from mercato.gateway.moderation import hidden_count
from mercato.index import Index, SearchQuery
from mercato.index import schema as s

CREATOR = to_checksum_address("0x" + "ab" * 20)
NAMES = {1: "resnet vision", 2: "resnet denied", 3: "whisper audio"}


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    opened = Index.open(data_dir=tmp_path)
    with opened.engine.begin() as conn:
        for model_id, name in NAMES.items():
            conn.execute(
                insert(s.Model).values(
                    model_id=model_id,
                    creator=CREATOR,
                    owner=CREATOR,
                    created_block=model_id,
                    searchable=True,
                    name=name,
                    text=name,
                )
            )
    yield opened
    opened.engine.dispose()


def test_excluded_models_are_left_out_and_counted(index: Index) -> None:
    query = SearchQuery(text="resnet")
    assert {m.model_id for m in index.search(query).items} == {1, 2}
    denied = frozenset({2})
    page = index.search(SearchQuery(text="resnet", exclude=denied))
    assert [m.model_id for m in page.items] == [1]
    assert hidden_count(index, query, denied) == 1


def test_a_denied_model_the_query_does_not_match_is_not_counted(index: Index) -> None:
    assert hidden_count(index, SearchQuery(text="whisper"), frozenset({2})) == 0
    assert hidden_count(index, SearchQuery(), frozenset({2, 3})) == 2


def test_the_count_ignores_the_page_the_search_asked_for(index: Index) -> None:
    first = index.search(SearchQuery(limit=1, exclude=frozenset({3})))
    assert [m.model_id for m in first.items] == [2] and first.next_cursor is not None
    later = SearchQuery(limit=1, cursor=first.next_cursor)
    assert hidden_count(index, later, frozenset({3})) == 1
