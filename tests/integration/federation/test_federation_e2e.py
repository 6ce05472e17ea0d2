# SPDX-License-Identifier: AGPL-3.0-only
"""A federated task end to end: real Anvil, a real SuperLink and four real SuperNodes on
loopback, Mercato's own app, the rounds committed on-chain, shares paid out, the model
published through the task's revenue splitter and its sale split by shares.

Each data owner has a data directory (and store) of its own. Two hops that would go
over the network between nodes are done by copying blocks between stores instead (the
spec and TLS root certificate to the owners, each owner's public key to the
coordinator): fetching a block from a node's provider is tested in the storage tier."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from multiformats import CID
from sklearn.datasets import load_digits
from web3 import Web3

from mercato.agent import SellerAgent
from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.contracts import LicenseState, TaskStatus
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.config import Settings
from mercato.federation import learning
from mercato.federation.checkpoint import task_dir
from mercato.federation.coordinator import (
    Coordinator,
    accuracy_on,
    raw_cid_for_digest,
    write_result_package,
)
from mercato.federation.participant import join_task, wait_until_done
from mercato.federation.runtime import make_tls
from mercato.federation.spec import InitialModel, InputSchema, TaskSpec, store_bytes, store_spec

pytestmark = pytest.mark.integration

TOKEN = 10**18
REWARD = 100 * TOKEN
STAKE = 5 * TOKEN
PRICE = 10 * TOKEN
ROYALTY_BPS = 500
DAY = 86_400
OWNER_CLASSES = [(0, 1, 2), (3, 4, 5), (6, 7), (8, 9)]


@dataclass
class Chain:
    w3: Web3
    deployment: Deployment
    accounts: list[LocalAccount]
    root: Path
    rpc_url: str

    def market(self, name: str, account: LocalAccount) -> Market:
        settings = Settings(data_dir=self.root / name, rpc_url=self.rpc_url)
        return Market(settings, account=account, deployment=self.deployment)


@pytest.fixture
def chain(anvil: AnvilSupervisor, w3: Web3, tmp_path: Path) -> Chain:
    accounts = dev_accounts(9)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    return Chain(w3, deployment, accounts, tmp_path, anvil.rpc_url)


def _non_iid(features: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each owner holds mostly its 2-3 classes, plus a few rows of the others."""
    rng = np.random.default_rng(7)
    parts = []
    for classes in OWNER_CLASSES:
        mine = np.flatnonzero(np.isin(labels, classes))
        others = rng.choice(np.flatnonzero(~np.isin(labels, classes)), 30, replace=False)
        rows = np.concatenate([mine, others])
        parts.append((features[rows], labels[rows]))
    return parts


