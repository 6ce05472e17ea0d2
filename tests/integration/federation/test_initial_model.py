# SPDX-License-Identifier: AGPL-3.0-only
"""Fine-tuning a registry model in a federated task, on a real Anvil.

The parent is published by a fresh account (not one of Anvil's dev accounts) from a
plain `skl2onnx.to_onnx(LogisticRegression())` export, and served by that creator's
node over the IPFS trustless-gateway protocol (Mercato's router on a real HTTP server):
the requester's node holds nothing of it and fetches it by the provider URL the chain
records. No Flower process runs here (the runtime has its own tests): the one round is
trained in this process and checkpointed the way the ServerApp does, so the coordinator
commits it, finalizes and publishes the result through the splitter. The last test
checks what a private task's committed round record says of its privacy budget.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from skl2onnx import to_onnx
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from web3 import Web3

from mercato.agent import SellerAgent
from mercato.chain.anvil import AnvilSupervisor, dev_accounts
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.config import Settings
from mercato.errors import InitialModelError, InitialModelLicenseError
from mercato.federation import checkpoint
from mercato.federation.coordinator import Coordinator
from mercato.federation.initial import RegistryModels, check_licence, params_from_registry_onnx
from mercato.federation.learning import export_onnx, train_local
from mercato.federation.privacy import budget_record, epsilon_after, settings_of
from mercato.federation.shares import RoundContribution
from mercato.federation.spec import InitialModel, InputSchema, TaskSpec, store_spec
from mercato.gateway.ipfs import create_ipfs_router
from tests.integration.storage.helpers import serve

TOKEN = 10**18
PRICE = 3 * TOKEN
ROYALTY_BPS = 750
DAY = 86_400
CARD = """---
license: mit
library_name: sklearn
---
# {title}

A logistic regression on 8x8 handwritten digits, exported with skl2onnx's defaults.

## Uses

Classifies 64 pixel intensities (0-16 scaled to 0-1) into the digits 0-9.

## Bias, Risks, and Limitations

