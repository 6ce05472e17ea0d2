# SPDX-License-Identifier: AGPL-3.0-only
"""Federated tasks in the index, its API and its pages, on a real SQLite index.

Events are fed to the real projector as the decoder would produce them (the projection
and rollback on a real Anvil with the federation contract are in
`tests/integration/index/test_federation_index.py`); the API and the pages are served
by real FastAPI apps over that index.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from mercato.errors import IndexedTaskNotFoundError, InvalidSearchQueryError
from mercato.gateway.api import federation as task_api
from mercato.gateway.errors import install_error_handlers
from mercato.gateway.sessions import SessionSigner
from mercato.gateway.task_pages import create_task_pages
from mercato.index import DictMetadataSource, Index
from mercato.index import schema as s
from mercato.index.decode import DecodedEvent
from mercato.index.federation import MAX_SPEC_JSON, apply_arrived_specs
from mercato.index.projector import Projector
from mercato.index.state import rollback_above
from mercato.index.tasks import TaskQuery, TaskStatus, seats
from mercato.storage.blockstore import Blockstore

TOKEN = 10**18
REQUESTER = "0x" + "11" * 20
COORDINATOR = "0x" + "22" * 20
SPLITTER = "0x" + "99" * 20
OWNERS = ["0x" + f"{i:02x}" * 20 for i in (0xA1, 0xA2, 0xA3, 0xA4)]
HOSTILE_NAME = '<script>alert("x")</script> digits'


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def spec(name: str, description: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "metric": "accuracy", "rounds": 3} | extra


class Chain:
    """Feeds events to the projector, one block per `block()` call."""

    def __init__(self, index: Index, metadata: DictMetadataSource) -> None:
        self.index, self.metadata = index, metadata
        self.number = 10
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def emit(self, contract: str, name: str, **args: Any) -> None:
        self.events.append((contract, name, args))

    def block(self) -> int:
        self.number += 1
        with self.index.engine.begin() as conn:
            projector = Projector(conn, self.metadata)
            for i, (contract, name, args) in enumerate(self.events):
                projector.apply(
                    DecodedEvent(
                        contract, name, args, self.number, "0x" + "ab" * 32, i, "0x" + "cd" * 32
                    )
                )
            projector.finish()
            conn.execute(
                insert(s.BlockTime),
                [{"number": self.number, "timestamp": 1_700_000_000 + self.number}],
            )
        self.events = []
        return self.number

    def create(self, task_id: int, spec_text: str, *, reward: int = 100, max_p: int = 4) -> None:
        self.emit(
            "federation",
            "TaskCreated",
            task_id=task_id,
            requester=REQUESTER,
            coordinator=COORDINATOR,
            spec_digest=digest(spec_text),
            reward=reward * TOKEN,
            stake=5 * TOKEN,
            min_participants=2,
            max_participants=max_p,
            join_deadline=2_000_000_000,
            finish_deadline=2_100_000_000,
            parent_model_id=0,
        )


@pytest.fixture
def index(tmp_path: Path) -> Index:
    return Index.open(f"sqlite:///{tmp_path / 'index.sqlite'}")


@pytest.fixture
def chain(index: Index) -> Chain:
    return Chain(index, DictMetadataSource())


def finished_task(chain: Chain) -> None:
    """Task 1: four join, three rounds (seat 3 never contributes), finalized, claims."""
    chain.metadata.add_task_spec(
        digest("digits"), spec("Digits classifier", "Handwritten digits, non-IID")
    )
    chain.create(1, "digits")
    chain.block()
    for seat, owner in enumerate(OWNERS):
        chain.emit(
            "federation",
            "Joined",
            task_id=1,
            participant=owner,
            seat=seat,
            node_key_hash=digest(owner),
        )
    chain.block()
    for rnd, metric in ((1, 0.61), (2, 0.83), (3, 0.912345)):
        chain.emit(
            "federation",
            "RoundCommitted",
            task_id=1,
            round=rnd,
            model_digest=digest(f"model{rnd}"),
            round_digest=digest(f"round{rnd}"),
            contributors=0b0111 if rnd != 1 else 0b0011,
            metric=round(metric * 1_000_000),
        )
        chain.block()
    chain.emit(
        "federation", "Finalized", task_id=1, splitter=SPLITTER, shares=[4000, 3500, 2500, 0]
    )
    chain.emit("model_registry", "Transfer", sender="0x" + "00" * 20, receiver=SPLITTER, token_id=7)
    chain.emit("federation", "Claimed", task_id=1, account=OWNERS[0], amount=45 * TOKEN)
    chain.block()


def test_a_finished_task_has_its_participants_rounds_shares_claims_and_result(
    chain: Chain, index: Index
) -> None:
    finished_task(chain)
    task = index.task(1)
    assert task.summary.status == TaskStatus.FINALIZED
    assert (
        task.summary.name == "Digits classifier"
        and task.description == "Handwritten digits, non-IID"
    )
    assert (task.summary.participants, task.summary.rounds) == (4, 3)
    assert [r.metric for r in task.rounds] == [0.61, 0.83, 0.912345]
    assert task.rounds[0].contributors == [0, 1] and task.rounds[2].contributors == [0, 1, 2]
    assert [p.contributed_rounds for p in task.participants] == [3, 3, 2, 0]
    assert [p.share_bps for p in task.participants] == [4000, 3500, 2500, 0]
    assert task.participants[0].claimed == 45 * TOKEN and task.participants[1].claimed == 0
    assert task.splitter == SPLITTER and task.result_model_id == 7
    assert task.summary.reward == 100 * TOKEN


def test_status_follows_the_events(chain: Chain, index: Index) -> None:
    chain.create(1, "a")
    chain.create(2, "b")
    chain.create(3, "c")
    chain.block()
    assert {t.task_id: t.status for t in index.tasks(TaskQuery()).items} == {
        1: TaskStatus.OPEN,
        2: TaskStatus.OPEN,
        3: TaskStatus.OPEN,
    }
    chain.emit(
        "federation",
        "RoundCommitted",
        task_id=1,
        round=1,
        model_digest=digest("m"),
        round_digest=digest("r"),
        contributors=1,
        metric=1,
    )
    chain.emit("federation", "Cancelled", task_id=2)
    chain.emit("federation", "Aborted", task_id=3)
    chain.block()
    statuses = {t.task_id: t.status for t in index.tasks(TaskQuery()).items}
    assert statuses == {1: TaskStatus.RUNNING, 2: TaskStatus.CANCELLED, 3: TaskStatus.ABORTED}
    assert [t.task_id for t in index.tasks(TaskQuery(status=TaskStatus.RUNNING)).items] == [1]


def test_search_finds_words_of_the_spec_and_pages_newest_first(chain: Chain, index: Index) -> None:
    for task_id, name in enumerate(
        ["Digits classifier", "Fraud detection", "Digits again", "Iris"], 1
    ):
        chain.metadata.add_task_spec(digest(name), spec(name, f"task {name} 100%_off"))
        chain.create(task_id, name)
    chain.block()
    found = index.tasks(TaskQuery(text="DIGITS"))
    assert [t.task_id for t in found.items] == [3, 1]
    assert [t.task_id for t in index.tasks(TaskQuery(text="digits again")).items] == [3]
    # LIKE wildcards in the query are plain characters.
    assert (
        index.tasks(TaskQuery(text="100%_off")).items
        and not index.tasks(TaskQuery(text="1_0")).items
    )
    first = index.tasks(TaskQuery(limit=3))
    assert [t.task_id for t in first.items] == [4, 3, 2] and first.next_before == 2
    rest = index.tasks(TaskQuery(limit=3, before=first.next_before))
    assert [t.task_id for t in rest.items] == [1] and rest.next_before is None
    assert [t.task_id for t in index.tasks(TaskQuery(requester=REQUESTER, limit=1)).items] == [4]
    with pytest.raises(InvalidSearchQueryError):
        index.tasks(TaskQuery(limit=0))
    with pytest.raises(InvalidSearchQueryError):
        index.tasks(TaskQuery(text="x" * 201))


def test_a_spec_that_arrives_later_makes_the_task_searchable(chain: Chain, index: Index) -> None:
    chain.create(1, "late")
    chain.block()
    assert index.task(1).summary.name is None and not index.task(1).spec_arrived
    assert index.tasks(TaskQuery(text="late")).items == []
    chain.metadata.add_task_spec(digest("late"), spec("Late spec"))
    with index.engine.begin() as conn:
        assert apply_arrived_specs(conn, chain.metadata) == 1
        assert apply_arrived_specs(conn, chain.metadata) == 0  # never asked again
    assert [t.task_id for t in index.tasks(TaskQuery(text="late")).items] == [1]


def test_a_hostile_spec_is_kept_bounded_and_marked_invalid(chain: Chain, index: Index) -> None:
    chain.metadata.add_task_spec(digest("huge"), spec("Huge", "x" * MAX_SPEC_JSON))
    chain.metadata.add_task_spec(digest("list"), ["not", "an", "object"])  # type: ignore[arg-type]
    chain.metadata.add_task_spec(digest("long"), spec("n" * 5000, "d" * 50_000))
    chain.create(1, "huge")
    chain.create(2, "list")
    chain.create(3, "long")
    chain.block()
    for task_id in (1, 2):
        task = index.task(task_id)
        assert task.spec_arrived and task.spec is None and task.summary.name is None
    long = index.task(3)
    assert long.summary.name is not None and len(long.summary.name) == 200
    assert len(long.description) == 20_000


def test_a_reorg_removes_the_task_facts_above_the_fork(chain: Chain, index: Index) -> None:
    finished_task(chain)
    fork = chain.number - 2  # drops round 3 and the finalization
    with index.engine.begin() as conn:
        rollback_above(conn, fork)
    task = index.task(1)
    assert task.summary.status == TaskStatus.RUNNING and task.summary.rounds == 2
    assert task.splitter is None and task.participants[0].claimed == 0
    with index.engine.begin() as conn:
        rollback_above(conn, 10)
        assert conn.execute(select(func.count()).select_from(s.FlTask)).scalar_one() == 0
    with pytest.raises(IndexedTaskNotFoundError):
        index.task(1)


def test_seats_of_a_contributors_bitmap() -> None:
    assert seats(0) == [] and seats(0b1011) == [0, 1, 3] and seats(1 << 99) == [99]


# --- API and pages -------------------------------------------------------------------


@dataclass
class PageState:
    """What the task routes read of the gateway's state (a chain that is not local): the
    index, a real block store beside it, and no moderation lists."""

    index: Index
    sessions: SessionSigner
    chain_id: int = 10
    moderation: None = None
    market: Any = None

    def __post_init__(self) -> None:
        beside = Path(str(self.index.engine.url.database)).parent
        self.market = SimpleNamespace(store=Blockstore(beside / "store"))


@pytest.fixture
def client(index: Index) -> TestClient:
    app = FastAPI()
    state = PageState(index, SessionSigner(b"k" * 32))
    app.state.gateway = state
    install_error_handlers(app)
    app.include_router(task_api.router)
    app.include_router(create_task_pages(state))  # type: ignore[arg-type]
    return TestClient(app)


def test_api_lists_and_shows_tasks(chain: Chain, client: TestClient) -> None:
    finished_task(chain)
    chain.metadata.add_task_spec(digest("open"), spec("Open task"))
    chain.create(2, "open")
    chain.block()
    page = client.get("/v1/tasks", params={"status": "open"}).json()
    assert [t["task_id"] for t in page["items"]] == [2] and page["next_before"] is None
    assert page["items"][0]["reward"] == str(100 * TOKEN)
    assert page["items"][0]["spec_cid"].startswith("bafkrei")  # raw-codec CIDv1
    detail = client.get("/v1/tasks/1").json()
    assert detail["status"] == "finalized" and detail["result_model_id"] == 7
    assert [r["metric"] for r in detail["round_list"]] == [0.61, 0.83, 0.912345]
    assert detail["participant_list"][3] | {"node_key_hash": ""} == {
        "seat": 3,
        "account": OWNERS[3],
        "node_key_hash": "",
        "block_number": 12,
        "contributed_rounds": 0,
        "share_bps": 0,
        "claimed": "0",
    }
    assert detail["join_command"] is None
    assert client.get("/v1/tasks/2").json()["join_command"].startswith("mercato fl join 2 --data ")


def test_api_errors_have_stable_codes(client: TestClient) -> None:
    missing = client.get("/v1/tasks/5")
    assert (missing.status_code, missing.json()["error"]) == (404, "indexed_task_not_found")
    too_big = client.get(f"/v1/tasks/{2**64}")
    assert (too_big.status_code, too_big.json()["error"]) == (422, "invalid_request")
    bad = client.get("/v1/tasks", params={"requester": "nobody"})
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_search_query")
    status = client.get("/v1/tasks", params={"status": "paid"})
    assert (status.status_code, status.json()["error"]) == (422, "invalid_request")


def test_task_page_shows_terms_chart_participants_result_and_escapes_the_spec(
    chain: Chain, client: TestClient
) -> None:
    finished_task(chain)
    chain.metadata.add_task_spec(
        digest("hostile"),
        spec(
            HOSTILE_NAME,
            '<img src=x onerror="alert(1)"> join now',
            learner="<b>sgd</b>",
            input={"n_features": 64, "dtype": "float32", "classes": [0, 1, "<i>2</i>"]},
            price=3 * TOKEN,
        ),
    )
    chain.create(2, "hostile")
    chain.block()
    done = client.get("/tasks/1").text
    assert 'id="result-model"' in done and 'href="/models/7"' in done
    assert "<svg" in done and 'data-series="accuracy"' in done  # the metric per round
    assert done.count("<circle") == 3
    assert 'title="bafkrei' in done  # each round's global model by its raw CIDv1
    assert "100 MCT" in done and "5 MCT per participant" in done
    assert "40%" in done and 'id="join-command"' not in done
    hostile = client.get("/tasks/2").text
    assert "<script>alert" not in hostile and "&lt;script&gt;alert" in hostile
    assert "<img src=x" not in hostile and "&lt;img src=x" in hostile
    assert "<b>sgd</b>" not in hostile and "&lt;b&gt;sgd&lt;/b&gt;" in hostile
    assert "<i>2</i>" not in hostile and "3 MCT" in hostile
    assert "mercato fl join 2 --data" in hostile  # open, deadline ahead: the command to copy
    listing = client.get("/tasks", params={"q": "digits"}).text
    assert 'data-task-id="1"' in listing and 'data-task-id="2"' in listing
    assert "&lt;script&gt;" in listing and "<script>alert" not in listing
    assert client.get("/tasks/77").status_code == 404
    assert client.get("/tasks", params={"status": "nonsense"}).status_code == 200
