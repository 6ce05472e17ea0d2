# SPDX-License-Identifier: AGPL-3.0-only
"""A round short of updates is sent again instead of ending the task, and a run that
does end says why in the task's directory.

Mercato's real ServerApp loop and ClientApp in one process; only the transport is
replaced (`inprocess.InProcessGrid`, Flower's own message serialisation). Its
`silent_calls` stands in for SuperNodes that are still reconnecting after a SuperLink
restart: the restarted SuperLink lists them as online, but nobody answers. The same
restart over real processes is
`tests/integration/federation/test_flower_processes.py::test_a_restarted_coordinator_resumes_from_its_last_checkpoint`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from sklearn.datasets import load_digits

from mercato.errors import FederationError
from mercato.federation import checkpoint, privacy, server_app
from mercato.federation.client_app import app as client_app
from mercato.federation.learning import initial_params
from mercato.federation.server_app import FAILED, NO_COMMIT, TIMINGS, run_rounds
from mercato.federation.spec import InputSchema, TaskSpec
from tests.unit.federation.inprocess import RUN_ID, InProcessGrid, server_identity

SPEC = TaskSpec(
    name="digits",
    input=InputSchema(n_features=64, classes=tuple(range(10))),
    rounds=2,
    local_epochs=1,
    min_participants=2,
    max_participants=2,
)


def _task(root: Path) -> tuple[Path, InProcessGrid]:
    """A two-seat unscored task directory and a grid of two real ClientApps."""
    features, labels = load_digits(return_X_y=True)
    pins = privacy.node_config_for(SPEC.to_json_bytes(), SPEC.privacy)
    configs = {}
    for seat in range(2):
        path = root / f"owner{seat}.npz"
        rows = np.arange(seat * 300, seat * 300 + 300)
        np.savez(path, X=features[rows] / 16.0, y=labels[rows])
        configs[100 + seat] = {"data-path": str(path), **pins}
    directory = root / "task"
    directory.mkdir()
    (directory / "spec.json").write_bytes(SPEC.to_json_bytes())
    (directory / "task.json").write_text(json.dumps({"task_id": 3}))
    (directory / NO_COMMIT).write_text("")
    (directory / "nodes.json").write_text(json.dumps({"100": 0, "101": 1}))
    start = initial_params(SPEC)
    np.savez(directory / "initial.npz", **{f"p{i}": p for i, p in enumerate(start)})  # type: ignore[arg-type]
    return directory, InProcessGrid(client_app, configs)


def _rounds_done(directory: Path) -> list[int]:
    digest = hashlib.sha256(SPEC.to_json_bytes()).hexdigest()
    loaded = checkpoint.load(directory, 3, digest)
    assert loaded is not None
    return [c.round for c in loaded[0].contributions]


def test_a_round_nobody_answered_is_sent_again_and_kept_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_app, "RETRY_PAUSE_SECONDS", 0.0)
    directory, grid = _task(tmp_path)
    grid.silent_calls = 2  # round 1's first two attempts: the nodes are not back yet
    with server_identity():
        run_rounds(grid, directory, timeout=5, min_replies=2, retry_seconds=60)
    assert _rounds_done(directory) == [1, 2]
    timings = [json.loads(line)["round"] for line in (directory / TIMINGS).read_text().splitlines()]
    assert timings == [1, 2]
    # Only the attempt that was answered reached the ClientApps: two replies per round.
    assert len(grid.received) == 4


def test_a_round_still_short_after_the_retry_window_ends_the_run_and_says_where_it_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_app, "RETRY_PAUSE_SECONDS", 0.0)
    directory, grid = _task(tmp_path)
    grid.dropped["2"] = {101}  # seat 1 is gone for good in round 2
    with server_identity(), pytest.raises(FederationError, match="resumes at round 2"):
        run_rounds(grid, directory, timeout=5, min_replies=2, retry_seconds=0.0)
    assert _rounds_done(directory) == [1]  # round 1 is kept; nothing of round 2 is
    assert not (directory / "round-0002.onnx").exists()


def test_the_server_app_writes_why_its_run_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_app, "RETRY_PAUSE_SECONDS", 0.0)
    directory, grid = _task(tmp_path)
    grid.dropped["1"] = {101}
    run_config = {
        "task-dir": str(directory),
        "round-timeout": 5.0,
        "min-replies": 2,
        "retry-seconds": 0.0,
    }
    context = Context(RUN_ID, 0, {}, RecordDict(), run_config)
    with server_identity(), pytest.raises(FederationError):
        server_app.main(grid, context)
    error = json.loads((directory / FAILED).read_text())["error"]
    assert error.startswith("FederationError: Round 1 got 1 usable updates")
