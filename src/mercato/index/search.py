# SPDX-License-Identifier: AGPL-3.0-only
"""Search over indexed models: full text, filters, sorts and keyset pagination.

Full text covers the name, the tags and the card's free text: an FTS5 table on SQLite,
a generated `tsvector` with a GIN index on PostgreSQL; every word of the query must
match, the last one as a prefix (so "resn" finds "resnet" while typing).

Pages are cut with a keyset cursor (the last row's sort value and id), not OFFSET, so
page 500 costs what page 1 costs and a model published meanwhile does not shift rows
between pages. Nothing counts every match: a one-letter prefix matches most of a
million models, and a page needs only its first rows.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    Select,
    and_,
    exists,
    func,
    literal,
    literal_column,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy import (
    column as sql_column,
)

from mercato.errors import InvalidSearchQueryError
from mercato.index import schema as s

MAX_PAGE_SIZE = 100
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 8
# A word longer than any real one is a request to make the full-text index work for
# nothing; 100 letters is far above the longest model or card word.
MAX_WORD_LENGTH = 100
# Prefixes this short or shorter have their own list in SQLite's FTS5 index (migration
# 0003, `prefix='1 2 3'`), so checking one model against them is one seek.
INDEXED_PREFIX = 3
# A longer prefix is searched as the words it starts (each checked with one seek), up
# to this many of them: see `_prefix_words`.
PREFIX_WORDS_MAX = 32
# Checking one model against a word in FTS5 costs this many times what collecting one
# of its matches costs, and the newest this many models show how common a word is: see
# `_probing_pays`.
CHECK_COST = 1_000
SHARE_SAMPLE = 20_000
# What SQLite's unicode61 tokenizer keeps as one word, unchanged: a word of these
# characters is looked up in the term list as it is.
_PLAIN_WORD = re.compile(r"[a-z0-9]+")
# Ids and counts are 64-bit signed integers in SQL; a bigger number from a request
# must be refused before it reaches the driver.
_MAX_SQL_INT = 2**63 - 1
_MAX_UINT = 2**256 - 1


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
        exclude: Model ids to leave out (the models this node's moderation denies).
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
    exclude: frozenset[int] = frozenset()
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
        top = _MAX_UINT if sort in (Sort.PRICE_LOW, Sort.PRICE_HIGH) else _MAX_SQL_INT
        if not (0 <= value <= top and 0 <= model_id <= _MAX_SQL_INT):
            raise ValueError("cursor value out of range")
    except (ValueError, TypeError) as exc:
        raise InvalidSearchQueryError(
            "The page cursor is malformed or belongs to a search with another sort. Start "
            "again from the first page."
        ) from exc
    return value, model_id


# How SQLite runs a search. A filter an index can serve (full text, a tag, a parent, a
# task, a license, a creator, a price or rating range) may *drive* the query: its models
# are looked up one by one, then all of them sorted, and only then is the page cut. Or
# it is *checked* on each row while the sort's own index is walked in order, which stops
# as soon as the page is full. Driving costs a lookup per model the filter selects,
# walking about `limit / share of models that pass` rows, so a filter selecting few
# models should drive and one selecting many be checked. SQLite's planner misjudges this
# (it does not weigh the LIMIT, and its statistics hold averages, not the skew of a
# common word or tag), so each such filter's size is counted first, up to this bound
# (the count stops there, so it stays cheap), and a bigger one is written in a form no
# index can serve. Driving costs grow with the filter, walking with the table over the
# filter, so the bound where they cross grows with the table (as its square root):
# measured on 100,000 models it lies between 400 and 2,000 models, on 1,000,000 between
# 2,000 and 5,000 (a lineage filter of 2,000 children took 100+ ms checked and 5 ms
# driving); 3,000 keeps both sizes well under 20 ms. PostgreSQL's planner makes the same
# choice well by itself.
DRIVING_SET_MAX = 3_000
# A full-text filter whose check would collect all its matches anyway (several words,
# or a word with a task: `_fts_filter`) has its matches read up to this many, once: a
# few more than DRIVING_SET_MAX are then checked as those ids along the sort's index,
# instead of FTS5 intersecting its lists a second time for the check (two common words
# and a task, ~3,500-12,000 matches of a million models: 8-14 ms a pass, where
# checking the ids read costs 1-2 ms).
MATCHES_READ_MAX = 20_000


@dataclass(frozen=True)
class _Filter:
    """One filter an index could drive the query with, in both forms.

    Attributes:
        drive: The condition in a form an index can serve.
        check: The same condition in a form checked row by row only (SQLite).
        members: The rows the filter selects, to count them; None where counting
            would cost what the query costs (full text on PostgreSQL: a GIN scan is
            not lazy).
    """

    drive: ColumnElement[bool]
    check: ColumnElement[bool]
    members: Select[Any] | None
    # A filter through another table (tag, lineage): the one kind PostgreSQL misjudges.
    membership: bool = False
    # The FTS5 query of a full-text filter (SQLite), to read its matches off FTS5.
    fts: str | None = None
    # Its check collects every match (SQLite's `IN (SELECT rowid ...)`), so reading
    # them all first costs nothing more: see MATCHES_READ_MAX.
    collects: bool = False
    # Sort the rows it finds rather than walk the sort's index (`_fenced`, PostgreSQL),
    # every other filter checked on them: see `_narrowed`.
    fence: bool = False
    # The condition in a form no index serves on PostgreSQL (None: `check` is one).
    fenced: ColumnElement[bool] | None = None


def _unindexed(column: Any) -> ColumnElement[Any]:
    """`column` behind SQLite's unary +: the same value, which no index serves."""
    return literal_column(f"+{column.table.name}.{column.name}", column.type)


