# SPDX-License-Identifier: AGPL-3.0-only
"""Search over indexed models: full text, filters, sorts and keyset pagination.

Full text covers the name, the tags and the card's free text: an FTS5 table on SQLite,
a generated `tsvector` with a GIN index on PostgreSQL; every word of the query must
match, the last one as a prefix (so "resn" finds "resnet" while typing).

Pages are cut with a keyset cursor (the last row's sort value and id), not OFFSET, so
page 500 costs what page 1 costs and a model published meanwhile does not shift rows
between pages.
"""

from __future__ import annotations

import base64
import enum
import json
import re
from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    and_,
    literal,
    select,
    text,
    tuple_,
)

from mercato.errors import InvalidSearchQueryError
from mercato.index import schema as s

MAX_PAGE_SIZE = 100
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 8


class Sort(enum.StrEnum):
    """Orders a search can return."""

    NEWEST = "newest"
    BEST_RATED = "best_rated"
    MOST_BOUGHT = "most_bought"
    PRICE_LOW = "price_low"
    PRICE_HIGH = "price_high"


@dataclass(frozen=True)
class SearchQuery:
    """What to search for. Every field is optional; filters combine with AND.

    Attributes:
        text: Words to find in the name, tags or card text.
        task: The card's pipeline_tag, exactly (`image-classification`).
        license: The SPDX license expression, exactly (`Apache-2.0`).
        tag: One tag, exactly.
        min_price: Lowest price in token base units, inclusive.
        max_price: Highest price in token base units, inclusive.
        free_only: Only models listed for sale at price 0.
        min_rating: Lowest average rating (1-5 stars); unrated models are left out.
        creator: The address that published the model.
        derived_from: Only direct children of this model id (its lineage names it).
        for_sale_only: Only models that can be bought now.
        sort: The order.
        limit: Models per page (1-100).
        cursor: `SearchPage.next_cursor` of the previous page.
    """

    text: str | None = None
    task: str | None = None
    license: str | None = None
    tag: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    free_only: bool = False
    min_rating: float | None = None
    creator: str | None = None
    derived_from: int | None = None
    for_sale_only: bool = False
    sort: Sort = Sort.NEWEST
    limit: int = 20
    cursor: str | None = None


@dataclass(frozen=True)
class ModelSummary:
    """One model as a search result lists it."""

    model_id: int
    name: str | None
    creator: str
    owner: str
    task: str | None
    license: str | None
    tags: tuple[str, ...]
    price: int
    for_sale: bool
    license_duration: int
    rating: float | None
    rating_count: int
    purchases: int
    latest_version: int
    created_block: int


@dataclass(frozen=True)
class SearchPage:
    """One page of results; `next_cursor` is None on the last page."""

    items: list[ModelSummary]
    next_cursor: str | None


def summary_from_row(row: Any) -> ModelSummary:
    """Builds a `ModelSummary` from a `models` row."""
    return ModelSummary(
        model_id=row.model_id,
        name=row.name,
        creator=row.creator,
        owner=row.owner,
        task=row.task,
        license=row.license,
        tags=tuple(row.tags_text.split()) if row.tags_text else (),
        price=row.price,
        for_sale=bool(row.for_sale),
        license_duration=row.license_duration,
        rating=row.rating_milli / 1000 if row.rating_count else None,
        rating_count=row.rating_count,
        purchases=row.purchases,
        latest_version=row.latest_version,
        created_block=row.created_block,
    )


def _sort_key(sort: Sort) -> tuple[Any, bool]:
    """The sort column and whether it descends (ties break on model id, same direction)."""
    return {
        # Ids are minted in order, so the newest model has the highest id.
        Sort.NEWEST: (s.Model.model_id, True),
        Sort.BEST_RATED: (s.Model.rating_milli, True),
        Sort.MOST_BOUGHT: (s.Model.purchases, True),
        Sort.PRICE_LOW: (s.Model.price, False),
        Sort.PRICE_HIGH: (s.Model.price, True),
    }[sort]


