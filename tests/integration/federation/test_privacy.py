# SPDX-License-Identifier: AGPL-3.0-only
"""What leaves a data owner's machine during a whole task: parameters and two numbers,
never a row of its data. Real SuperLink and SuperNodes; each SuperNode's outgoing
messages and pushed objects are recorded by `capture_supernode`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import MetricRecord
from flwr.supercore.inflatable.inflatable_object import get_object_type_from_object_content
from sklearn.datasets import load_digits

from mercato.chain.anvil import free_port
from mercato.federation.keys import load_or_create_node_key
from mercato.federation.runtime import SuperLink, SuperNode
from tests.integration.federation.processes import task_directory
from tests.integration.federation.test_flower_processes import SPEC

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def test_a_supernode_sends_only_parameters_and_two_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    features, labels = load_digits(return_X_y=True)
    features = features / 16.0
    link = SuperLink(tmp_path / "link", port=free_port())
    link.start()
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    nodes: dict[int, int] = {}
    supernodes = []
    local_rows = []
    try:
        for seat, rows in enumerate(np.array_split(np.arange(600), 2)):
            owner = tmp_path / f"owner{seat}"
            owner.mkdir()
            np.savez(owner / "data.npz", X=features[rows], y=labels[rows])
            local_rows.append(features[rows])
            private, pem = load_or_create_node_key(owner / "federation")
            nodes[link.admit(pem)] = seat
            node = SuperNode(
                owner, superlink=link.address, ca=link.tls.ca, private_key=private,
                data_path=owner / "data.npz", runtime_port=free_port(),
            )  # fmt: skip
            node.args[2] = "tests.integration.federation.capture_supernode"
            supernodes.append(node)
        task = task_directory(tmp_path, SPEC, nodes)
        for seat, node in enumerate(supernodes):
            monkeypatch.setenv("CAPTURE_DIR", str(tmp_path / f"capture{seat}"))
            node.start()
        link.start_run(task, round_timeout=120, min_replies=2)
        deadline = time.monotonic() + 400
        while not (task / f"round-{SPEC.rounds:04d}.onnx").exists():
            assert time.monotonic() < deadline, "the rounds did not finish"
            time.sleep(1)
    finally:
        for node in supernodes:
            node.stop()
        link.stop()

    for seat, rows in enumerate(local_rows):
        capture = tmp_path / f"capture{seat}"
        sent = [json.loads(line) for line in (capture / "messages.jsonl").read_text().splitlines()]
        assert len(sent) == SPEC.rounds  # one answer per round, nothing else
        # The message itself goes out without content; its records follow as objects.
        assert [m["type"] for m in sent] == ["train"] * SPEC.rounds
        pushed = [path.read_bytes() for path in capture.glob("object-*")]
        kinds = [get_object_type_from_object_content(data) for data in pushed]
        allowed = {"Message", "RecordDict", "ArrayRecord", "Array", "ArrayChunk", "MetricRecord"}
        assert set(kinds) <= allowed  # no ConfigRecord, nothing else
        assert kinds.count("Array") >= 2  # the parameters themselves went out
        metrics = [
            MetricRecord.inflate(data)
            for data, kind in zip(pushed, kinds, strict=True)
            if kind == "MetricRecord"
        ]
        assert len(metrics) == SPEC.rounds
        assert all(sorted(m.keys()) == ["num-examples", "train-seconds"] for m in metrics)
        payload = b"\x00".join(pushed)
        for row in rows:
            if not np.any(row):
                continue
            for dtype in (np.float64, np.float32):
                assert np.asarray(row, dtype=dtype).tobytes() not in payload
