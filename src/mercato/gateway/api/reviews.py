# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/models/{id}/reviews`: each license holder's current review."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.gateway.api.schemas import ReviewOut
from mercato.gateway.dependencies import ModelId, State

router = APIRouter(prefix="/v1/models", tags=["reviews"])


@router.get("/{model_id}/reviews", response_model=list[ReviewOut])
def list_reviews(model_id: ModelId, state: State) -> list[ReviewOut]:
    """Reviews (1-5 stars) by verified buyers, newest first."""
    return [ReviewOut.of(r) for r in state.index.reviews(model_id)]