def _column_filter(column: Any, condition: Callable[[Any], ColumnElement[bool]]) -> _Filter:
    return _Filter(
        drive=condition(column),
        check=condition(_unindexed(column)),
        members=select(literal_column("1")).select_from(s.Model).where(condition(column)),
        fenced=condition(_fenced(column)),
    )


def task_term(task: str) -> str:
    """`task` as the one term SQLite's full-text index holds for it (migration 0013).

    U+E000, a private-use character FTS5's tokenizer keeps inside a word and no search
    word holds (`_WORD` leaves it out), then the hex digits of the task's UTF-8 bytes:
    one term per task, exact (case included), that no search word or prefix matches.
    """
    return "\ue000" + task.encode().hex()


def _fts5_query(words: list[str], last: list[str] | None = None, task: str | None = None) -> str:
    """The FTS5 query for `words`: quoted terms (no FTS5 syntax), the last a prefix.

    Args:
        words: The query's words, lowercase.
        last: The indexed words the last word starts (`_prefix_words`), searched for
            whole instead of the prefix; None keeps the prefix.
        task: A task the matches must have, asked of FTS5 as its term (`task_term`).
    """
    terms = [f'"{w}"' for w in words]
    if not last:
        terms[-1] += "*"
    elif len(last) == 1:
        terms[-1] = f'"{last[0]}"'
    else:
        terms[-1] = "(" + " OR ".join(f'"{w}"' for w in last) + ")"
    if task is not None:
        terms.append(f'"{task_term(task)}"')
    # An explicit AND: FTS5 reads no implicit one before a parenthesis.
    return " AND ".join(terms)


def _prefix_words(conn: Connection, prefix: str) -> list[str] | None:
    """The words in SQLite's full-text index that start with `prefix`, read off its
    term list (`models_fts_terms`, migration 0006).

    FTS5 answers a prefix longer than its prefix lists by merging the list of every
    word the prefix starts, and redoes that for each model it checks: 11 ms per check
    of a word in a third of a million models, where checking one whole word is one
    seek (30 microseconds). Reading the words takes one seek each, in the term list's
    order; a word's last letter followed by NUL is the next place to seek (no indexed
    word holds a NUL).

    Returns:
        The words (a prefix that starts none gives an empty list), or None when the
        prefix is not a plain lowercase ASCII word (the tokenizer could fold or split
        it) or starts more than PREFIX_WORDS_MAX words (checking them all would cost
        more than merging).
    """
    if not _PLAIN_WORD.fullmatch(prefix):
        return None
    found: list[str] = []
    seek = text("SELECT term FROM models_fts_terms WHERE term >= :start LIMIT 1")
    start = prefix
    while (word := conn.execute(seek, {"start": start}).scalar()) is not None:
        if not word.startswith(prefix):
            break
        if len(found) == PREFIX_WORDS_MAX:
            return None
        found.append(word)
        start = word + "\x00"
    return found


