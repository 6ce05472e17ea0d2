# SPDX-License-Identifier: AGPL-3.0-only
"""Federated tasks indexed from the federation contract on a real Anvil, into SQLite
and PostgreSQL: a finished task with its result model, a cancelled and an aborted one,
a reorg, and a rebuild that gives the same rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from mercato.chain.contracts import _ContractClient
from mercato.chain.deployment import TOKEN_UNIT
from mercato.client import Market as Sdk
from mercato.client.metadata import MAX_SPEC, StoreMetadataSource
from mercato.config import Settings
from mercato.federation.spec import store_bytes
from mercato.gateway.ipfs import create_ipfs_router
from mercato.index import Index
from mercato.index.tasks import TaskQuery, TaskStatus
from mercato.storage.blockstore import Blockstore
from tests.integration.index.conftest import Market
from tests.integration.index.scenario import digests_for, dump
from tests.integration.storage.helpers import serve

REWARD = 100 * TOKEN_UNIT
STAKE = 5 * TOKEN_UNIT


class Federation(_ContractClient):
    """The federation contract, sent to directly (the test drives each call itself)."""

    artifact_name = "federation"

    def send(self, function: str, *args: Any) -> Any:
        return self._send(function, *args)


class Splitter(_ContractClient):
    artifact_name = "revenue_splitter"


def _rpc(market: Market, method: str, *params: object) -> Any:
    return market.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def _fed(market: Market, who: int) -> Federation:
    assert market.deployment.federation is not None
    return Federation(market.w3, market.deployment.federation, market.clients[who].token.sender)


def _now(market: Market) -> int:
    return int(market.w3.eth.get_block("latest")["timestamp"])


def _create(market: Market, spec_name: str, *, min_participants: int = 2) -> int:
    """Account 1 creates a task coordinated by account 2; returns its id."""
    assert market.deployment.federation is not None
    market.clients[1].token.approve(market.deployment.federation, REWARD)
    digest = hashlib.sha256(spec_name.encode()).digest()
    market.metadata.add_task_spec(digest, {"name": spec_name, "metric": "accuracy"})
    now = _now(market)
    receipt = _fed(market, 1).send(
        "create_task",
        digest,
        REWARD,
        STAKE,
        min_participants,
        4,
        now + 1_000,
        now + 10_000,
        market.addresses[2],
        0,
        0,
    )
    (event,) = _fed(market, 1).events(receipt, "TaskCreated")
    return int(event["args"]["task_id"])


def _join(market: Market, task_id: int, who: int) -> None:
    """Account `who` joins with its one training node key, registered on first use."""
    assert market.deployment.federation is not None
    market.clients[who].token.approve(market.deployment.federation, STAKE)
    key = hashlib.sha256(bytes([who])).digest()
    fed = _fed(market, who)
    if fed.contract.functions.node_key_owner(key).call() != market.addresses[who]:
        fed.send("register_node_key", key)
    fed.send("join", task_id, key)


def _finished_task(market: Market) -> int:
    """Accounts 3, 4, 5 join; two rounds (seat 2 never contributes); finalized; the
    coordinator publishes the result through the splitter; account 3 claims."""
    task = _create(market, "Digits, non-IID")
    for who in (3, 4, 5):
        _join(market, task, who)
    coordinator = _fed(market, 2)
    coordinator.send("commit_round", task, 1, b"\x01" * 32, b"\x11" * 32, 0b001, 610_000)
    coordinator.send("commit_round", task, 2, b"\x02" * 32, b"\x12" * 32, 0b011, 912_345)
    receipt = coordinator.send("finalize", task, [6_000, 4_000, 0])
    (finalized,) = coordinator.events(receipt, "Finalized")
    splitter = Splitter(market.w3, finalized["args"]["splitter"], market.clients[2].token.sender)
    splitter._send("publish_model", *digests_for("federated-digits").as_args(), 0, 0)
    _fed(market, 3).send("claim", task)
    return task


def test_tasks_are_indexed_from_the_federation_contract(market: Market, index_url: str) -> None:
    a = market.addresses
    finished = _finished_task(market)
    cancelled = _create(market, "Cancelled task")
    _join(market, cancelled, 4)
    _fed(market, 1).send("cancel", cancelled)
    aborted = _create(market, "Under-subscribed task", min_participants=3)
    _join(market, aborted, 5)
    _rpc(market, "evm_increaseTime", 2_000)  # past the join deadline with 1 of 3 joined
    _rpc(market, "evm_mine")
    _fed(market, 0).send("abort", aborted)
    _fed(market, 5).send("claim", aborted)
    open_task = _create(market, "Open for joining")

    index = Index.open(index_url)
    market.indexer(index).sync_once()

    task = index.task(finished)
    assert task.summary.status == TaskStatus.FINALIZED and task.summary.name == "Digits, non-IID"
    assert (task.summary.requester, task.summary.coordinator) == (a[1], a[2])
    assert (task.summary.reward, task.summary.stake) == (REWARD, STAKE)
    assert [p.account for p in task.participants] == [a[3], a[4], a[5]]
    assert [(r.round, r.contributors, r.metric) for r in task.rounds] == [
        (1, [0], 0.61),
        (2, [0, 1], 0.912345),
    ]
    assert [p.share_bps for p in task.participants] == [6_000, 4_000, 0]
    assert [p.contributed_rounds for p in task.participants] == [2, 1, 0]
    # What account 3 claimed is what the token moved: stake back + 60 % of reward + slash.
    paid = task.participants[0].claimed
    assert paid == STAKE + REWARD * 6 // 10 + STAKE * 6 // 10
    assert task.splitter is not None and task.result_model_id is not None
    assert index.model(task.result_model_id).summary.owner == task.splitter

    statuses = {t.task_id: t.status for t in index.tasks(TaskQuery()).items}
    assert statuses == {
        finished: TaskStatus.FINALIZED,
        cancelled: TaskStatus.CANCELLED,
        aborted: TaskStatus.ABORTED,
        open_task: TaskStatus.OPEN,
    }
    assert index.task(aborted).participants[0].claimed == STAKE
    assert [t.task_id for t in index.tasks(TaskQuery(text="joining")).items] == [open_task]
    assert [t.task_id for t in index.tasks(TaskQuery(participant=a[4])).items] == [
        cancelled,
        finished,
    ]


def test_a_reorg_undoes_rounds_and_the_end_and_a_rebuild_agrees(
    market: Market, index_url: str, fresh_url: Callable[[str], str]
) -> None:
    task = _create(market, "Reorged task")
    for who in (3, 4):
        _join(market, task, who)
    index = Index.open(index_url)
    indexer = market.indexer(index)
    indexer.sync_once()
    fork = market.w3.eth.block_number
    snapshot = _rpc(market, "evm_snapshot")
    coordinator = _fed(market, 2)
    coordinator.send("commit_round", task, 1, b"\x01" * 32, b"\x11" * 32, 0b11, 500_000)
    coordinator.send("finalize", task, [5_000, 5_000])
    indexer.sync_once()
    assert index.task(task).summary.status == TaskStatus.FINALIZED

    assert _rpc(market, "evm_revert", snapshot) is True
    _fed(market, 1).send("cancel", task)
    _rpc(market, "anvil_mine", hex(5))
    report = indexer.sync_once()
    assert report.rolled_back_to == fork
    detail = index.task(task)
    assert detail.summary.status == TaskStatus.CANCELLED and detail.rounds == []
    assert detail.splitter is None
    fresh = Index.open(fresh_url(index_url))
    market.indexer(fresh).sync_once()
    assert dump(index.engine) == dump(fresh.engine)


def test_a_spec_is_fetched_only_from_the_providers_of_its_requester_and_coordinator(
    market: Market, tmp_path: Path
) -> None:
    a = market.addresses
    origin = Blockstore(tmp_path / "origin")  # the requester's node's store
    small = store_bytes(origin, json.dumps({"name": "remote spec"}).encode())
    large = store_bytes(origin, json.dumps({"name": "x" * (MAX_SPEC + 10)}).encode())
    app = FastAPI()
    app.include_router(create_ipfs_router(origin))
    settings = Settings(data_dir=tmp_path / "node", rpc_url=market.w3.provider.endpoint_uri)  # type: ignore[attr-defined]
    source = StoreMetadataSource(Sdk(settings, deployment=market.deployment))
    task_accounts = [a[1], a[2]]
    with serve(app) as url:
        market.clients[5].registry.set_provider(url)  # a stranger's URL is never asked
        assert source.task_spec(small.raw_digest, task_accounts) is None
        market.clients[2].registry.set_provider(url)  # the coordinator's is
        assert source.task_spec(small.raw_digest, task_accounts) == {"name": "remote spec"}
        assert source.task_spec(large.raw_digest, task_accounts) == {}  # kept as invalid
    assert source.task_spec(small.raw_digest, []) == {"name": "remote spec"}  # now local