def _encode_cursor(sort: Sort, value: Any, model_id: int) -> str:
    raw = json.dumps([sort.value, value, model_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: Sort) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        sort_name, value, model_id = json.loads(base64.urlsafe_b64decode(padded))
        if sort_name != sort.value or not isinstance(model_id, int):
            raise ValueError("cursor of another sort")
        if not isinstance(value, int):
            raise ValueError("cursor value is not a number")
    except (ValueError, TypeError) as exc:
        raise InvalidSearchQueryError(
            "The page cursor is malformed or belongs to a search with another sort. Start "
            "again from the first page."
        ) from exc
    return value, model_id


def _fts_condition(conn: Connection, words: list[str]) -> ColumnElement[bool]:
    if conn.dialect.name == "sqlite":
        # Quoted terms cannot inject FTS5 syntax; the last one is a prefix.
        terms = [f'"{w}"' for w in words]
        terms[-1] += "*"
        match = text("SELECT rowid FROM models_fts WHERE models_fts MATCH :fts").bindparams(
            fts=" ".join(terms)
        )
        return s.Model.model_id.in_(match.columns(rowid=BigInteger))
    terms = [f"{w}" for w in words]
    terms[-1] += ":*"
    return text("models.search_vector @@ to_tsquery('simple', :fts)").bindparams(  # type: ignore[return-value]
        fts=" & ".join(terms)
    )


def _address(value: str) -> str:
    if not is_address(value):
        raise InvalidSearchQueryError(f"{value!r} is not an Ethereum address (0x + 40 hex digits).")
    return to_checksum_address(value)


def build_search(conn: Connection, query: SearchQuery) -> Select[Any]:
    """The SELECT for one page of `query` (limit + 1 rows, to know if more follow).

    Raises:
        InvalidSearchQueryError: A filter is out of range or the cursor is malformed.
    """
    if not 1 <= query.limit <= MAX_PAGE_SIZE:
        raise InvalidSearchQueryError(f"limit must be between 1 and {MAX_PAGE_SIZE}.")
    for name in ("min_price", "max_price"):
        value = getattr(query, name)
        if value is not None and value < 0:
            raise InvalidSearchQueryError(f"{name} cannot be negative.")
    if query.min_rating is not None and not 0 <= query.min_rating <= 5:
        raise InvalidSearchQueryError("min_rating must be between 0 and 5 stars.")
    conditions: list[ColumnElement[bool]] = [s.Model.searchable.is_(True)]
    words = _WORD.findall(query.text or "")[:MAX_WORDS]
    if words:
        conditions.append(_fts_condition(conn, [w.lower() for w in words]))
    if query.task:
        conditions.append(s.Model.task == query.task)
    if query.license:
        conditions.append(s.Model.license == query.license)
    if query.tag:
        tagged = select(s.ModelTag.model_id).where(s.ModelTag.tag == query.tag)
        conditions.append(s.Model.model_id.in_(tagged))
    if query.min_price is not None:
        conditions.append(s.Model.price >= query.min_price)
    if query.max_price is not None:
        conditions.append(s.Model.price <= query.max_price)
    if query.free_only:
        conditions += [s.Model.price == 0, s.Model.for_sale.is_(True)]
    if query.for_sale_only:
        conditions.append(s.Model.for_sale.is_(True))
    if query.min_rating is not None:
        conditions += [s.Model.rating_count > 0, s.Model.rating_milli >= query.min_rating * 1000]
    if query.creator:
        conditions.append(s.Model.creator == _address(query.creator))
    if query.derived_from is not None:
        children = select(s.Lineage.model_id).where(s.Lineage.parent_id == query.derived_from)
        conditions.append(s.Model.model_id.in_(children))
    column, descending = _sort_key(query.sort)
    if query.cursor:
        value, last_id = _decode_cursor(query.cursor, query.sort)
        key = tuple_(column, s.Model.model_id)
        # Typed literals, so a price is compared as the padded string it is stored as.
        bound = tuple_(literal(value, column.type), literal(last_id, s.Model.model_id.type))
        conditions.append(key < bound if descending else key > bound)
    order = (column.desc(), s.Model.model_id.desc()) if descending else (column, s.Model.model_id)
    return select(s.Model).where(and_(*conditions)).order_by(*order).limit(query.limit + 1)


def run_search(conn: Connection, query: SearchQuery) -> SearchPage:
    """Runs `query` and cuts the page.

    Raises:
        InvalidSearchQueryError: A filter is out of range or the cursor is malformed.
    """
    rows = conn.execute(build_search(conn, query)).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    items = [summary_from_row(r) for r in rows]
    next_cursor = None
    if more and rows:
        column, _ = _sort_key(query.sort)
        last = rows[-1]
        next_cursor = _encode_cursor(query.sort, getattr(last, column.key), last.model_id)
    return SearchPage(items=items, next_cursor=next_cursor)