def _probing_pays(conn: Connection, fts: str, words: int, limit: int) -> bool:
    """Whether checking the models along the sort's index against `fts` one by one
    costs less than collecting all its matches first (SQLite).

    A check is a seek in each of the word's lists (50-150 microseconds on a million
    models); the walk stops at the page's end, after about `limit / share` checks, where
    `share` is the part of the models that match. Collecting costs about 0.12
    microseconds a match, `share * models` of them. So checking pays when
    `share ** 2 * models >= CHECK_COST * limit * words`: on a million models, for a
    single word in 15% of them or more (a word in a third: 3 ms checked, 35 ms
    collected; in 8%: 9 ms collected, 13-44 ms checked). The share is sampled from the
    newest ids (FTS5 reads a range of ids off each list directly).
    """
    top = conn.execute(select(func.max(s.Model.model_id))).scalar() or 0
    window = min(SHARE_SAMPLE, top)
    if window == 0:
        return True
    hits = conn.execute(
        text("SELECT count(*) FROM models_fts WHERE models_fts MATCH :fts AND rowid > :low"),
        {"fts": fts, "low": top - window},
    ).scalar_one()
    share = hits / window
    return share * share * top >= CHECK_COST * (limit + 1) * words


# The expression of the GIN index `ix_models_task_words` (migration 0014, PostgreSQL):
# each model's plain words (`[a-z0-9]+`) and the markers `^` + the first three and
# `^` + the first four letters of each of its words (when plain), every one behind the
# md5 hex digits of the model's task, so each task has lists of its own (a sixth of a
# word's models in six tasks) and a model without a task has none. Written as the
# index was: PostgreSQL uses an expression index for the very same expression only.
_TASK_KEY = "md5(models.task)"
TASK_WORDS_VECTOR = (
    "array_to_tsvector(array_remove(array_remove(string_to_array("
    "regexp_replace(models.search_vector::text, '''([a-z0-9]+)''[^ ]*|[^ ]+', "
    f"{_TASK_KEY} || '\\1', 'g') || ' ' || "
    "regexp_replace(models.search_vector::text, '''(([a-z0-9]{3})([a-z0-9])?)?[^ ]*', "
    f"{_TASK_KEY} || '^\\2 ' || {_TASK_KEY} || '^\\2\\3', 'g'), ' '), "
    f"{_TASK_KEY}), {_TASK_KEY} || '^'))"
)
# A last word this long or longer is narrowed by its marker (`^vit`, `^bert`).
NARROWED_PREFIX_MIN = 3
NARROWED_PREFIX_MAX = 4


def task_words_query(words: list[str], task: str) -> str:
    """The tsquery asked of TASK_WORDS_VECTOR's index for plain `words` in `task`: the
    first words exactly, the last one's marker, each behind the task's md5 (so the task
    is never parsed: any character in it is only hashed)."""
    key = hashlib.md5(task.encode()).hexdigest()
    last = words[-1][:NARROWED_PREFIX_MAX]
    return " & ".join([*(f"'{key}{w}'" for w in words[:-1]), f"'{key}^{last}'"])


def _narrowed(words: list[str], fts: str, task: str) -> _Filter:
    """Several plain words and a task, found with exact words of TASK_WORDS_VECTOR's
    index, then checked against the full query on those rows (PostgreSQL).

    GIN answers the last word's prefix (`bert:*`) by gathering every row of every word
    it starts before intersecting: 30-50 ms for a common word of a million models,
    where exact words cost a few; and intersecting a word's list with the task's
    (166,000 models) costs 10-20 ms more. The index holds each word and marker per task:
    it is asked for the first words and the last word's marker (`^bert` for `berta`, or
    `^vit`) in the task, lists a sixth as long. Every model the query matches holds all
    of them, so none is lost; the full query and the task then drop the few kept besides
    (`bertha` for `berta`; another task of the same md5, none known), behind COALESCE
    and `||`, expressions no index serves, so they are checked on the rows found and
    never gathered. The candidates are few by construction (several words and a task),
    so the rows are sorted rather than the sort's index walked (`fence`): walking would
    compute the markers of every row.
    """
    condition = text(
        f"{TASK_WORDS_VECTOR} @@ CAST(:narrowing AS tsquery) "
        "AND COALESCE(models.search_vector, ''::tsvector) @@ to_tsquery('simple', :fts)"
    ).bindparams(narrowing=task_words_query(words, task), fts=fts)
    return _Filter(condition, condition, None, fence=True)  # type: ignore[arg-type]


