# SPDX-License-Identifier: AGPL-3.0-only
"""A data owner deciding to join sees how a task pays and what its model survives: the
task page (a real SQLite index projecting the task's events, the real page router)
shows scored or not, the aggregation and the hostile updates it keeps out, the
valuation, the Sybil threshold and the validation set's CID. `mercato fl show` prints
the same lines (tests/integration/federation/test_scoring_shown_cli.py)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mercato.federation.spec import (
    InputSchema,
    TaskSpec,
    raw_cid_for,
    scoring_in_effect,
    scoring_terms,
)
from mercato.gateway.errors import install_error_handlers
from mercato.gateway.sessions import SessionSigner
from mercato.gateway.task_pages import create_task_pages
from mercato.index import DictMetadataSource, Index
from tests.unit.index.test_federation_tasks import Chain, PageState, digest

VALIDATION = str(raw_cid_for(b"validation rows"))


def _spec(**fields: Any) -> TaskSpec:
    return TaskSpec(
        name="digits",
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        **{"min_participants": 4, "max_participants": 6, **fields},
    )


@pytest.fixture
def site(tmp_path: Path) -> tuple[Chain, TestClient]:
    index = Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}")
    chain = Chain(index, DictMetadataSource())
    app = FastAPI()
    state = PageState(index, SessionSigner(b"k" * 32))
    app.state.gateway = state
    install_error_handlers(app)
    app.include_router(create_task_pages(state))  # type: ignore[arg-type]
    return chain, TestClient(app)


def _page(site: tuple[Chain, TestClient], task_id: int, document: dict[str, Any]) -> str:
    chain, client = site
    key = f"spec {task_id}"
    chain.metadata.add_task_spec(digest(key), document)
    chain.create(task_id, key)
    chain.block()
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200
    return html.unescape(response.text)


def test_the_task_page_shows_a_scored_tasks_settings(site: tuple[Chain, TestClient]) -> None:
    spec = _spec(scoring={"validation_cid": VALIDATION})
    page = _page(site, 1, json.loads(spec.to_json_bytes()))
    assert "<dt>Scoring</dt><dd>scored: paid by measured contribution" in page
    assert (
        "trimmed mean, 0.25 of the replies cut from each end (rounded up): keeps out 1 "
        "hostile update(s) when 4 seats reply, 2 when 6 do" in page
    )
    assert "<dt>Valuation</dt><dd>auto: exact Shapley while 2^players fits in 256" in page
    assert "(at 6 seats: exact)" in page
    assert "<dt>Sybil threshold</dt><dd>0.98 mean cosine" in page
    assert f"<dt>Validation set</dt><dd>{VALIDATION} (revealed once the task ends)" in page


def test_the_page_warns_of_leave_one_out_and_fedavg_and_says_unscored(
    site: tuple[Chain, TestClient],
) -> None:
    cheap = _spec(
        scoring={"validation_cid": VALIDATION, "valuation": "loo", "aggregation": "fedavg"}
    )
    page = _page(site, 1, json.loads(cheap.to_json_bytes()))
    assert "leave-one-out: cheap, but an honest owner whose data others also hold" in page
    assert "FedAvg: not robust" in page
    page = _page(site, 2, json.loads(_spec().to_json_bytes()))
    assert "<dt>Scoring</dt><dd>unscored (no validation set)" in page
    assert "<dt>Valuation</dt>" not in page


def test_scoring_terms_of_odd_specs() -> None:
    assert scoring_terms(None) == []
    broken = json.loads(_spec(scoring={"validation_cid": VALIDATION}).to_json_bytes())
    broken["scoring"]["trim_fraction"] = 0.7
    [(label, text)] = scoring_terms(broken)
    assert label == "Scoring" and text.startswith("unreadable: scoring.trim_fraction")
    private = _spec(privacy="private", privacy_settings={"noise_multiplier": 1.0})
    [(_, text)] = scoring_terms(json.loads(private.to_json_bytes()))
    assert text.startswith("none (private task")
    big = _spec(
        max_participants=20, scoring={"validation_cid": VALIDATION, "aggregation": "median"}
    )
    terms = dict(scoring_terms(json.loads(big.to_json_bytes())))
    assert (
        "median: keeps out 1 hostile update(s) when 4 seats reply, 9 when 20 do"
        in terms["Aggregation"]
    )
    assert terms["Valuation"].endswith("(at 20 seats: tmc-shapley)")


def test_scoring_in_effect_fills_in_the_defaults_for_json_answers() -> None:
    written = _spec(scoring={"validation_cid": VALIDATION, "valuation": "loo"})
    effect = scoring_in_effect(json.loads(written.to_json_bytes()))
    assert effect == {
        "aggregation": "trimmed_mean",
        "trim_fraction": 0.25,
        "krum_malicious": 1,
        "valuation": "loo",
        "evaluations_per_round": 256,
        "sybil_threshold": 0.98,
        "validation_cid": VALIDATION,
    }
    broken = json.loads(written.to_json_bytes())
    broken["scoring"]["trim_fraction"] = 0.7
    private = _spec(privacy="private", privacy_settings={"noise_multiplier": 1.0})
    for odd in (
        None,
        {},
        broken,
        json.loads(_spec().to_json_bytes()),
        json.loads(private.to_json_bytes()),
    ):
        assert scoring_in_effect(odd) is None
