# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato fl create --validation`, `fl reveal` and `fl verify` on a real Anvil, with
their exit codes: the validation set's CID goes into the spec and the file stays out of
the served store, reveal is refused before the end (109), verify passes for an honest
coordinator and exits 120 naming the round whose evidence a lying coordinator changed.
Rounds run in process as in test_scored_chain (no Flower processes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mercato.federation.checkpoint import task_dir
from mercato.federation.coordinator import Coordinator
from mercato.federation.spec import load_spec, scoring_of
from mercato.federation.validation import kept_validation
from mercato.storage.cids import parse_cid
from tests.integration.federation.test_scored_chain import ECHO, _run_task
from tests.integration.market.test_federation_cli import Cli, cli  # noqa: F401 (fixture)
from tests.unit.federation import rounds as R

pytestmark = pytest.mark.integration

SPEC = """
name = "digits-scored"
rounds = 3
local_epochs = 2
min_participants = 2
max_participants = 4

[learner]
kind = "sgd"
[learner.hyperparameters]
eta0 = 0.01

[input]
n_features = 64
dtype = "float64"
classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

[scoring]
aggregation = "median"
"""


def _create(
    cli: Cli,  # noqa: F811
    spec: Path,
    validation: Path,
) -> int:
    code, out, err = cli(
        "fl", "create", str(spec), "--reward", "30", "--stake", "1", "--superlink",
        "127.0.0.1:9092", "--validation", str(validation), "--yes", "--json",
    )  # fmt: skip
    assert code == 0, err
    return int(json.loads(out)["task_id"])


def test_create_with_a_validation_set_reveal_and_verify(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    parts, validation, _ = R.digits_split()
    files = {}
    for seat in range(3):
        files[seat] = tmp_path / f"owner{seat}.npz"
        np.savez(files[seat], X=parts[seat].X, y=parts[seat].y)
    np.savez(tmp_path / "validation.npz", X=validation.X, y=validation.y)
    (tmp_path / "task.toml").write_text(SPEC)
    honest = _create(cli, tmp_path / "task.toml", tmp_path / "validation.npz")
    lying = _create(cli, tmp_path / "task.toml", tmp_path / "validation.npz")
    requester = cli.market(1)
    spec = load_spec(requester.store.get(requester.federation.task(honest).spec_cid))
    settings = scoring_of(spec)
    assert settings.aggregation == "median" and settings.validation_cid
    # Committed in the spec, kept privately, not in the store the node serves.
    assert kept_validation(cli.data_dir, settings.validation_cid) is not None
    assert not requester.store.has(parse_cid(settings.validation_cid))

    seats = {s: {"data-path": str(files[s])} for s in range(3)}
    seats[ECHO] = {"cheat": "echo"}
    for task in (honest, lying):
        for seat in range(4):
            # Accounts 2-4 hold the CLI's keystores; the echo seat is a fifth account.
            cli.market(2 + seat).federation.join(task, bytes([seat + 1, task]) * 16)
        coordinator = Coordinator(
            requester.federation,
            requester.store,
            task,
            task_dir(cli.data_dir, requester.chain_id, task),
            validation=kept_validation(cli.data_dir, settings.validation_cid),
        )
        _run_task(coordinator, seats, tamper_round=2 if task == lying else 0)
        code, _, err = cli("fl", "reveal", str(task))
        assert code == 109 and "has not ended" in err, err
        # The default shares of a scored task are its evidence's.
        code, out, err = cli("fl", "finalize", str(task), "--yes", "--json")
        assert code == 0, err
        posted = json.loads(out)["shares"]
        assert posted[ECHO] == 0 and all(posted[s] > 0 for s in range(3)), posted

    code, out, err = cli("fl", "verify", str(honest))
    assert code == 0 and "matches the chain" in out, err
    code, out, err = cli("fl", "reveal", str(honest))
    assert code == 0 and settings.validation_cid in out, err
    code, out, err = cli("fl", "verify", str(honest), "--data", str(files[0]), who=2)
    assert code == 0 and "round 3: seat 0 published" in out, err
    assert "finalized shares are what the published scores give" in out
    code, out, err = cli("fl", "verify", str(lying), "--data", str(files[1]), who=3)
    assert code == 120 and "round 2" in err and "seat 1" in err, (out, err)
