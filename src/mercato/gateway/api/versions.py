# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/models/{id}/versions`: what each version commits to on-chain."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.errors import VersionNotFoundError
from mercato.gateway.api.schemas import ErrorOut, VersionOut
from mercato.gateway.dependencies import ModelId, State, VersionNumber

router = APIRouter(prefix="/v1/models", tags=["versions"], responses={404: {"model": ErrorOut}})


@router.get("/{model_id}/versions", response_model=list[VersionOut])
def list_versions(model_id: ModelId, state: State) -> list[VersionOut]:
    """Every version of a model, oldest first, with its CIDs and plaintext sha256."""
    return [VersionOut.of(v) for v in state.index.model(model_id).versions]


@router.get("/{model_id}/versions/{version}", response_model=VersionOut)
def get_version(model_id: ModelId, version: VersionNumber, state: State) -> VersionOut:
    """One version of a model."""
    versions = state.index.model(model_id).versions
    for candidate in versions:
        if candidate.version == version:
            return VersionOut.of(candidate)
    raise VersionNotFoundError(model_id, version, len(versions))
