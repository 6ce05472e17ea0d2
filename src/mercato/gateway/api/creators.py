# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/creators/{address}`: an account as a creator."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.gateway.api.schemas import CreatorOut, ErrorOut
from mercato.gateway.dependencies import State

router = APIRouter(prefix="/v1/creators", tags=["creators"], responses={422: {"model": ErrorOut}})


@router.get("/{address}", response_model=CreatorOut)
def get_creator(address: str, state: State) -> CreatorOut:
    """How many models the account created and owns, its provider URL and agent."""
    return CreatorOut.of(state.index.creator(address))
