# SPDX-License-Identifier: AGPL-3.0-only
"""Scored tasks on a real Anvil with what one raw block cannot hold, and with local DP.

- A model above the 2 MiB block limit (an MLP on digits with 4096 and 128 hidden units:
  about 790k parameters, a 3 MiB ONNX and 6 MiB parameter files) trains, its rounds are
  committed, and a participant's `verify` fetches every round's model by the digest on
  the chain, re-hashes it and recomputes its own scores from the chunked step and
  previous models. A tampered chunk in the store is refused with a typed error.
- With local DP the ClientApp keeps each update it sent; `verify --updates` passes for
  an honest coordinator and catches one that swapped the seat's update digest or
  lowered its score (`OwnUpdateMismatchError`, exit code 123).

The rounds run Mercato's real ServerApp loop and ClientApp in this process over
Flower's own message serialisation (`tests/unit/federation/inprocess.py`), committed by
the real `Coordinator` on Anvil, as in test_scored_chain.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from multiformats import CID
from typer.testing import CliRunner
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts
from mercato.chain.deployment import deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.cli.app import _register_commands, app
from mercato.client import Market
from mercato.errors import (
    BlockHashMismatchError,
    BlockNotFoundError,
    FederationInputError,
    OwnUpdateMismatchError,
)
from mercato.federation import checkpoint
from mercato.federation.coordinator import Coordinator
from mercato.federation.evidence import RoundEvidence
from mercato.federation.spec import (
    InputSchema,
    TaskSpec,
    blob_cid_for,
    blob_cid_for_root,
    read_blob,
    store_spec,
)
from mercato.federation.validation import keep_validation
from mercato.gateway.ipfs import create_ipfs_router
from mercato.storage.cids import MAX_BLOCK_SIZE, block_key, cid_from_bytes
from mercato.storage.dagpb import decode_node
from tests.integration.federation.test_scored_chain import _market, _run_task
from tests.integration.market.conftest import PASSWORD, import_keys
from tests.integration.storage.helpers import serve
from tests.unit.federation import rounds as R

pytestmark = pytest.mark.integration
DAY = 86_400
_register_commands()


@pytest.fixture
def world(anvil: AnvilSupervisor, w3: Web3) -> dict[str, Any]:
    accounts = dev_accounts(6)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    return {"anvil": anvil, "w3": w3, "deployment": deployment, "accounts": accounts}


def _task(
    world: dict[str, Any], tmp_path: Path, spec: TaskSpec, seats: dict[int, dict[str, str]]
) -> tuple[Market, int, Coordinator]:
    """Creates the task (scored on the digits validation set), seats every owner and runs
    its rounds; returns the requester's market, the task and its coordinator."""
    anvil, deployment, accounts = world["anvil"], world["deployment"], world["accounts"]
    node = tmp_path / "requester-node"
    requester = _market(node, anvil, deployment, accounts[1])
    _, validation, _ = R.digits_split()
    np.savez(tmp_path / "validation.npz", X=validation.X, y=validation.y)
    cid = keep_validation(node, tmp_path / "validation.npz", spec)
    spec = TaskSpec.from_dict({**spec.to_dict(), "scoring": {"validation_cid": str(cid)}})
    now = int(world["w3"].eth.get_block("latest")["timestamp"])
    task_id = requester.federation.create(
        store_spec(requester.store, spec),
        reward=10**18,
        stake=10**17,
        min_participants=2,
        max_participants=len(seats),
        join_deadline=now + DAY,
        finish_deadline=now + 7 * DAY,
    )
    for seat in seats:
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
    _run_task(coordinator, seats)
    digest = hashlib.sha256(spec.to_json_bytes()).hexdigest()
    state, _ = checkpoint.load(coordinator.directory, task_id, digest)  # type: ignore[misc]
    requester.federation.finalize(task_id, coordinator.shares(spec, len(seats), state))
    requester.federation.reveal_validation(task_id)
    return requester, task_id, coordinator


def _owner_files(tmp_path: Path, count: int) -> dict[int, Path]:
    parts, _, _ = R.digits_split()
    files = {}
    for seat in range(count):
        files[seat] = tmp_path / f"owner{seat}.npz"
        np.savez(files[seat], X=parts[seat].X, y=parts[seat].y)
    return files


