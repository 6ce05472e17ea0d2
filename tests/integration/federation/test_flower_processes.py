# SPDX-License-Identifier: AGPL-3.0-only
"""Real Flower processes on loopback: a SuperLink with TLS and SuperNode authentication,
pinned SuperNodes training digits with Mercato's own app, and a tampered app refused.
No chain here: the on-chain side of a task is tested in test_federation_chain.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from mercato.federation import checkpoint
from mercato.federation.pinning import APP_DIR
from mercato.federation.runtime import SuperLink
from mercato.federation.spec import InputSchema, TaskSpec
from tests.integration.federation.processes import (
    data_owner,
    spec_digest,
    task_directory,
    wait_for,
)

pytestmark = pytest.mark.integration

SPEC = TaskSpec(
    name="digits",
    input=InputSchema(n_features=64, classes=tuple(range(10))),
    rounds=2,
    local_epochs=2,
    min_participants=2,
    max_participants=4,
)


def test_admitted_supernodes_train_rounds_over_tls(tmp_path: Path, superlink: SuperLink) -> None:
    features, labels = load_digits(return_X_y=True)
    features = features / 16.0
    held_out = slice(1500, None)
    parts = [np.flatnonzero(labels[:1500] % 2 == k) for k in range(2)]  # non-IID halves
    nodes: dict[int, int] = {}
    supernodes = []
    for seat, rows in enumerate(parts):
        node, pem = data_owner(tmp_path, f"owner{seat}", features[rows], labels[rows], superlink)
        nodes[superlink.admit(pem)] = seat
        supernodes.append(node)
    # A key nobody admitted: its SuperNode cannot take part.
    intruder, _ = data_owner(tmp_path, "intruder", features[:50], labels[:50], superlink)
    task_dir = task_directory(tmp_path, SPEC, nodes)
    try:
        for node in [*supernodes, intruder]:
            node.start()
        superlink.start_run(task_dir, round_timeout=120, min_replies=2)
        wait_for(lambda: (task_dir / "round-0002.onnx").exists(), 400, "two rounds")
        loaded = checkpoint.load(task_dir, 1, spec_digest(task_dir))
        assert loaded is not None
        state, _ = loaded
        assert state.round == 2
        # Both admitted seats contributed to both rounds, with their own example counts.
        assert [c.examples for c in state.contributions] == [
            {0: len(parts[0]), 1: len(parts[1])}
        ] * 2
        session = ort.InferenceSession((task_dir / "round-0002.onnx").read_bytes())
        predicted = session.run(None, {"X": features[held_out].astype(np.float32)})[0]
        assert np.mean(predicted == labels[held_out]) > 0.8
        assert "Received successfully" not in intruder.log_path.read_text()
    finally:
        for node in [*supernodes, intruder]:
            node.stop()


def test_a_supernode_refuses_an_app_other_than_mercatos(
    tmp_path: Path, superlink: SuperLink
) -> None:
    features, labels = load_digits(return_X_y=True)
    node, pem = data_owner(tmp_path, "owner", features[:200] / 16.0, labels[:200], superlink)
    node_id = superlink.admit(pem)
    # The requester's "app": Mercato's, plus a module of its own the ClientApp would run.
    tampered = tmp_path / "tampered"
    shutil.copytree(APP_DIR, tampered)
    marker = tmp_path / "stolen.txt"
    (tampered / "steal.py").write_text(
        "from flwr.clientapp import ClientApp\n"
        "app = ClientApp()\n"
        f"open({str(marker)!r}, 'w').write('ran')\n"
    )
    pyproject = (tampered / "pyproject.toml").read_text()
    (tampered / "pyproject.toml").write_text(
        pyproject.replace(
            'clientapp = "mercato.federation.client_app:app"', 'clientapp = "steal:app"'
        )
    )
    task_dir = task_directory(tmp_path, SPEC, {node_id: 0})
    try:
        node.start()
        superlink._flwr(
            ["run", str(tampered), "mercato", "--run-config",
             f'task-dir="{task_dir}" round-timeout=30.0 min-replies=1', "--format", "json"]
        )  # fmt: skip
        wait_for(lambda: "REFUSED" in node.log_path.read_text(), 200, "the refusal")
        assert not marker.exists()
        assert not (task_dir / "round-0001.onnx").exists()
    finally:
        node.stop()


@pytest.mark.timeout(1500)  # rounds on 2 shared cores; a restart waits for reconnects
def test_a_supernode_killed_mid_round_does_not_stall_the_task(
    tmp_path: Path, superlink: SuperLink
) -> None:
    features, labels = load_digits(return_X_y=True)
    features = features / 16.0
    nodes: dict[int, int] = {}
    supernodes = []
    for seat, rows in enumerate(np.array_split(np.arange(900), 3)):
        node, pem = data_owner(tmp_path, f"owner{seat}", features[rows], labels[rows], superlink)
        nodes[superlink.admit(pem)] = seat
        supernodes.append(node)
    task_dir = task_directory(tmp_path, SPEC, nodes)
    leaver = supernodes[2]
    try:
        for node in supernodes:
            node.start()
        superlink.start_run(task_dir, round_timeout=45, min_replies=2)
        wait_for(lambda: (task_dir / "round-0001.onnx").exists(), 600, "round 1")
        # Round 2 has reached the leaver: it dies before answering.
        wait_for(lambda: leaver.log_path.read_text().count("Receiving: train") >= 2, 120, "round 2")
        leaver.kill()
        wait_for(lambda: (task_dir / "round-0002.onnx").exists(), 600, "round 2 without it")
        loaded = checkpoint.load(task_dir, 1, spec_digest(task_dir))
        assert loaded is not None
        rounds = [set(c.examples) for c in loaded[0].contributions]
        assert rounds == [{0, 1, 2}, {0, 1}]
    finally:
        for node in supernodes:
            node.stop()


@pytest.mark.timeout(1500)  # rounds on 2 shared cores; a restart waits for reconnects
def test_a_restarted_coordinator_resumes_from_its_last_checkpoint(
    tmp_path: Path, superlink: SuperLink
) -> None:
    features, labels = load_digits(return_X_y=True)
    features = features / 16.0
    nodes: dict[int, int] = {}
    supernodes = []
    for seat, rows in enumerate(np.array_split(np.arange(600), 2)):
        node, pem = data_owner(tmp_path, f"owner{seat}", features[rows], labels[rows], superlink)
        nodes[superlink.admit(pem)] = seat
        supernodes.append(node)
    task_dir = task_directory(tmp_path, SPEC, nodes)
    try:
        for node in supernodes:
            node.start()
        superlink.start_run(task_dir, round_timeout=60, min_replies=2)
        wait_for(lambda: (task_dir / "round-0001.onnx").exists(), 600, "round 1")
        assert superlink.process is not None
        superlink.process.kill()  # the coordinator's machine goes down after round 1
        superlink.process.wait()
        first = (task_dir / "round-0001.onnx").read_bytes()
        superlink.start()  # same data dir: same TLS, same admitted keys
        superlink.start_run(task_dir, round_timeout=60, min_replies=2)
        wait_for(lambda: (task_dir / "round-0002.onnx").exists(), 600, "round 2 after restart")
        loaded = checkpoint.load(task_dir, 1, spec_digest(task_dir))
        assert loaded is not None
        assert [c.round for c in loaded[0].contributions] == [1, 2]
        assert (task_dir / "round-0001.onnx").read_bytes() == first
        # Round 1 ran once: the restarted run began at round 2 (training is seeded, so a
        # redone round 1 would give the same model; its timing line would show it).
        timings = (task_dir / "timings.jsonl").read_text().splitlines()
        assert [json.loads(line)["round"] for line in timings] == [1, 2]
    finally:
        for node in supernodes:
            node.stop()
