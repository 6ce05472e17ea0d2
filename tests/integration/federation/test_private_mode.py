# SPDX-License-Identifier: AGPL-3.0-only
"""A private task over real Flower processes on loopback: a SuperLink with TLS and
SuperNode authentication, three pinned SuperNodes started with the task's privacy pins,
and SecAgg+ and DP rounds run by Mercato's ServerApp. Drop-outs and what the coordinator
receives are checked message by message in tests/unit/federation/test_privacy.py.
No chain here (the coordinator's commits are skipped with the task directory's
`no-commit` marker)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from mercato.chain.anvil import free_port
from mercato.federation import checkpoint, learning, privacy
from mercato.federation.keys import load_or_create_node_key
from mercato.federation.runtime import SuperLink, SuperNode
from mercato.federation.spec import InputSchema, TaskSpec

pytestmark = pytest.mark.integration

SPEC = TaskSpec(
    name="digits-private",
    input=InputSchema(n_features=64, classes=tuple(range(10))),
    rounds=2,
    local_epochs=2,
    min_participants=3,
    max_participants=4,
    privacy="private",
    privacy_settings={"clipping_norm": 5.0, "noise_multiplier": 0.1},
)


def _wait(predicate: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def superlink(tmp_path: Path) -> Iterator[SuperLink]:
    link = SuperLink(tmp_path / "link", port=free_port())
    link.start()
    yield link
    link.stop()


@pytest.mark.timeout(1500)  # SecAgg+ is four exchanges a round on 2 shared cores
def test_private_rounds_over_real_processes_record_each_seat_once_with_equal_shares(
    tmp_path: Path, superlink: SuperLink
) -> None:
    features, labels = load_digits(return_X_y=True)
    features = features / 16.0
    held_out = slice(1500, None)
    pins = privacy.node_config_for(SPEC.to_json_bytes(), SPEC.privacy)
    nodes: dict[int, int] = {}
    supernodes = []
    for seat in range(3):
        rows = np.flatnonzero(labels[:1500] % 3 == seat)
        directory = tmp_path / f"owner{seat}"
        directory.mkdir()
        np.savez(directory / "data.npz", X=features[rows], y=labels[rows])
        private, pem = load_or_create_node_key(directory / "federation")
        nodes[superlink.admit(pem)] = seat
        supernodes.append(
            SuperNode(
                directory,
                superlink=superlink.address,
                ca=superlink.tls.ca,
                private_key=private,
                data_path=directory / "data.npz",
                runtime_port=free_port(),
                task_pins=pins,
            )
        )
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "spec.json").write_bytes(SPEC.to_json_bytes())
    (task_dir / "task.json").write_text(json.dumps({"task_id": 1}))
    (task_dir / "nodes.json").write_text(json.dumps({str(k): v for k, v in nodes.items()}))
    (task_dir / "no-commit").touch()
    start = learning.initial_params(SPEC)
    np.savez(task_dir / "initial.npz", **{f"p{i}": p for i, p in enumerate(start)})  # type: ignore[arg-type]
    try:
        for node in supernodes:
            node.start()
        superlink.start_run(task_dir, round_timeout=60, min_replies=3)
        _wait(lambda: (task_dir / "round-0002.onnx").exists(), 900, "two private rounds")
        digest = hashlib.sha256(SPEC.to_json_bytes()).hexdigest()
        loaded = checkpoint.load(task_dir, 1, digest)
        assert loaded is not None
        state, _ = loaded
        # Every seat's masked update was in both aggregates, each with weight 1.
        assert [c.examples for c in state.contributions] == [{0: 1, 1: 1, 2: 1}] * 2
        assert privacy.CompletedEveryRoundScorer().shares(3, state.contributions) == [
            3334,
            3333,
            3333,
        ]
        session = ort.InferenceSession((task_dir / "round-0002.onnx").read_bytes())
        predicted = session.run(None, {"X": features[held_out].astype(np.float32)})[0]
        # Two rounds of clipped, noised updates: well above chance (0.1), not converged.
        assert np.mean(predicted == labels[held_out]) > 0.3
        # No SuperNode had to refuse a request (its pins matched the spec it was sent).
        for node in supernodes:
            log = node.log_path.read_text()
            assert "REFUSED" not in log
        assert privacy.task_epsilon(SPEC, state.round) is not None
    finally:
        for node in supernodes:
            node.stop()
