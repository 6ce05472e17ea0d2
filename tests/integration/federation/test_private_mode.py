# SPDX-License-Identifier: AGPL-3.0-only
"""A private task over real Flower processes on loopback: a SuperLink with TLS and
SuperNode authentication, three pinned SuperNodes started with the task's privacy pins,
and SecAgg+ and DP rounds run by Mercato's ServerApp. Drop-outs and what the coordinator
receives are checked message by message in tests/unit/federation/test_privacy.py.
No chain here (the coordinator's commits are skipped with the task directory's
`no-commit` marker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from mercato.federation import checkpoint, privacy
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
    name="digits-private",
    input=InputSchema(n_features=64, classes=tuple(range(10))),
    rounds=2,
    local_epochs=2,
    min_participants=3,
    max_participants=4,
    privacy="private",
    privacy_settings={"clipping_norm": 5.0, "noise_multiplier": 0.1},
)


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
        node, pem = data_owner(
            tmp_path, f"owner{seat}", features[rows], labels[rows], superlink, pins=pins
        )
        nodes[superlink.admit(pem)] = seat
        supernodes.append(node)
    task_dir = task_directory(tmp_path, SPEC, nodes)
    try:
        for node in supernodes:
            node.start()
        superlink.start_run(task_dir, round_timeout=60, min_replies=3)
        wait_for(lambda: (task_dir / "round-0002.onnx").exists(), 900, "two private rounds")
        loaded = checkpoint.load(task_dir, 1, spec_digest(task_dir))
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