def _fts_filter(conn: Connection, words: list[str], limit: int, task: str | None) -> _Filter:
    """The full-text filter for `words`.

    Args:
        words: The query's words, lowercase.
        limit: The page size (SQLite weighs checking against collecting with it).
        task: The query's task filter. SQLite asks FTS5 for its term with the words
            (`task_term`), which makes the filter exact for the task too: FTS5
            intersects the lists, and only the models with the task are counted and
            read. With several words, PostgreSQL narrows the full text with it in one
            index scan (`_narrowed`) and filters on the task exactly as well.
    """
    if conn.dialect.name == "sqlite":
        last = None if len(words[-1]) <= INDEXED_PREFIX else _prefix_words(conn, words[-1])
        fts = _fts5_query(words, last, task)
        matches = (
            select(literal_column("rowid", BigInteger))
            .select_from(table("models_fts"))
            .where(literal_column("models_fts").op("MATCH")(fts))
        )
        one_list = len(words[-1]) <= INDEXED_PREFIX or last is not None
        if (
            len(words) == 1
            and one_list
            and _probing_pays(conn, fts, max(1, len(last or ())) + (task is not None), limit)
        ):
            # The word is one list in the FTS5 index (a short prefix has its own; a
            # longer one became the words it starts) and common: checking one model is
            # a seek in it, and few models are checked before the page is full.
            check = text(
                "EXISTS (SELECT 1 FROM models_fts WHERE models_fts MATCH :fts "
                "AND models_fts.rowid = models.model_id)"
            ).bindparams(fts=fts)
            collects = False
        else:
            # Several words (FTS5 checks several lists per model, about a quarter of a
            # millisecond), a prefix of too many words (FTS5 merges their lists for each
            # model it checks, 11 ms for a common one) or a rarer word (the walk is
            # long): its matches are collected once instead (behind the unary + that
            # keeps them from driving).
            check = text(
                "+models.model_id IN (SELECT rowid FROM models_fts WHERE models_fts MATCH :fts)"
            ).bindparams(fts=fts)
            collects = True
        return _Filter(
            s.Model.model_id.in_(matches),
            check,  # type: ignore[arg-type]
            matches,
            fts=fts,
            collects=collects,
        )
    terms = [f"{w}" for w in words]
    terms[-1] += ":*"
    fts = " & ".join(terms)
    if (
        task is not None
        and len(words) >= 2
        and len(words[-1]) >= NARROWED_PREFIX_MIN
        and all(_PLAIN_WORD.fullmatch(w) for w in words)
    ):
        return _narrowed(words, fts, task)
    vector = text("models.search_vector @@ to_tsquery('simple', :fts)").bindparams(fts=fts)
    return _Filter(vector, vector, None)  # type: ignore[arg-type]


def _membership_filter(key: Any, member: ColumnElement[bool]) -> _Filter:
    """Models whose id is `key` in a row of `key`'s table that satisfies `member`.

    The table's primary key starts with `key` (a model id), so checking one model is
    one index probe.
    """
    members = select(key).where(member)
    check = exists().where(key == s.Model.model_id, member)
    return _Filter(s.Model.model_id.in_(members), check, members, membership=True)


def _sizes(conn: Connection, filters: list[_Filter]) -> list[int | None]:
    """How many models each filter selects, counted up to DRIVING_SET_MAX + 1."""
    counted = [f.members for f in filters if f.members is not None]
    if not counted:
        return [None] * len(filters)
    counts = select(
        *(
            select(func.count())
            .select_from(members.limit(DRIVING_SET_MAX + 1).subquery())
            .scalar_subquery()
            for members in counted
        )
    )
    found = iter(conn.execute(counts).one())
    return [None if f.members is None else next(found) for f in filters]


