# SPDX-License-Identifier: AGPL-3.0-only
"""A task's privacy budget (epsilon, delta) in the index, `GET /v1/tasks/{id}` and the
task page: computed from the spec document by Flower's accountant as rounds are
committed, the same numbers the coordinator states in each committed round record.

Events go through the real projector into a real SQLite index (the chain side of the
round record is in `tests/integration/federation/test_initial_model.py`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from mercato.federation.privacy import budget_record, epsilon_after, settings_of, task_epsilon
from mercato.federation.spec import InputSchema, TaskSpec
from mercato.gateway.api import federation as task_api
from mercato.gateway.errors import install_error_handlers
from mercato.gateway.sessions import SessionSigner
from mercato.gateway.task_pages import create_task_pages
from mercato.index import DictMetadataSource, Index
from mercato.index import schema as s
from mercato.index.db import create_index_engine, downgrade, migrate
from mercato.index.federation import privacy_columns
from mercato.index.tasks import privacy_budget
from tests.unit.index.test_federation_tasks import Chain, PageState, digest


def _spec(name: str, **fields: Any) -> TaskSpec:
    return TaskSpec(
        name=name,
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        rounds=3,
        min_participants=3,
        max_participants=4,
        **fields,
    )


PRIVATE = _spec("private-digits", privacy="private", privacy_settings={"noise_multiplier": 1.5})
LOCAL = _spec("local-dp-digits", privacy_settings={"local_dp": True, "local_epsilon": 2.0})
PLAIN = _spec("plain-digits")


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}")


@pytest.fixture
def chain(index: Index) -> Chain:
    return Chain(index, DictMetadataSource())


@pytest.fixture
def client(index: Index) -> TestClient:
    app = FastAPI()
    state = PageState(index, SessionSigner(b"k" * 32))
    app.state.gateway = state
    install_error_handlers(app)
    app.include_router(task_api.router)
    app.include_router(create_task_pages(state))  # type: ignore[arg-type]
    return TestClient(app)


def _post(chain: Chain, task_id: int, spec: TaskSpec) -> None:
    key = f"spec {task_id}"
    chain.metadata.add_task_spec(digest(key), json.loads(spec.to_json_bytes()))
    chain.create(task_id, key)
    chain.block()


def _commit(chain: Chain, task_id: int, round_number: int) -> None:
    chain.emit(
        "federation",
        "RoundCommitted",
        task_id=task_id,
        round=round_number,
        model_digest=digest(f"model {task_id} {round_number}"),
        round_digest=digest(f"round {task_id} {round_number}"),
        contributors=0b111,
        metric=800_000,
    )
    chain.block()


def test_epsilon_grows_with_each_committed_round_as_the_accountant_says(
    chain: Chain, index: Index, client: TestClient
) -> None:
    _post(chain, 1, PRIVATE)
    before = index.task(1).privacy
    assert before is not None and (before.epsilon, before.rounds) == (0.0, 0)
    assert before.planned_epsilon == pytest.approx(task_epsilon(PRIVATE, 3))
    assert before.delta == settings_of(PRIVATE).delta
    spent = []
    for r in (1, 2):
        _commit(chain, 1, r)
        budget = index.task(1).privacy
        assert budget is not None and budget.rounds == r
        # The figure a coordinator's round record states for this round, recomputed.
        record = budget_record(PRIVATE, r)
        assert record is not None and budget.epsilon == pytest.approx(record["epsilon"])
        spent.append(budget.epsilon)
    assert 0 < spent[0] < spent[1] < before.planned_epsilon

    detail = client.get("/v1/tasks/1").json()
    assert detail["privacy"] == {
        "epsilon": pytest.approx(spent[1]),
        "delta": settings_of(PRIVATE).delta,
        "rounds": 2,
        "planned_epsilon": pytest.approx(before.planned_epsilon),
        "planned_rounds": 3,
    }
    page = client.get("/tasks/1").text
    assert f'<span id="epsilon">{spent[1]:.3g}</span> after 2 rounds' in page
    assert '<span id="delta">1e-05</span>' in page


def test_local_dp_in_scored_mode_has_a_budget_and_a_plain_task_says_it_has_none(
    chain: Chain, index: Index, client: TestClient
) -> None:
    _post(chain, 1, LOCAL)
    _post(chain, 2, PLAIN)
    _commit(chain, 1, 1)
    local = index.task(1).privacy
    assert local is not None
    assert local.epsilon == pytest.approx(epsilon_after(settings_of(LOCAL), 1))
    assert index.task(2).privacy is None
    assert client.get("/v1/tasks/2").json()["privacy"] is None
    page = client.get("/tasks/2").text
    assert 'id="privacy-budget"' in page and "no (ε, δ) guarantee" in page


def test_a_spec_someone_broke_gets_no_budget_rather_than_an_error() -> None:
    broken = json.loads(PRIVATE.to_json_bytes())
    broken["privacy_settings"]["noise_multiplier"] = "lots"
    assert privacy_columns(json.dumps(broken)) == {"dp_delta": None, "dp_epsilons": None}
    assert privacy_columns("[1, 2]")["dp_epsilons"] is None
    assert privacy_budget(None, None, 3) is None
    # More rounds committed than the spec plans (a coordinator past its spec): the
    # budget counts the spec's rounds only, and says so.
    columns = privacy_columns(PRIVATE.to_json_bytes().decode())
    over = privacy_budget(columns["dp_delta"], columns["dp_epsilons"], 9)
    assert over is not None and over.rounds == 3 and over.epsilon == over.planned_epsilon


def test_the_migration_fills_in_specs_cached_before_it(tmp_path: Path) -> None:
    engine = create_index_engine(f"sqlite:///{tmp_path / 'old.sqlite'}")
    migrate(engine, "0007")
    with engine.begin() as conn:
        for name, spec in (("private", PRIVATE), ("plain", PLAIN)):
            conn.execute(
                text(
                    "INSERT INTO fl_specs (digest, valid, name, description, document) "
                    "VALUES (:d, 1, :n, '', :doc)"
                ),
                {
                    "d": hashlib.sha256(name.encode()).hexdigest(),
                    "n": name,
                    "doc": spec.to_json_bytes().decode(),
                },
            )
    migrate(engine, "0008")
    with engine.begin() as conn:
        rows = dict(conn.execute(select(s.FlSpec.name, s.FlSpec.dp_epsilons)).all())
    assert rows["plain"] is None
    epsilons = json.loads(rows["private"])
    assert epsilons == pytest.approx([task_epsilon(PRIVATE, r) for r in (1, 2, 3)])
    downgrade(engine, "0007")
    with engine.begin() as conn:
        columns = [c[1] for c in conn.execute(text("PRAGMA table_info(fl_specs)"))]
    assert "dp_epsilons" not in columns and "document" in columns
