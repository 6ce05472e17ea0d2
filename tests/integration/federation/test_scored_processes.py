# SPDX-License-Identifier: AGPL-3.0-only
"""A scored task over real Flower processes on loopback: a SuperLink with TLS and
SuperNode authentication, three pinned SuperNodes (two honest owners and one holding a
label-flipped copy of data), and Mercato's ServerApp scoring each round on the
validation set the coordinator placed in the task's directory. Each round's evidence is
written beside its checkpoint; the flipper is scored 0. No chain here (the task
directory's `no-commit` marker): the commits are tested in test_scored_chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mercato.federation import privacy
from mercato.federation.evidence import RoundEvidence, shares_from_evidence
from mercato.federation.runtime import SuperLink
from mercato.federation.spec import InputSchema, TaskSpec, raw_cid_for
from tests.integration.federation.processes import data_owner, task_directory, wait_for
from tests.unit.federation import rounds as R

pytestmark = pytest.mark.integration


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
        node, pem = data_owner(tmp_path, f"owner{seat}", X, y, superlink, pins=pins)
        nodes[superlink.admit(pem)] = seat
        supernodes.append(node)
    task_dir = task_directory(tmp_path, spec, nodes, validation=validation_bytes)
    try:
        for node in supernodes:
            node.start()
        superlink.start_run(task_dir, round_timeout=300, min_replies=3)
        wait_for(
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
