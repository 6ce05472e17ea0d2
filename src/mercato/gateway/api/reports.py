# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/models/{id}/reports`: the reports filed on-chain on a model, counted and listed.

Readable even when this node denies the model: why it was reported is public anyway.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from mercato.gateway.api.schemas import ErrorOut
from mercato.gateway.dependencies import ModelId, State
from mercato.index.reports import REASONS, list_reports, report_counts

router = APIRouter(prefix="/v1/models", tags=["reports"], responses={422: {"model": ErrorOut}})


class ReportOut(BaseModel):
    reporter: str
    reason_code: int
    reason: str
    evidence_cid_digest: str
    license_holder: bool
    block_number: int


class ReportsOut(BaseModel):
    model_id: int
    reporters: int
    license_holders: int
    by_reason: dict[str, int]
    items: list[ReportOut]


@router.get("/{model_id}/reports", response_model=ReportsOut)
def model_reports(
    model_id: ModelId,
    state: State,
    reason: Annotated[int | None, Query(ge=1, le=max(REASONS))] = None,
    license_holders: bool = False,
) -> ReportsOut:
    """Counts of distinct reporters (all, and license holders) and the newest reports.

    `reason` keeps one reason code (1 illegal content, 2 malware, 3 license violation,
    4 personal data, 5 other); `license_holders=true` keeps reports by accounts that
    held a license when they reported.
    """
    counts = report_counts(state.index, model_id)
    items = list_reports(
        state.index, model_id, reason_code=reason, license_holders_only=license_holders
    )
    return ReportsOut(
        model_id=model_id,
        reporters=counts.reporters,
        license_holders=counts.license_holders,
        by_reason=counts.by_reason,
        items=[
            ReportOut(
                reporter=r.reporter,
                reason_code=r.reason_code,
                reason=r.reason,
                evidence_cid_digest=r.evidence_cid_digest,
                license_holder=r.license_holder,
                block_number=r.block_number,
            )
            for r in items
        ],
    )
