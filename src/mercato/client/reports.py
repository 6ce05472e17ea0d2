# SPDX-License-Identifier: AGPL-3.0-only
"""Filing a report on a model: one transaction to the reports contract.

A report changes nothing by itself: each node's operator decides what reports mean to
their node (`moderation_report_threshold`), and the chain keeps every report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiformats import CID

from mercato.chain.contracts import ReportReason
from mercato.client.artifacts import cid_digest
from mercato.errors import InvalidCIDError, ModelNotFoundError, ModerationError

if TYPE_CHECKING:
    from mercato.client.market import Market


def file_report(
    market: Market, model_id: int, reason: ReportReason, evidence: CID | None = None
) -> str:
    """Reports a model on-chain, as the market's account.

    Args:
        market: A market with a signing account.
        model_id: The model.
        reason: Why (illegal content, malware, license violation, personal data, other).
        evidence: The CID of the evidence (sha2-256), if any; only its digest goes on-chain.

    Returns:
        The transaction hash.

    Raises:
        NoAccountError: The market is read-only.
        NoGasError: The account holds no native currency to pay for the transaction.
        ModelNotFoundError: No model has this id.
        ModerationError: This deployment has no reports contract (recorded before it
            existed).
        InvalidCIDError: The evidence CID is not a sha2-256 CID.
    """
    reports = market.contracts.reports
    if reports is None:
        raise ModerationError(
            "This deployment has no reports contract (it was recorded before reports "
            "existed); reports can be filed on deployments made since."
        )
    market.require_account("report a model")
    if market.contracts.registry.version_count(model_id) == 0:
        raise ModelNotFoundError(model_id)
    if evidence is not None and evidence.hashfun.name != "sha2-256":
        raise InvalidCIDError(
            f"The evidence CID {evidence} is not a sha2-256 CID; add the evidence with "
            "'ipfs add' (or 'mercato cid') and give the CID it prints.",
            value=str(evidence),
        )
    digest = cid_digest(evidence) if evidence is not None else bytes(32)
    market.require_signer("report a model")
    receipt = reports.report(model_id, reason, digest)
    return "0x" + bytes(receipt["transactionHash"]).hex()
