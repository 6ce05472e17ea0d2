# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/models/{id}/lineage`: parents with royalty shares, and children."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.gateway.api.schemas import ErrorOut, LineageOut
from mercato.gateway.dependencies import ModelId, State

router = APIRouter(prefix="/v1/models", tags=["lineage"], responses={404: {"model": ErrorOut}})


@router.get("/{model_id}/lineage", response_model=LineageOut)
def get_lineage(model_id: ModelId, state: State) -> LineageOut:
    """The models this one was built on (royalty in basis points) and those built on it."""
    return LineageOut.of(state.index.lineage(model_id))