Trained on one small public set of digits; check it on your own data first.
"""


@dataclass
class World:
    w3: Web3
    deployment: Deployment
    rpc_url: str
    root: Path
    creator: LocalAccount
    requester: LocalAccount
    owner: LocalAccount
    provider_url: str

    def market(self, name: str, account: LocalAccount | None, **settings: str) -> Market:
        config = Settings(data_dir=self.root / name, rpc_url=self.rpc_url, **settings)
        return Market(config, account=account, deployment=self.deployment)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])


@pytest.fixture
def world(anvil: AnvilSupervisor, w3: Web3, tmp_path: Path) -> Iterator[World]:
    accounts = dev_accounts(7)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    creator = Account.create()  # a fresh key: no dev account, no MCT, just gas money
    w3.provider.make_request("anvil_setBalance", [creator.address, hex(10**20)])  # type: ignore[arg-type]
    creator_store = Market(
        Settings(data_dir=tmp_path / "creator", rpc_url=anvil.rpc_url), deployment=deployment
    ).store
    app = FastAPI()
    app.include_router(create_ipfs_router(creator_store))
    with serve(app) as url:
        yield World(w3, deployment, anvil.rpc_url, tmp_path, creator, accounts[1], accounts[2], url)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


def _package(directory: Path, title: str, estimator: LogisticRegression, x: np.ndarray) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.onnx").write_bytes(to_onnx(estimator, x[:1]).SerializeToString())
    (directory / "README.md").write_text(CARD.format(title=title))
    return directory


def _publish(world: World, price: int, tmp: Path) -> tuple[int, LogisticRegression]:
    x, y = _digits()
    estimator = LogisticRegression(max_iter=300).fit(x[:600], y[:600])
    creator = world.market("creator", world.creator, provider_url=world.provider_url)
    package = _package(tmp / f"pkg-{price}", f"Digits logreg {price}", estimator, x)
    return int(creator.models.publish(package, price=price).model_id), estimator


def _spec(model_id: int, **overrides: object) -> TaskSpec:
    fields: dict[str, object] = {
        "name": "Fine-tune digits",  # published as Fine-tune-digits
        "input": InputSchema(n_features=64, classes=tuple(range(10))),
        "learner": "logistic_regression",
        "rounds": 1,
        "min_participants": 1,
        "max_participants": 2,
        "initial_model": InitialModel(model_id=model_id, version=1),
        "parent_royalty_bps": ROYALTY_BPS,
        **overrides,
    }
    return TaskSpec(**fields)  # type: ignore[arg-type]


def _create(requester: Market, world: World, spec: TaskSpec, parent: int) -> int:
    now = world.now()
    return requester.federation.create(
        store_spec(requester.store, spec),
        reward=10 * TOKEN,
        stake=TOKEN,
        min_participants=spec.min_participants,
        max_participants=spec.max_participants,
        join_deadline=now + DAY,
        finish_deadline=now + 7 * DAY,
        parent_model_id=parent,
        parent_royalty_bps=ROYALTY_BPS if parent else 0,
    )


def _coordinator(requester: Market, task_id: int, directory: Path) -> Coordinator:
    return Coordinator(
        requester.federation,
        requester.store,
        task_id,
        directory,
        initial_source=RegistryModels(requester),
    )


def _initial_npz(directory: Path) -> list[np.ndarray]:
    with np.load(directory / "initial.npz") as saved:
        return [saved[f"p{i}"] for i in range(len(saved.files))]


def test_a_task_fine_tunes_a_free_model_fetched_from_its_creators_node_and_names_it_parent(
    world: World, tmp_path: Path
) -> None:
    parent, estimator = _publish(world, 0, tmp_path)
    requester = world.market("requester", world.requester)
    version = requester.models.version(parent, 1)
    assert not requester.store.has(version.artifact_cid)  # only the creator's node has it
    spec = _spec(parent)
    task_id = _create(requester, world, spec, parent)
    directory = tmp_path / "task"
    coordinator = _coordinator(requester, task_id, directory)
    coordinator.prepare()

    # Training starts from the published model's weights, not from zeros.
    start = _initial_npz(directory)
    assert np.allclose(start[0], estimator.coef_, atol=1e-5)
    assert np.allclose(start[1], estimator.intercept_, atol=1e-4)
    assert requester.store.has(version.artifact_cid)  # fetched, each block checked

    # One data owner joins; its round is trained from that start and checkpointed as
    # the ServerApp would; the coordinator commits it, finalizes and publishes.
    owner = world.market("owner", world.owner)
    owner.federation.join(task_id, hashlib.sha256(b"owner's node key").digest())
    x, y = _digits()
    local = train_local(spec, start, x[600:900], y[600:900])
    (directory / f"round-{1:04d}.onnx").write_bytes(export_onnx(spec, local.params))
    digest = hashlib.sha256((directory / "spec.json").read_bytes()).hexdigest()
    state = checkpoint.CheckpointState(
        task_id, digest, round=1, contributions=[RoundContribution(1, {0: local.num_examples})]
    )
    checkpoint.save(directory, state, local.params)
    result = coordinator.run()
    assert requester.models.lineage(result) == [(parent, ROYALTY_BPS)]
    assert requester.models.manifest(result)["name"] == "Fine-tune-digits"  # no spaces
    assert requester.federation.task(task_id).result_model_id == result
    # The result holds the fine-tuned parameters, read back by the same path.
    downloaded = requester.orders.download(result, tmp_path / "result")
    params = params_from_registry_onnx(spec, (downloaded / "model.onnx").read_bytes(), result, 1)
    assert np.allclose(params[0], local.params[0], atol=1e-5)


def test_a_paid_parent_opens_with_the_requesters_licence_and_not_without_one(
    world: World, tmp_path: Path
) -> None:
    parent, estimator = _publish(world, PRICE, tmp_path)
    requester = world.market("requester", world.requester)
    spec = _spec(parent)
    balance = requester.contracts.token.balance_of(world.requester.address)

    # No licence: refused before the task is created, with what to do about it.
    with pytest.raises(InitialModelLicenseError) as refused:
        check_licence(requester, parent, 1)
    assert f"mercato buy {parent}" in str(refused.value)
    assert refused.value.account == world.requester.address
    assert requester.contracts.token.balance_of(world.requester.address) == balance
    # A coordinator that somehow got this far refuses before laying out any parameter.
    task_id = _create(requester, world, spec, parent)
    directory = tmp_path / "unlicensed"
    with pytest.raises(InitialModelLicenseError):
        _coordinator(requester, task_id, directory).prepare()
    assert not (directory / "initial.npz").exists()

    # Bought and delivered by the creator's node: the same task now starts from it.
    requester.orders.buy(parent)
    creator = world.market("creator", world.creator, provider_url=world.provider_url)
    report = SellerAgent([creator], world.root / "creator").deliver_round()
    assert [o.model_id for o in report.delivered] == [parent]
    check_licence(requester, parent, 1)
    directory = tmp_path / "licensed"
    _coordinator(requester, task_id, directory).prepare()
    start = _initial_npz(directory)
    assert np.allclose(start[0], estimator.coef_, atol=1e-5)


def test_a_parent_of_another_width_or_a_spec_that_disagrees_with_the_chain_is_refused(
    world: World, tmp_path: Path
) -> None:
    x, y = load_iris(return_X_y=True)
    iris = LogisticRegression(max_iter=500).fit(x.astype(np.float32), y)
    creator = world.market("creator", world.creator, provider_url=world.provider_url)
    package = _package(tmp_path / "iris", "Iris logreg", iris, x.astype(np.float32))
    narrow = int(creator.models.publish(package, price=0).model_id)
    requester = world.market("requester", world.requester)

    task_id = _create(requester, world, _spec(narrow), narrow)
    with pytest.raises(InitialModelError) as wrong_width:
        _coordinator(requester, task_id, tmp_path / "narrow").prepare()
    assert "reads 4 features" in str(wrong_width.value)
    assert "n_features = 4" in str(wrong_width.value)

    # The spec names a parent, the task on-chain none (so no royalty would be paid).
    parent, _ = _publish(world, 0, tmp_path)
    task_id = _create(requester, world, _spec(parent, name="No-royalty"), 0)
    with pytest.raises(InitialModelError) as mismatch:
        _coordinator(requester, task_id, tmp_path / "mismatch").prepare()
    assert "created with parent model 0" in str(mismatch.value)
    assert not (tmp_path / "mismatch" / "initial.npz").exists()
    # A version the model does not have.
    with pytest.raises(InitialModelError) as missing:
        check_licence(requester, parent, 2)
    assert "1 version(s)" in str(missing.value)


def test_a_private_tasks_committed_round_record_states_its_privacy_budget(
    world: World, tmp_path: Path
) -> None:
    requester = world.market("requester", world.requester)
    spec = TaskSpec(
        name="private-digits",
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        rounds=1,
        min_participants=3,
        max_participants=3,
        privacy="private",
        privacy_settings={"noise_multiplier": 1.5},
    )
    task_id = _create(requester, world, spec, 0)
    for seat in range(3):
        joiner = world.market(f"joiner-{seat}", dev_accounts(7)[4 + seat])
        joiner.federation.join(task_id, hashlib.sha256(f"key {seat}".encode()).digest())
    directory = tmp_path / "private"
    coordinator = _coordinator(requester, task_id, directory)
    coordinator.prepare()
    start = _initial_npz(directory)
    (directory / f"round-{1:04d}.onnx").write_bytes(export_onnx(spec, start))
    digest = hashlib.sha256((directory / "spec.json").read_bytes()).hexdigest()
    examples = {0: 100, 1: 100, 2: 100}
    state = checkpoint.CheckpointState(
        task_id, digest, round=1, contributions=[RoundContribution(1, examples)]
    )
    checkpoint.save(directory, state, start)
    assert coordinator.run(publish=False) is None
    (committed,) = requester.federation.rounds(task_id)
    record = json.loads(requester.store.get(committed.round_cid))
    # The budget is in the record whose CID the chain holds, and anyone recomputes it.
    assert record["privacy"] == budget_record(spec, 1)
    assert record["privacy"]["epsilon"] == pytest.approx(epsilon_after(settings_of(spec), 1))
    assert record["privacy"]["noise"] == "central" and record["privacy"]["delta"] == 1e-5
