# SPDX-License-Identifier: AGPL-3.0-only
"""A scored task on a real Anvil: the requester commits its validation set's CID in the
spec, the coordinator commits each round's evidence CID as the round digest before the
next round starts, finalizes with the evidence's shares, the requester reveals the
validation set after the end (not before), and a participant's `verify` reads every
round's evidence by the CID on-chain and recomputes its own scores; a coordinator that
lowered a seat's score is caught in that round.

The rounds run Mercato's real ServerApp loop and ClientApp in this process
(`tests/unit/federation/inprocess.py`: Flower's own message serialisation, no
SuperLink/SuperNode processes, which tests/integration/federation/test_flower_processes.py
covers). The verifier reads the coordinator node's store directly (a market on the same
data directory with the participant's account): fetching blocks from another node's
gateway is `fetch_from_accounts`, tested with the other federation commands."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts
from mercato.chain.deployment import deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.config import Settings
from mercato.errors import (
    FederationEvidenceError,
    FederationInputError,
    ValidationSetMismatchError,
    ValidationSetUnavailableError,
)
from mercato.federation import checkpoint
from mercato.federation.coordinator import Coordinator
from mercato.federation.evidence import RoundEvidence
from mercato.federation.server_app import run_rounds
from mercato.federation.spec import InputSchema, TaskSpec, raw_cid_for, store_spec
from mercato.federation.validation import keep_validation
from tests.unit.federation import rounds as R
from tests.unit.federation.inprocess import InProcessGrid, server_identity
from tests.unit.federation.test_scored_mode import CheatingClients

pytestmark = pytest.mark.integration
DAY = 86_400
SEATS = 4  # three honest data owners and an echo free-rider
ECHO = 3


def _market(root: Path, anvil: AnvilSupervisor, deployment, account) -> Market:  # type: ignore[no-untyped-def]
    return Market(
        Settings(data_dir=root, rpc_url=anvil.rpc_url), account=account, deployment=deployment
    )


def _run_task(
    coordinator: Coordinator, seats: dict[int, dict[str, str]], tamper_round: int = 0
) -> None:
    """The ServerApp in a thread; this thread commits each round (as `Coordinator.run`
    does with a SuperLink) and, for the tampering test, lowers seat 1's score in one
    round's evidence before it is committed."""
    spec = coordinator.prepare()
    directory = coordinator.directory
    nodes = {100 + seat: seat for seat in seats}
    (directory / "nodes.json").write_text(json.dumps({str(n): s for n, s in nodes.items()}))
    grid = InProcessGrid(CheatingClients(), {100 + s: cfg for s, cfg in seats.items()})  # type: ignore[arg-type]
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            with server_identity():
                run_rounds(grid, directory, timeout=5, min_replies=2)
        except BaseException as exc:  # reported below
            failure.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    keys = {p.seat: p.node_key_hash for p in coordinator.chain.participants(coordinator.task_id)}
    committed = 0
    while committed < spec.rounds and not failure:
        if tamper_round and committed == tamper_round - 1:
            # Hold the commit until the round's evidence is written, then lower a score.
            state = directory / "state.json"
            if not state.exists() or json.loads(state.read_text())["round"] < tamper_round:
                time.sleep(0.05)
                continue
            path = directory / f"evidence-{tamper_round:04d}.json"
            record = json.loads(path.read_text())
            for key in ("scores", "leave_one_out"):
                record[key]["1"] -= 0.05
            path.write_bytes(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        committed = coordinator._commit_pending(spec, keys)
        time.sleep(0.05)
    thread.join(timeout=120)
    assert not failure, failure


@pytest.fixture
def world(anvil: AnvilSupervisor, w3: Web3) -> dict[str, Any]:
    accounts = dev_accounts(10)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    return {"anvil": anvil, "w3": w3, "deployment": deployment, "accounts": accounts}


def test_evidence_cids_on_chain_reveal_after_the_end_and_verify(
    world: dict[str, Any], tmp_path: Path
) -> None:
    anvil, deployment, accounts = world["anvil"], world["deployment"], world["accounts"]
    node = tmp_path / "requester-node"
    requester = _market(node, anvil, deployment, accounts[1])
    parts, validation, _ = R.digits_split()
    files = {}
    for seat in range(3):
        files[seat] = tmp_path / f"owner{seat}.npz"
        np.savez(files[seat], X=parts[seat].X, y=parts[seat].y)
    np.savez(tmp_path / "validation.npz", X=validation.X, y=validation.y)
    spec = TaskSpec(
        name="digits",
        input=InputSchema(n_features=64, classes=tuple(range(10)), dtype="float64"),
        hyperparameters={"alpha": 0.0001, "eta0": 0.01},
        rounds=3,
        local_epochs=2,
        min_participants=2,
        max_participants=SEATS,
    )
    cid = keep_validation(node, tmp_path / "validation.npz", spec)
    spec = TaskSpec.from_dict({**spec.to_dict(), "scoring": {"validation_cid": str(cid)}})
    # Committed, not published: the node's store (what its gateway serves) lacks it.
    assert not requester.store.has(cid)
    seats = {s: {"data-path": str(files[s])} for s in range(3)}
    seats[ECHO] = {"cheat": "echo"}
    task_ids = []
    for task in ("honest", "lying"):
        now = int(world["w3"].eth.get_block("latest")["timestamp"])
        task_id = requester.federation.create(
            store_spec(requester.store, spec),
            reward=10**18,
            stake=10**17,
            min_participants=2,
            max_participants=SEATS,
            join_deadline=now + DAY,
            finish_deadline=now + 7 * DAY,
        )
        for seat in range(SEATS):
            owner = _market(tmp_path / f"owner{seat}-node", anvil, deployment, accounts[2 + seat])
            key = hashlib.sha256(f"node key {seat}".encode()).digest()
            assert owner.federation.join(task_id, key) == seat
        coordinator = Coordinator(
            requester.federation,
            requester.store,
            task_id,
            checkpoint.task_dir(node, requester.chain_id, task_id),
            validation=(tmp_path / "validation.npz").read_bytes(),
        )
        _run_task(coordinator, seats, tamper_round=2 if task == "lying" else 0)
        task_ids.append((task_id, coordinator))

    honest_id, coordinator = task_ids[0]
    # An operator cleaning the node's store mid-task keeps what verifiers fetch from it:
    # the spec, every round's model and evidence are pinned as they are added.
    requester.store.gc()
    # Each round's digest on-chain names its evidence, which names the round's seats.
    rounds = requester.federation.rounds(honest_id)
    assert [r.round for r in rounds] == [1, 2, 3]
    for record in rounds:
        evidence = RoundEvidence.from_json_bytes(requester.store.get(record.round_cid))
        assert evidence.round == record.round and evidence.task_id == honest_id
        assert set(evidence.update_digests) == set(record.contributors) == set(range(SEATS))
        assert raw_cid_for(requester.store.get(record.round_cid)) == record.round_cid

    # The participant's view: the same node's store, its own account.
    participant = _market(node, anvil, deployment, accounts[3])  # seat 1
    with pytest.raises(ValidationSetUnavailableError):
        participant.federation.verify(honest_id, data=files[1])
    checked = participant.federation.verify(honest_id)  # the evidence against the chain only
    assert checked.rounds == [1, 2, 3] and not checked.validation_checked
    with pytest.raises(FederationInputError, match="has not ended"):
        requester.federation.reveal_validation(honest_id)

    digest = hashlib.sha256(spec.to_json_bytes()).hexdigest()
    state, _ = checkpoint.load(coordinator.directory, honest_id, digest)  # type: ignore[misc]
    shares = coordinator.shares(spec, SEATS, state)
    assert shares[ECHO] == 0 and all(shares[s] > 0 for s in range(3)) and sum(shares) == 10_000
    requester.federation.finalize(honest_id, shares)
    with pytest.raises(FederationInputError, match="requester"):
        participant.federation.reveal_validation(honest_id)
    assert requester.federation.reveal_validation(honest_id) == cid
    assert requester.store.has(cid)
    assert requester.store.is_pinned(cid)  # revealed is published: gc keeps it
    requester.store.gc()

    report = participant.federation.verify(honest_id, data=files[1])
    assert report.seat == 1 and report.shares_checked and report.validation_checked
    assert [v.round for v in report.verdicts] == [1, 2, 3]
    assert all(v.holds for v in report.verdicts)
    forged = tmp_path / "forged.npz"
    np.savez(forged, X=validation.X[1:], y=validation.y[1:])
    with pytest.raises(ValidationSetMismatchError):
        participant.federation.verify(honest_id, validation=forged, data=files[1])

    lying_id, _ = task_ids[1]
    with pytest.raises(FederationEvidenceError, match="seat 1's leave-one-out") as caught:
        participant.federation.verify(lying_id, data=files[1])
    assert caught.value.round == 2