def test_a_model_above_the_block_limit_is_committed_fetched_and_verified(
    world: dict[str, Any], tmp_path: Path
) -> None:
    files = _owner_files(tmp_path, 2)
    spec = TaskSpec(
        name="wide digits",
        input=InputSchema(n_features=64, classes=tuple(range(10)), dtype="float64"),
        learner="mlp",
        hyperparameters={"hidden_layer_sizes": [4096, 128], "learning_rate_init": 0.001},
        rounds=2,
        local_epochs=1,
        min_participants=2,
        max_participants=2,
    )
    seats = {s: {"data-path": str(files[s])} for s in files}
    requester, task_id, coordinator = _task(world, tmp_path, spec, seats)
    store = requester.store

    rounds = requester.federation.rounds(task_id)
    assert [r.round for r in rounds] == [1, 2]
    for record in rounds:
        onnx = (coordinator.directory / f"round-{record.round:04d}.onnx").read_bytes()
        assert len(onnx) > MAX_BLOCK_SIZE  # a single raw block could not hold it
        # The chain's digest names the UnixFS root; the root block says so, and the
        # file read back through the verifying exporter is the round's ONNX.
        digest = bytes(record.model_cid.digest)[2:]
        model_cid = blob_cid_for_root(digest, store.get(record.model_cid))
        assert model_cid.codec.name == "dag-pb" and model_cid == blob_cid_for(onnx)
        assert read_blob(store, model_cid) == onnx
        evidence = RoundEvidence.from_json_bytes(store.get(record.round_cid))
        for name in (evidence.previous_model, evidence.step_model):
            assert CID.decode(name).codec.name == "dag-pb"
            assert len(read_blob(store, name)) > MAX_BLOCK_SIZE

    participant = _market(
        tmp_path / "requester-node", world["anvil"], world["deployment"], world["accounts"][3]
    )  # seat 1, reading the coordinator node's store
    report = participant.federation.verify(task_id, data=files[1])
    assert report.seat == 1 and report.shares_checked and report.validation_checked
    assert [v.round for v in report.verdicts] == [1, 2]
    assert all(v.holds for v in report.verdicts)

    # Seat 1 on its own node, with an empty store, fetches everything (the spec, each
    # round's root block, then its chunked model and parameter files as CARs) from the
    # gateway at the provider URL the requester recorded on-chain.
    app = FastAPI()
    app.include_router(create_ipfs_router(store))
    with serve(app) as url:
        requester.contracts.registry.set_provider(url)
        elsewhere = _market(
            tmp_path / "owner1-own-node", world["anvil"], world["deployment"], world["accounts"][3]
        )
        assert not elsewhere.store.has(requester.federation.task(task_id).spec_cid)
        fetched = elsewhere.federation.verify(task_id, data=files[1])
    assert fetched.validation_checked and all(v.holds for v in fetched.verdicts)
    assert elsewhere.store.is_pinned(model_cid)  # round 2's model, fetched whole

    # One chunk of round 2's model changed on disk: the exporter refuses it.
    model_cid = blob_cid_for_root(
        bytes(rounds[1].model_cid.digest)[2:], store.get(rounds[1].model_cid)
    )
    links = decode_node(store.get(model_cid)).links
    leaf = store._path(block_key(cid_from_bytes(bytes(links[1].hash))))
    data = bytearray(leaf.read_bytes())
    data[4096] ^= 0xFF
    leaf.write_bytes(bytes(data))
    with pytest.raises(BlockHashMismatchError):
        participant.federation.verify(task_id)
    # The store moved the damaged chunk aside: it is missing until fetched again.
    with pytest.raises(BlockNotFoundError):
        read_blob(store, model_cid)