def _choose(
    conn: Connection, filters: list[_Filter], sort: Sort
) -> tuple[list[_Filter], list[ColumnElement[bool]], bool]:
    """Each filter in the form that runs fastest: see `DRIVING_SET_MAX`.

    Returns:
        The filters (a full-text one whose matches were all read now checks them as
        those ids: `check` replaced, `fts` None), the conditions (each filter's `drive`
        or `check`), and whether a small filter must drive past PostgreSQL's planner
        (see `_fenced`).
    """
    if not filters:
        return [], [], False
    if conn.dialect.name != "sqlite":
        if any(f.fence for f in filters):
            # The fenced filter finds few rows and every other one is checked on them:
            # driving by a task's or a tag's index instead would compute the fenced
            # filter's expression on every row that index finds.
            return (
                filters,
                [
                    f.drive if f.fence else f.check if f.fenced is None else f.fenced
                    for f in filters
                ],
                True,
            )
        # Its statistics serve filters on the models' own columns well, and counting
        # them would cost more than it saves: only filters through another table are.
        sizes = _sizes(conn, [f for f in filters if f.membership])
        small = any(n is not None and n <= DRIVING_SET_MAX for n in sizes)
        return filters, [f.drive for f in filters], small
    # The full text's matches are read, not counted (up to the same bound, or up to
    # MATCHES_READ_MAX when its check would collect them all anyway): when few, they
    # drive the query as those ids, so FTS5 answers the words once, not once to count
    # and again in the query (two common words and a task: ~500 ids, each FTS5 pass 3-6
    # ms on a million models); when more but all read, they are checked as those ids.
    # (Not in the newest order: FTS5 walks its matches in that order and stops at the
    # page's end, `_newest_from_fts`, cheaper than reading them all.)
    read_all = max(MATCHES_READ_MAX, DRIVING_SET_MAX + 1)
    bounds = {
        i: read_all if f.collects and sort is not Sort.NEWEST else DRIVING_SET_MAX + 1
        for i, f in enumerate(filters)
        if f.fts is not None
    }
    found = {i: _fts_matches(conn, filters[i].fts or "", bound) for i, bound in bounds.items()}
    sizes = _sizes(
        conn, [replace(f, members=None) if i in found else f for i, f in enumerate(filters)]
    )
    filters = list(filters)
    chosen: list[ColumnElement[bool]] = []
    for i, (f, n) in enumerate(zip(filters, sizes, strict=True)):
        if i in found:
            n, matches = found[i]
            ids = select(literal_column("value", BigInteger)).select_from(func.json_each(matches))
            if n > DRIVING_SET_MAX and n < bounds[i]:
                # Every match read: checked as those ids (behind the unary + that keeps
                # them from driving), FTS5 not asked again.
                filters[i] = replace(f, check=_unindexed(s.Model.model_id).in_(ids), fts=None)
                chosen.append(filters[i].check)
            elif n <= DRIVING_SET_MAX:
                chosen.append(s.Model.model_id.in_(ids))
            else:
                chosen.append(f.check)
        elif n is None or n > DRIVING_SET_MAX:
            chosen.append(f.check)
        else:
            chosen.append(f.drive)
    return filters, chosen, False


def _fts_matches(conn: Connection, fts: str, bound: int) -> tuple[int, str]:
    """How many models match `fts`, up to `bound`, and their ids as a JSON array (built
    by SQLite: no Python object per id) (SQLite)."""
    count, ids = conn.execute(
        text(
            "SELECT count(*), json_group_array(rowid) FROM (SELECT rowid FROM models_fts "
            "WHERE models_fts MATCH :fts LIMIT :n)"
        ),
        {"fts": fts, "n": bound},
    ).one()
    return int(count), str(ids)


def _fenced(column: Any) -> ColumnElement[Any]:
    """`column` as an expression no index serves (PostgreSQL), to sort a small set by.

    When a filter selects a few thousand models, PostgreSQL still often walks the sort's
    index and checks the filter on each row, expecting the page to fill early: on
    1,000,000 models a parent with 2,000 children took 130-380 ms that way. Sorting by
    an expression leaves the filter's own index as the only way in.
    """
    # Literal SQL operands: a bound '' would go through the column's type (a uint256).
    if isinstance(column.type, (BigInteger, Integer)):
        return column.op("+")(literal_column("0"))
    return column.op("||")(literal_column("''"))


def _address(value: str) -> str:
    if not is_address(value):
        raise InvalidSearchQueryError(f"{value!r} is not an Ethereum address (0x + 40 hex digits).")
    return to_checksum_address(value)


