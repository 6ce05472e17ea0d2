# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/models/{id}/evaluations`: attested scores, each shown with its author."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.gateway.api.schemas import EvaluationOut
from mercato.gateway.dependencies import ModelId, State

router = APIRouter(prefix="/v1/models", tags=["evaluations"])


@router.get("/{model_id}/evaluations", response_model=list[EvaluationOut])
def list_evaluations(model_id: ModelId, state: State) -> list[EvaluationOut]:
    """Every evaluation attested for the model, in chain order."""
    return [EvaluationOut.of(e) for e in state.index.evaluations(model_id)]
