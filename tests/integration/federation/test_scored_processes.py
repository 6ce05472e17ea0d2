# SPDX-License-Identifier: AGPL-3.0-only
"""A scored task over real Flower processes on loopback: a SuperLink with TLS and
SuperNode authentication, three pinned SuperNodes (two honest owners and one holding a
label-flipped copy of data), and Mercato's ServerApp scoring each round on the
validation set the coordinator placed in the task's directory. Each round's evidence is
written beside its checkpoint; the flipper is scored 0. No chain here (the task
directory's `no-commit` marker): the commits are tested in test_scored_chain."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mercato.chain.anvil import free_port
from mercato.federation import learning, privacy
from mercato.federation.evidence import RoundEvidence, shares_from_evidence
from mercato.federation.keys import load_or_create_node_key
from mercato.federation.runtime import SuperLink, SuperNode
from mercato.federation.spec import InputSchema, TaskSpec, raw_cid_for
from tests.unit.federation import rounds as R

pytestmark = pytest.mark.integration


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


@pytest.mark.timeout(1500)
def test_scored_rounds_over_real_processes_write_evidence_and_zero_a_poisoner(
    tmp_path: Path, superlink: SuperLink
) -> None:
    parts, validation, _ = R.digits_split()
    np.savez(tmp_path / "validation.npz", X=validation.X, y=validation.y)
    validation_bytes = (tmp_path / "validation.npz").read_bytes()
    spec = TaskSpec(
        name="digits-scored",
        input=InputSchema(n_features=64, classes=tuple(range(10)), dtype="float64"),
        hyperparameters={"eta0": 0.01},
        rounds=2,
        local_epochs=2,
        min_participants=3,
        max_participants=3,
        scoring={"validation_cid": str(raw_cid_for(validation_bytes)), "aggregation": "median"},
    )
    files = {0: (parts[1].X, parts[1].y), 1: (parts[2].X, parts[2].y)}
    files[2] = (parts[0].X, (parts[0].y + 4) % 10)  # the poisoner: flipped labels
    pins = privacy.node_config_for(spec.to_json_bytes(), spec.privacy)
    nodes: dict[int, int] = {}
    supernodes = []
    for seat, (X, y) in files.items():
        directory = tmp_path / f"owner{seat}"
        directory.mkdir()
        np.savez(directory / "data.npz", X=X, y=y)
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
    (task_dir / "spec.json").write_bytes(spec.to_json_bytes())
    (task_dir / "task.json").write_text(json.dumps({"task_id": 1}))
    (task_dir / "nodes.json").write_text(json.dumps({str(k): v for k, v in nodes.items()}))
    (task_dir / "no-commit").touch()
    (task_dir / "validation.npz").write_bytes(validation_bytes)
    start = learning.initial_params(spec)
    np.savez(task_dir / "initial.npz", **{f"p{i}": p for i, p in enumerate(start)})  # type: ignore[arg-type]
    try:
        for node in supernodes:
            node.start()
        superlink.start_run(task_dir, round_timeout=300, min_replies=3)
        _wait(
            lambda: (
                (task_dir / "state.json").exists()
                and (json.loads((task_dir / "state.json").read_text())["round"] == 2)
            ),
            1200,
            "two scored rounds",
        )
        evidence = [
            RoundEvidence.from_json_bytes((task_dir / f"evidence-{n:04d}.json").read_bytes())
            for n in (1, 2)
        ]
        for record in evidence:
            assert record.validation == spec.scoring["validation_cid"]
            assert record.rule["name"] == "fedmedian"
            assert set(record.update_digests) == {0, 1, 2}
        shares = shares_from_evidence(evidence, 3)
        assert shares[2] == 0 and shares[0] > 0 and shares[1] > 0
        for node in supernodes:
            assert "REFUSED" not in node.log_path.read_text()
    finally:
        for node in supernodes:
            node.stop()
