# SPDX-License-Identifier: AGPL-3.0-only
"""Reports on models: anyone files one, marked with whether they hold a license."""

from __future__ import annotations

from typing import Any

import boa
import pytest

from mercato.chain.artifacts import load_artifact
from mercato.chain.boa_backend import BoaBackend
from mercato.chain.contracts import ReportReason
from tests.unit.contracts.chain import WRAPPED_KEY, Mercato, only_event, reverts

EVIDENCE = b"\x33" * 32


@pytest.fixture
def reports(chain: Mercato) -> Any:
    assert chain.deployment.reports is not None
    return BoaBackend.at(load_artifact("reports"), chain.deployment.reports)


def test_report_succeeds(reports: Any, listed: int, stranger: str) -> None:
    with boa.env.prank(stranger):
        reports.report(listed, ReportReason.MALWARE, EVIDENCE)
    event = only_event(reports, "Reported")
    assert (event.model_id, event.reporter, event.reason_code) == (listed, stranger, 2)
    assert (event.evidence_cid_digest, event.license_holder) == (EVIDENCE, False)


def test_report_by_license_holder_is_marked(
    reports: Any, marketplace: Any, pending: int, alice: str, bob: str
) -> None:
    with boa.env.prank(bob):
        reports.report(pending, ReportReason.LICENSE_VIOLATION, EVIDENCE)
    assert only_event(reports, "Reported").license_holder is False  # still pending
    with boa.env.prank(alice):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    with boa.env.prank(bob):
        reports.report(pending, ReportReason.OTHER, bytes(32))
    event = only_event(reports, "Reported")
    assert (event.license_holder, event.reason_code) == (True, 5)


@pytest.mark.parametrize("code", [0, 6, 2**256 - 1])
def test_report_unknown_reason_code(reports: Any, listed: int, bob: str, code: int) -> None:
    with boa.env.prank(bob), reverts("reports: unknown reason code"):
        reports.report(listed, code, EVIDENCE)


def test_report_model_does_not_exist(reports: Any, listed: int, bob: str) -> None:
    with boa.env.prank(bob), reverts("reports: model does not exist"):
        reports.report(listed + 1, ReportReason.OTHER, EVIDENCE)


def test_reason_codes_match_the_contract(reports: Any) -> None:
    assert reports.REASON_ILLEGAL_CONTENT() == ReportReason.ILLEGAL_CONTENT
    assert reports.REASON_MALWARE() == ReportReason.MALWARE
    assert reports.REASON_LICENSE_VIOLATION() == ReportReason.LICENSE_VIOLATION
    assert reports.REASON_PERSONAL_DATA() == ReportReason.PERSONAL_DATA
    assert reports.REASON_OTHER() == ReportReason.OTHER