def test_local_dp_an_honest_seat_verifies_from_its_kept_updates_and_a_liar_is_caught(
    world: dict[str, Any], tmp_path: Path
) -> None:
    files = _owner_files(tmp_path, 3)
    spec = TaskSpec(
        name="digits with local DP",
        input=InputSchema(n_features=64, classes=tuple(range(10)), dtype="float64"),
        hyperparameters={"alpha": 0.0001, "eta0": 0.01},
        rounds=2,
        local_epochs=2,
        min_participants=2,
        max_participants=3,
        privacy_settings={"local_dp": True, "clipping_norm": 5.0, "local_epsilon": 50.0},
    )
    kept = {s: tmp_path / f"owner{s}-updates" for s in files}
    seats = {s: {"data-path": str(files[s]), "updates-dir": str(kept[s])} for s in files}
    requester, task_id, coordinator = _task(world, tmp_path, spec, seats)
    participant = _market(
        tmp_path / "requester-node", world["anvil"], world["deployment"], world["accounts"][3]
    )  # seat 1

    # One file per round, each the update the coordinator scored for the seat.
    assert sorted(p.name[:10] for p in kept[1].iterdir()) == ["round-0001", "round-0002"]
    evidence = coordinator.evidence(2)
    for record in evidence:
        (path,) = kept[1].glob(f"round-{record.round:04d}-*.bin")
        assert path.stem.endswith(record.update_digests[1])

    # Retraining cannot give the noised update back: --data alone says what to give.
    with pytest.raises(FederationInputError, match="--updates"):
        participant.federation.verify(task_id, data=files[1])
    report = participant.federation.verify(task_id, updates=kept[1])
    assert [v.round for v in report.verdicts] == [1, 2]
    assert all(v.holds and v.digest_matches for v in report.verdicts)
    # Another seat's kept updates are not this seat's.
    with pytest.raises(OwnUpdateMismatchError):
        participant.federation.verify(task_id, updates=kept[0])

    # A coordinator that published another digest, or a lower score, for seat 1 in
    # round 2 (committed on-chain as such) is caught in that round.
    for key, change in (("update_digests", "0" * 64), ("leave_one_out", -0.05)):
        lying = _lie(world, tmp_path, requester, task_id, evidence, key, change)
        with pytest.raises(OwnUpdateMismatchError) as caught:
            participant.federation.verify(lying, updates=kept[1])
        assert caught.value.round == 2

    # The same from the command line, as seat 1: 0 for the honest task, 123 for a liar.
    node = tmp_path / "requester-node"
    world["deployment"].save(node)
    import_keys(node, world["accounts"][1:])
    env = {
        "MERCATO_DATA_DIR": str(node),
        "MERCATO_RPC_URL": world["anvil"].rpc_url,
        "MERCATO_ACCOUNT": world["accounts"][3].address,
        "MERCATO_PASSWORD": PASSWORD,
        "COLUMNS": "200",
    }
    runner = CliRunner()
    honest = runner.invoke(app, ["fl", "verify", str(task_id), "--updates", str(kept[1])], env=env)
    assert honest.exit_code == 0, honest.stderr
    assert "round 2: seat 1 published" in honest.stdout
    lied = ["fl", "verify", str(lying), "--updates", str(kept[1])]
    caught_cli = runner.invoke(app, lied, env=env)
    assert caught_cli.exit_code == 123, caught_cli.stderr
    assert "round 2" in caught_cli.stderr and "seat 1" in caught_cli.stderr


def _lie(
    world: dict[str, Any],
    tmp_path: Path,
    requester: Market,
    honest: int,
    evidence: list[RoundEvidence],
    key: str,
    change: Any,
) -> int:
    """A copy of the honest task whose round 2 evidence changes seat 1's `key`."""
    anvil, deployment, accounts = world["anvil"], world["deployment"], world["accounts"]
    task = requester.federation.task(honest)
    now = int(world["w3"].eth.get_block("latest")["timestamp"])
    lying = requester.federation.create(
        task.spec_cid,
        reward=10**18,
        stake=10**17,
        min_participants=2,
        max_participants=3,
        join_deadline=now + DAY,
        finish_deadline=now + 7 * DAY,
    )
    for seat in range(3):
        owner = _market(tmp_path / f"owner{seat}-node", anvil, deployment, accounts[2 + seat])
        assert owner.federation.join(lying, hashlib.sha256(f"k{seat}".encode()).digest()) == seat
    rounds = requester.federation.rounds(honest)
    coordinator = requester.federation
    from mercato.federation.spec import store_bytes

    for record, committed in zip(evidence, rounds, strict=True):
        document = json.loads(record.to_json_bytes())
        document["task_id"] = lying
        if record.round == 2:
            value = document[key]["1"]
            document[key]["1"] = change if isinstance(change, str) else value + change
            if key == "leave_one_out" and document["method"] == "loo":
                document["scores"]["1"] = document[key]["1"]
        data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        coordinator.commit_round(
            lying,
            record.round,
            committed.model_cid,
            store_bytes(requester.store, data),
            set(committed.contributors),
            committed.metric,
        )
    return lying