def test_four_data_owners_train_a_model_that_is_paid_published_and_sold(chain: Chain) -> None:
    parent_creator, requester_account, buyer = chain.accounts[1:4]
    owner_accounts = chain.accounts[4:8]
    features, labels = load_digits(return_X_y=True)
    features = (features / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:1400], order[1400:]
    parts = _non_iid(features[train], labels[train])
    x_test, y_test = features[test], labels[test]

    requester = chain.market("requester", requester_account)
    store = requester.store
    port = free_port()
    directory = task_dir(chain.root / "requester", requester.chain_id, 1)
    tls = make_tls(directory / "superlink" / "tls", "127.0.0.1")
    base = TaskSpec(
        name="digits-federated",
        description="Handwritten digits, 8x8, from four data owners",
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        learner="sgd",
        hyperparameters={"eta0": 0.05, "alpha": 0.0001},
        rounds=3,
        local_epochs=2,
        min_participants=3,
        max_participants=4,
        price=PRICE,
        parent_royalty_bps=ROYALTY_BPS,
    )
    # The initial model is a registry model (the parent) whose ONNX the spec names.
    initial = learning.initial_params(base)
    write_result_package(base, initial, chain.root / "initial-pkg", "digits-initial")
    parent = int(
        chain.market("parent", parent_creator)
        .models.publish(chain.root / "initial-pkg", price=PRICE)
        .model_id
    )
    initial_cid = store_bytes(store, learning.export_onnx(base, initial))
    spec = dataclasses.replace(
        base,
        initial_model=InitialModel(onnx_cid=str(initial_cid)),
        coordinator_address=f"127.0.0.1:{port}",
        tls_root_cid=str(store_bytes(store, tls.ca.read_bytes())),
    )
    spec_cid = store_spec(store, spec)
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    task_id = requester.federation.create(
        spec_cid,
        reward=REWARD,
        stake=STAKE,
        min_participants=spec.min_participants,
        max_participants=spec.max_participants,
        join_deadline=now + DAY,
        finish_deadline=now + 7 * DAY,
        parent_model_id=parent,
        parent_royalty_bps=ROYALTY_BPS,
    )
    assert task_id == 1

    owners = [chain.market(f"owner-{i}", a) for i, a in enumerate(owner_accounts)]
    nodes = []
    try:
        for i, (owner, (x, y)) in enumerate(zip(owners, parts, strict=True)):
            for block in (spec_cid, initial_cid):  # stands in for a fetch from the requester
                owner.store.put(block, store.get(block))
            owner.store.put(CID.decode(spec.tls_root_cid), tls.ca.read_bytes())
            data = chain.root / f"owner-{i}" / "digits.npz"
            np.savez(data, X=x, y=y)
            nodes.append(
                join_task(
                    owner.federation, owner.store, owner_accounts[i].address, task_id, data,
                    chain.root / f"owner-{i}" / "federation",
                )
            )  # fmt: skip
        seats = requester.federation.participants(task_id)
        assert [p.account for p in seats] == [a.address for a in owner_accounts]

        def key_of(digest: bytes) -> bytes | None:
            # Stands in for fetching the key from the owner's provider by its CID.
            for owner in owners:
                cid = raw_cid_for_digest(digest)
                if owner.store.has(cid):
                    return owner.store.get(cid)
            return None

        metrics: list[tuple[int, float]] = []
        coordinator = Coordinator(
            requester.federation, store, task_id, directory, key_source=key_of,
            evaluate=accuracy_on(x_test, y_test), port=port, round_timeout=120,
            on_round=lambda r, m: metrics.append((r, m)),
        )  # fmt: skip
        result: list[int | None] = []
        running = threading.Thread(target=lambda: result.append(coordinator.run()))
        running.start()
        # The SuperNodes start once the coordinator has admitted the keys that joined.
        deadline = time.monotonic() + 120
        while not (directory / "nodes.json").exists():
            assert time.monotonic() < deadline, "the coordinator admitted nobody"
            time.sleep(0.5)
        for node in nodes:
            node.start()
        running.join(420)
        assert result, "the coordinator did not finish"
        model_id = result[0]
        assert model_id is not None
        waiters = [
            threading.Thread(target=wait_until_done, args=(o.federation, task_id, n))
            for o, n in zip(owners, nodes, strict=True)
        ]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(60)
    finally:
        for node in nodes:
            node.stop()

    # Three rounds on-chain, each with all four seats, the last model's accuracy measured.
    rounds = requester.federation.rounds(task_id)
    assert [(r.round, r.contributors) for r in rounds] == [
        (n, frozenset(range(4))) for n in (1, 2, 3)
    ]
    assert [r for r, _ in metrics] == [1, 2, 3]
    final = metrics[-1][1]
    # The federated model beats every owner's model trained alone on its own partition.
    for x, y in parts:
        alone = learning.initial_params(spec)
        for _ in range(spec.rounds):
            alone = learning.train_local(spec, alone, x, y).params
        assert final > learning.evaluate(spec, alone, x_test, y_test) + 0.1
    assert final > 0.85

    # Payouts: every seat claims its stake and share; the shares add up to the reward.
    task = requester.federation.task(task_id)
    assert task.status is TaskStatus.FINALIZED and task.result_model_id == model_id
    claimed = [owner.federation.claim(task_id) for owner in owners]
    assert sum(claimed) == REWARD + 4 * STAKE
    sizes = [len(y) for _, y in parts]
    for amount, size in zip(claimed, sizes, strict=True):
        assert abs((amount - STAKE) / REWARD - size / sum(sizes)) < 0.001

    # The model is in the registry with the initial model as parent, and its sale is
    # split to the four by their shares.
    assert requester.models.lineage(model_id) == [(parent, ROYALTY_BPS)]
    assert requester.contracts.registry.owner_of(model_id) == task.splitter
    buyer_market = chain.market("buyer", buyer)
    buyer_market.orders.buy(model_id)
    SellerAgent([requester], chain.root / "requester").deliver_round()
    assert buyer_market.orders.status(model_id).state is LicenseState.DELIVERED
    releasable = [owner.federation.releasable(task_id) for owner in owners]
    revenue = PRICE - PRICE * ROYALTY_BPS // 10_000 - 1
    assert sum(releasable) <= revenue and revenue - sum(releasable) < 10
    for amount, size in zip(releasable, sizes, strict=True):
        assert abs(amount / revenue - size / sum(sizes)) < 0.001
