# SPDX-License-Identifier: AGPL-3.0-only
"""Federated training tasks the demo seeds: one finished, one open for joining.

The finished task is trained for real, in this process: the digits data set is split
non-IID over four demo data owners (each holds mostly two or three digits), each trains
Mercato's SGD learner on its own rows every round, FedAvg combines the updates, and the
global model is scored on held-out rows. What reaches the chain is what the
coordinator would commit: each round's global model (ONNX, raw CIDv1 in the node's
store), its participant list and accuracy, then shares by examples and the result
model, published through the task's revenue splitter. Flower's SuperLink and SuperNodes
are not started for the demo (they take a while to come up on a small machine); the
end-to-end test runs them as real processes.

The open task waits for data owners: `mercato fl join <id> --data PATH`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from mercato.client.market import Market
    from mercato.federation.spec import TaskSpec

log = logging.getLogger(__name__)
TOKEN = 10**18
ROUNDS = 3
DAY = 86_400


@dataclasses.dataclass(frozen=True)
class DemoTasks:
    """The ids of the seeded tasks, and the finished task's result model."""

    finished: int
    open: int
    result_model_id: int


def _digits_spec(store: Any) -> TaskSpec:
    from mercato.federation.learning import export_onnx, initial_params
    from mercato.federation.spec import InitialModel, InputSchema, TaskSpec, store_bytes

    spec = TaskSpec(
        name="digits-federated",
        description=(
            "Recognise handwritten digits 0-9 from 8x8 images (64 pixel values, 0-16), "
            "trained on four data owners' images that never leave them; each holds mostly "
            "two or three digits."
        ),
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        learner="sgd",
        hyperparameters={"alpha": 0.0001, "seed": 0},
        rounds=ROUNDS,
        local_epochs=2,
        min_participants=2,
        max_participants=4,
        price=2 * TOKEN,
    )
    # Training starts from the untrained model's ONNX, named by content like every round.
    initial = store_bytes(store, export_onnx(spec, initial_params(spec)))
    return dataclasses.replace(spec, initial_model=InitialModel(onnx_cid=str(initial)))


