# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/models`: search and model detail, answered from the index."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from mercato.gateway.api.schemas import ErrorOut, ModelDetailOut, ModelOut, SearchOut
from mercato.gateway.dependencies import MAX_ID, ModelId, State
from mercato.gateway.moderation import denied_by, hidden_count
from mercato.index import SearchQuery, Sort

router = APIRouter(prefix="/v1/models", tags=["models"], responses={422: {"model": ErrorOut}})


def search_query(
    q: str | None = None,
    task: str | None = None,
    license: str | None = None,
    tag: str | None = None,
    min_price: int | None = None,
    max_price: int | None = None,
    free: bool = False,
    min_rating: float | None = None,
    creator: str | None = None,
    derived_from: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    sort: Sort = Sort.NEWEST,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> SearchQuery:
    """The index query the search parameters describe (shared with the web pages)."""
    return SearchQuery(
        text=q or None,
        task=task or None,
        license=license or None,
        tag=tag or None,
        min_price=min_price,
        max_price=max_price,
        free_only=free,
        min_rating=min_rating,
        creator=creator or None,
        derived_from=derived_from,
        sort=sort,
        limit=limit,
        cursor=cursor or None,
    )


@router.get("", response_model=SearchOut)
def search_models(state: State, query: Annotated[SearchQuery, Depends(search_query)]) -> SearchOut:
    """Searches models: full text (`q`), filters, sort and a page cursor.

    Prices are in token base units; `free` keeps models listed at price 0.
    """
    denied = denied_by(state.moderation)
    page = state.index.search(replace(query, exclude=denied))
    return SearchOut(
        items=[ModelOut.of(m) for m in page.items],
        next_cursor=page.next_cursor,
        hidden=hidden_count(state.index, query, denied),
    )


@router.get("/{model_id}", response_model=ModelDetailOut, responses={404: {"model": ErrorOut}})
def model_detail(model_id: ModelId, state: State) -> ModelDetailOut:
    """One model: listing, card, input/output signature, versions and the fee."""
    fee = state.fees.fee_bps()
    detail: ModelDetailOut = state.cached(
        model_id, lambda: ModelDetailOut.of_detail(state.index.model(model_id), fee)
    )
    if detail.protocol_fee_bps != fee:  # the fee changed on-chain, the index did not
        detail = detail.model_copy(update={"protocol_fee_bps": fee})
    return detail