def build_search(conn: Connection, query: SearchQuery) -> Select[Any]:
    """The SELECT for one page of `query` (limit + 1 rows, to know if more follow).

    On SQLite this first counts (boundedly) how many models each indexable filter
    selects, to pick the plan: see `DRIVING_SET_MAX`. The rows and their order never
    depend on that choice.

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
    if query.derived_from is not None and not 0 <= query.derived_from <= _MAX_SQL_INT:
        raise InvalidSearchQueryError(
            f"derived_from must be a model id between 0 and {_MAX_SQL_INT}."
        )
    column, descending = _sort_key(query.sort)
    creator = _address(query.creator) if query.creator else None
    conditions: list[ColumnElement[bool]] = [s.Model.searchable.is_(True)]
    if query.exclude:
        conditions.append(s.Model.model_id.not_in(query.exclude))
    filters: list[_Filter] = []
    words = _WORD.findall(query.text or "")[:MAX_WORDS]
    if any(len(w) > MAX_WORD_LENGTH for w in words):
        raise InvalidSearchQueryError(
            f"A search word is longer than {MAX_WORD_LENGTH} letters: search for a shorter "
            "part of it."
        )
    if words:
        filters.append(
            _fts_filter(conn, [w.lower() for w in words], query.limit, query.task or None)
        )
    if query.task and not (words and conn.dialect.name == "sqlite"):
        # (On SQLite the full-text filter holds the task: `task_term`.)
        filters.append(_column_filter(s.Model.task, lambda c: c == query.task))
    if query.license:
        filters.append(_column_filter(s.Model.license, lambda c: c == query.license))
    if query.tag:
        filters.append(_membership_filter(s.ModelTag.model_id, s.ModelTag.tag == query.tag))
    # Filters on the sort's own column: indexable, since walking that index serves them.
    on_sort_column: list[_Filter] = []
    prices: list[Callable[[Any], ColumnElement[bool]]] = []
    if query.min_price is not None:
        prices.append(lambda c: c >= query.min_price)
    if query.max_price is not None:
        prices.append(lambda c: c <= query.max_price)
    if query.free_only:
        prices.append(lambda c: c == 0)
        conditions.append(s.Model.for_sale.is_(True))
    if prices:
        price = _column_filter(s.Model.price, lambda c: and_(*(p(c) for p in prices)))
        if column is s.Model.price:
            on_sort_column.append(price)
        else:
            filters.append(price)
    if query.for_sale_only:
        conditions.append(s.Model.for_sale.is_(True))
    if query.min_rating is not None:
        # An integer bound: against a float, PostgreSQL casts the column to numeric and
        # no index on it serves the filter (165 ms to find 3,000 of 1,000,000 models).
        least = math.ceil(query.min_rating * 1000)
        conditions.append(s.Model.rating_count > 0)
        rating = _column_filter(s.Model.rating_milli, lambda c: c >= least)
        if column is s.Model.rating_milli:
            on_sort_column.append(rating)
        else:
            filters.append(rating)
    if creator:
        filters.append(_column_filter(s.Model.creator, lambda c: c == creator))
    if query.derived_from is not None:
        parent = s.Lineage.parent_id == query.derived_from
        filters.append(_membership_filter(s.Lineage.model_id, parent))
    filters, chosen, fence = _choose(conn, filters, query.sort)
    cursor = _decode_cursor(query.cursor, query.sort) if query.cursor else None
    sqlite = conn.dialect.name == "sqlite"
    if query.derived_from is not None and (
        all(c is f.check for c, f in zip(chosen[:-1], filters[:-1], strict=True))
        if sqlite
        else len(filters) == 1
    ):
        # Every filter but the parent selects many models (SQLite), or there is no
        # other (PostgreSQL, whose planner weighs the others itself): the parent's
        # children are read in the sort's order off an index of their own and checked
        # against the rest, so the walk stops when the page is full, however many
        # children the parent has. (A small other filter drives instead, below.)
        others = chosen[:-1]
        if words:
            others = [*others[1:], others[0]]  # the full text last, as below
        on_sort = [f.check if sqlite or f.fenced is None else f.fenced for f in on_sort_column]
        return _children_in_order(
            query, query.derived_from, [*conditions, *on_sort, *others], cursor
        )
    conditions += [f.fenced if fence and f.fenced is not None else f.drive for f in on_sort_column]
    fts = filters[0].fts if words else None
    if (
        fts is not None
        and query.sort is Sort.NEWEST
        and all(c is f.check for c, f in zip(chosen, filters, strict=True))
    ):
        # Every filter selects many models, the full text among them. FTS5 keeps its
        # matches in id order, the newest order: walk them newest first and stop when
        # the page is full, instead of collecting every match of a short prefix.
        return _newest_from_fts(
            query,
            fts,
            [
                *conditions,
                *chosen[1:],  # the full-text filter is the first
            ],
            cursor,
        )
    if words:
        # Checked row by row, the full text costs a seek in FTS5 per term where the
        # other checks cost one in a B-tree: it goes last, so the rows they reject
        # never reach it (SQLite checks a row's subqueries in the order written).
        chosen = [*chosen[1:], chosen[0]]
    conditions += chosen
    keys: tuple[Any, Any] = (column, s.Model.model_id)
    if fence:
        keys = (_fenced(column), _fenced(s.Model.model_id))
    if cursor:
        value, last_id = cursor
        # Fenced too: a later page's bound must not lead back to the sort's index.
        key = tuple_(*keys)
        # Typed literals, so a price is compared as the padded string it is stored as.
        bound = tuple_(literal(value, column.type), literal(last_id, s.Model.model_id.type))
        conditions.append(key < bound if descending else key > bound)
    order = (keys[0].desc(), keys[1].desc()) if descending else keys
    return select(s.Model).where(and_(*conditions)).order_by(*order).limit(query.limit + 1)


# A parent's children with their sort keys, copied from `models` by triggers
# (migrations 0007 and 0011), with an index per sort that starts with the parent.
_CHILDREN = table(
    "lineage_sort_keys",
    sql_column("parent_id", BigInteger),
    sql_column("model_id", BigInteger),
    sql_column("rating_milli", Integer),
    sql_column("purchases", Integer),
    sql_column("price", s.Uint()),
)
# Each sort's key there; the newest order's key is the child's id itself.
_CHILD_SORT_KEYS = {
    Sort.NEWEST: _CHILDREN.c.model_id,
    Sort.BEST_RATED: _CHILDREN.c.rating_milli,
    Sort.MOST_BOUGHT: _CHILDREN.c.purchases,
    Sort.PRICE_LOW: _CHILDREN.c.price,
    Sort.PRICE_HIGH: _CHILDREN.c.price,
}


def _children_in_order(
    query: SearchQuery,
    parent: int,
    conditions: list[ColumnElement[bool]],
    cursor: tuple[Any, int] | None,
) -> Select[Any]:
    """A page of `parent`'s children matching `conditions`, read in the sort's order
    off `lineage_sort_keys`.

    Reading every child's row and sorting them all costs a scattered page read per
    child (20-50 ms for 2,000 children of a million models); the index yields them in
    order, so about a page of children is read. The keys are copies of the child's row
    (triggers keep them equal), so the rows and their order are the ones sorting the
    `models` rows gives; a child has one row per parent, so none repeats.
    """
    key = _CHILD_SORT_KEYS[query.sort]
    _, descending = _sort_key(query.sort)
    child = _CHILDREN.c.model_id
    where = [_CHILDREN.c.parent_id == parent, *conditions]
    keys: tuple[Any, ...] = (child,) if key is child else (key, child)
    if cursor:
        value, last_id = cursor
        if key is child:
            where.append(child < last_id if descending else child > last_id)
        else:
            bound = tuple_(literal(value, key.type), literal(last_id, child.type))
            where.append(tuple_(key, child) < bound if descending else tuple_(key, child) > bound)
    order = [k.desc() for k in keys] if descending else list(keys)
    return (
        select(s.Model)
        .select_from(_CHILDREN)
        .join(s.Model, s.Model.model_id == child)
        .where(and_(*where))
        .order_by(*order)
        .limit(query.limit + 1)
    )


def _newest_from_fts(
    query: SearchQuery,
    fts: str,
    conditions: list[ColumnElement[bool]],
    cursor: tuple[Any, int] | None,
) -> Select[Any]:
    """A page of the newest models matching `fts` and `conditions`, read off FTS5 (SQLite).

    FTS5 serves `MATCH` with `ORDER BY rowid DESC` and a rowid bound itself, lazily, so
    the walk stops at the page's last row; each row it yields is then checked against
    the other conditions through the models' primary key.
    """
    index = table("models_fts", sql_column("rowid", BigInteger))
    conditions = [*conditions, literal_column("models_fts").op("MATCH")(fts)]
    if cursor:
        conditions.append(index.c.rowid < cursor[1])  # the newest order's key is the id
    return (
        select(s.Model)
        .select_from(index)
        .join(s.Model, s.Model.model_id == index.c.rowid)
        .where(and_(*conditions))
        .order_by(index.c.rowid.desc())
        .limit(query.limit + 1)
    )


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