def _partitions(owners: int, seed: int = 0) -> tuple[list[tuple[Any, Any]], tuple[Any, Any]]:
    """Digits split non-IID: owner i holds mostly digits {3i, 3i+1, 3i+2} (mod 10),
    plus a little of the rest; a fifth of the rows is held out for scoring."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    held = order[: len(x) // 5]
    rows = order[len(x) // 5 :]
    parts: list[list[int]] = [[] for _ in range(owners)]
    for row in rows:
        home = int(y[row]) // 3 % owners
        parts[home if rng.random() < 0.9 else int(rng.integers(owners))].append(int(row))
    return [(x[p], y[p]) for p in parts], (x[held], y[held])


def seed_finished_task(
    requester: Market, owners: list[Market], node_keys: list[bytes], work_dir: Path
) -> tuple[int, int]:
    """Creates, trains, commits, finalizes and publishes the finished demo task.

    Args:
        requester: The requester's market; it also coordinates (its node delivers the
            result model's keys).
        owners: The data owners' markets, one seat each.
        node_keys: Each owner's SuperNode key hash (what `join` binds).
        work_dir: Where the result model's package is written.

    Returns:
        The task id and the result model's id.
    """
    from mercato.federation.coordinator import write_result_package
    from mercato.federation.learning import (
        evaluate,
        export_onnx,
        fedavg,
        initial_params,
        train_local,
    )
    from mercato.federation.shares import ExampleWeightedScorer, RoundContribution
    from mercato.federation.spec import store_bytes, store_spec

    store = requester.store
    spec = _digits_spec(store)
    now = int(requester.w3.eth.get_block("latest")["timestamp"])
    task_id = requester.federation.create(
        store_spec(store, spec),
        reward=60 * TOKEN,
        stake=5 * TOKEN,
        min_participants=spec.min_participants,
        max_participants=spec.max_participants,
        join_deadline=now + DAY,
        finish_deadline=now + 7 * DAY,
    )
    for market, key in zip(owners, node_keys, strict=True):
        market.federation.join(task_id, key)
    parts, (x_test, y_test) = _partitions(len(owners))
    params = initial_params(spec)
    records = []
    for rnd in range(1, ROUNDS + 1):
        updates = [train_local(spec, params, x, y) for x, y in parts]
        params = fedavg([(u.params, u.num_examples) for u in updates])
        accuracy = evaluate(spec, params, x_test, y_test)
        model_cid = store_bytes(store, export_onnx(spec, params))
        examples = {seat: u.num_examples for seat, u in enumerate(updates)}
        listing = {
            "task_id": task_id,
            "round": rnd,
            "model": str(model_cid),
            "participants": [
                {"seat": seat, "node_key_hash": key.hex(), "examples": examples[seat]}
                for seat, key in enumerate(node_keys)
            ],
        }
        round_cid = store_bytes(store, json.dumps(listing, sort_keys=True).encode())
        requester.federation.commit_round(
            task_id, rnd, model_cid, round_cid, set(examples), accuracy
        )
        records.append(RoundContribution(rnd, examples))
        log.info("demo task %d: round %d committed, accuracy %.3f", task_id, rnd, accuracy)
    requester.federation.finalize(task_id, ExampleWeightedScorer().shares(len(owners), records))
    package = work_dir / f"digits-federated-{task_id}"
    write_result_package(spec, params, package, spec.name)
    model_id = requester.federation.publish_result(task_id, package, price=spec.price)
    for market in owners[:2]:  # two owners took their pay out already; two have not
        market.federation.claim(task_id)
    return task_id, model_id


def seed_open_task(requester: Market, first: Market, first_key: bytes) -> int:
    """An iris task taking data owners for a week, with one seat taken."""
    from mercato.federation.spec import InputSchema, TaskSpec, store_spec

    spec = TaskSpec(
        name="iris-more-flowers",
        description=(
            "Classify iris flowers (setosa, versicolor, virginica) from four measurements "
            "in cm: sepal length, sepal width, petal length, petal width. Join with a CSV "
            "of your own measurements and a 'label' column (0, 1 or 2)."
        ),
        input=InputSchema(
            n_features=4,
            classes=(0, 1, 2),
            feature_names=("sepal_length", "sepal_width", "petal_length", "petal_width"),
        ),
        learner="logistic_regression",
        rounds=5,
        min_participants=2,
        max_participants=8,
        price=1 * TOKEN,
    )
    now = int(requester.w3.eth.get_block("latest")["timestamp"])
    task_id = requester.federation.create(
        store_spec(requester.store, spec),
        reward=40 * TOKEN,
        stake=2 * TOKEN,
        min_participants=spec.min_participants,
        max_participants=spec.max_participants,
        join_deadline=now + 7 * DAY,
        finish_deadline=now + 14 * DAY,
    )
    first.federation.join(task_id, first_key)
    return task_id


def seed_federation(
    market_for: Any, requesters: list[LocalAccount], owners: list[LocalAccount], data_dir: Path
) -> DemoTasks:
    """Seeds both demo tasks.

    Args:
        market_for: Gives the market of an account (`Node.account_market`).
        requesters: Two accounts: the first requests (and coordinates) the finished
            task, the second the open one.
        owners: Four data owners.
        data_dir: The node's data directory (demo SuperNode keys go under it).

    Returns:
        The seeded task ids and the result model's id.
    """
    from mercato.federation.keys import load_or_create_node_key, node_key_hash

    keys = []
    for owner in owners:
        _, pem = load_or_create_node_key(data_dir / "demo-federation" / owner.address)
        keys.append(node_key_hash(pem))
    owner_markets = [market_for(o) for o in owners]
    finished, model_id = seed_finished_task(
        market_for(requesters[0]), owner_markets, keys, data_dir / "samples"
    )
    open_task = seed_open_task(market_for(requesters[1]), owner_markets[0], keys[0])
    return DemoTasks(finished, open_task, model_id)
