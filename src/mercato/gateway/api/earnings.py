# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/creators/{address}/earnings`: sales, royalties and fees credited, and withdrawals."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.gateway.api.schemas import CreditOut, EarningsOut, ErrorOut
from mercato.gateway.dependencies import State

router = APIRouter(prefix="/v1/creators", tags=["earnings"], responses={422: {"model": ErrorOut}})


@router.get("/{address}/earnings", response_model=EarningsOut)
def get_earnings(address: str, state: State) -> EarningsOut:
    """Every credit (sale, royalty, fee) to the account, in chain order, and the totals."""
    earned = state.index.earnings(address)
    return EarningsOut(
        account=earned.account,
        credited=str(earned.credited),
        withdrawn=str(earned.withdrawn),
        balance=str(earned.balance),
        credits=[
            CreditOut(
                model_id=c.model_id,
                buyer=c.buyer,
                role=c.role,
                amount=str(c.amount),
                block_number=c.block_number,
            )
            for c in earned.credits
        ],
    )
