# SPDX-License-Identifier: AGPL-3.0-only
"""A coordinator whose run cannot go on says so and where it resumes, instead of waiting
for a round forever: real Anvil, a real SuperLink and SuperNode on loopback, Mercato's
own app.

Two data owners join a task that needs both; only one of them starts its SuperNode. The
ServerApp waits `retry_seconds` for the second, stops, and writes why; the coordinator
raises that reason with the command that resumes the task."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from multiformats import CID
from sklearn.datasets import load_digits
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.deployment import deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.config import Settings
from mercato.errors import FederationError
from mercato.federation.checkpoint import task_dir
from mercato.federation.coordinator import Coordinator, raw_cid_for_digest
from mercato.federation.participant import join_task
from mercato.federation.runtime import make_tls
from mercato.federation.server_app import FAILED
from mercato.federation.spec import InputSchema, TaskSpec, store_bytes, store_spec

pytestmark = pytest.mark.integration

TOKEN = 10**18
DAY = 86_400


def test_a_run_short_of_supernodes_stops_and_says_where_it_resumes(
    anvil: AnvilSupervisor, w3: Web3, tmp_path: Path
) -> None:
    accounts = dev_accounts(4)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])

    def market(name: str, index: int) -> Market:
        settings = Settings(data_dir=tmp_path / name, rpc_url=anvil.rpc_url)
        return Market(settings, account=accounts[index], deployment=deployment)

    requester = market("requester", 1)
    port = free_port()
    directory = task_dir(tmp_path / "requester", requester.chain_id, 1)
    tls = make_tls(directory / "superlink" / "tls", "127.0.0.1")
    spec = TaskSpec(
        name="digits",
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        rounds=2,
        local_epochs=1,
        min_participants=2,
        max_participants=2,
        coordinator_address=f"127.0.0.1:{port}",
        tls_root_cid=str(store_bytes(requester.store, tls.ca.read_bytes())),
    )
    spec_cid = store_spec(requester.store, spec)
    now = int(w3.eth.get_block("latest")["timestamp"])
    task_id = requester.federation.create(
        spec_cid, reward=10 * TOKEN, stake=TOKEN, min_participants=2, max_participants=2,
        join_deadline=now + DAY, finish_deadline=now + 7 * DAY,
    )  # fmt: skip
    features, labels = load_digits(return_X_y=True)
    owners, nodes = [], []
    for seat in range(2):
        owner = market(f"owner-{seat}", 2 + seat)
        for block in (spec_cid, CID.decode(spec.tls_root_cid)):  # stands in for a fetch
            owner.store.put(block, requester.store.get(block))
        data = tmp_path / f"owner-{seat}" / "digits.npz"
        rows = np.arange(seat * 300, seat * 300 + 300)
        np.savez(data, X=features[rows] / 16.0, y=labels[rows])
        nodes.append(
            join_task(
                owner.federation, owner.store, accounts[2 + seat].address, task_id, data,
                tmp_path / f"owner-{seat}" / "federation",
            )
        )  # fmt: skip
        owners.append(owner)

    def key_of(digest: bytes) -> bytes | None:
        # Stands in for fetching the key from the owner's provider by its CID.
        cid = raw_cid_for_digest(digest)
        return next((o.store.get(cid) for o in owners if o.store.has(cid)), None)

    coordinator = Coordinator(
        requester.federation, requester.store, task_id, directory, key_source=key_of,
        port=port, round_timeout=30, retry_seconds=5,
    )  # fmt: skip
    started = time.monotonic()
    try:
        nodes[0].start()  # the second owner never starts its SuperNode
        with pytest.raises(FederationError, match=f"'mercato fl run {task_id}' again") as caught:
            coordinator.run()
    finally:
        nodes[0].stop()
    assert "Fewer than 2 admitted SuperNodes connected within 5 s" in str(caught.value)
    assert "resume from round 1" in str(caught.value)
    assert (directory / FAILED).exists()
    assert requester.federation.task(task_id).rounds == 0
    assert time.monotonic() - started < 240  # it did not wait for a round forever
