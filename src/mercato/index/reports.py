# SPDX-License-Identifier: AGPL-3.0-only
"""Reading the reports filed on models (the reports contract's `Reported` events).

Reports cost only gas, so raw counts mean little: every count here is of distinct
reporting accounts, and of those that held a license of the model when they reported
(a license costs the model's price), which is what a node's auto-deny threshold uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import distinct, func, select

from mercato.index import schema as s
from mercato.index.store import Index

# Reason codes, as the reports contract numbers them.
REASONS = {
    1: "illegal content",
    2: "malware",
    3: "license violation",
    4: "personal data",
    5: "other",
}
MAX_LISTED = 500  # reports one answer lists at most; counts cover all of them


@dataclass(frozen=True)
class ReportInfo:
    reporter: str
    reason_code: int
    evidence_cid_digest: str  # hex sha256 digest inside the evidence CID (zeros: none)
    license_holder: bool
    block_number: int

    @property
    def reason(self) -> str:
        return REASONS.get(self.reason_code, "unknown")


@dataclass(frozen=True)
class ReportCounts:
    """How many distinct accounts reported a model, in all and by reason."""

    model_id: int
    reporters: int
    license_holders: int  # reporters who held a license when they reported
    by_reason: dict[str, int]


def report_counts(index: Index, model_id: int) -> ReportCounts:
    """Counts a model's reports by distinct reporter.

    Args:
        index: The index to read.
        model_id: The model.

    Returns:
        The counts (all zero for a model nobody reported).
    """
    r = s.Report
    with index.engine.connect() as conn:
        total = conn.execute(
            select(func.count(distinct(r.reporter))).where(r.model_id == model_id)
        ).scalar_one()
        holders = conn.execute(
            select(func.count(distinct(r.reporter))).where(
                r.model_id == model_id, r.license_holder.is_(True)
            )
        ).scalar_one()
        rows = conn.execute(
            select(r.reason_code, func.count(distinct(r.reporter)))
            .where(r.model_id == model_id)
            .group_by(r.reason_code)
        ).all()
    by_reason = {REASONS.get(code, "unknown"): int(count) for code, count in rows}
    return ReportCounts(model_id, int(total), int(holders), by_reason)


def list_reports(
    index: Index,
    model_id: int,
    *,
    reason_code: int | None = None,
    license_holders_only: bool = False,
) -> list[ReportInfo]:
    """A model's reports, newest first, at most `MAX_LISTED`.

    Args:
        index: The index to read.
        model_id: The model.
        reason_code: Only reports with this reason code.
        license_holders_only: Only reports whose author held a license.

    Returns:
        The reports.
    """
    r = s.Report
    query = select(r).where(r.model_id == model_id)
    if reason_code is not None:
        query = query.where(r.reason_code == reason_code)
    if license_holders_only:
        query = query.where(r.license_holder.is_(True))
    query = query.order_by(r.block_number.desc(), r.log_index.desc()).limit(MAX_LISTED)
    with index.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        ReportInfo(
            row.reporter,
            row.reason_code,
            row.evidence_cid_digest,
            row.license_holder,
            row.block_number,
        )
        for row in rows
    ]


def license_holder_reports(index: Index, threshold: int) -> dict[int, int]:
    """Models reported by at least `threshold` distinct license holders.

    Args:
        index: The index to read.
        threshold: The least number of distinct reporting license holders (>= 1).

    Returns:
        model id -> number of distinct reporting license holders.
    """
    r = s.Report
    holders = func.count(distinct(r.reporter))
    with index.engine.connect() as conn:
        rows = conn.execute(
            select(r.model_id, holders)
            .where(r.license_holder.is_(True))
            .group_by(r.model_id)
            .having(holders >= max(threshold, 1))
        ).all()
    return {int(model_id): int(count) for model_id, count in rows}
