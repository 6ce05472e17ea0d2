# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato fl` on a real Anvil: a spec that starts from a paid model the requester
holds no licence for is refused before anything is escrowed, and a private task's
privacy budget shows in `fl show` and `fl status` as rounds are committed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from mercato.client import Market
from mercato.config import Settings
from mercato.federation.privacy import settings_of, task_epsilon
from mercato.federation.spec import InputSchema, TaskSpec, raw_cid_for, store_spec
from tests.integration.market.test_federation_cli import Cli, cli  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
TOKEN = 10**18
CARD = """---
license: mit
---
# Digits logreg

A logistic regression on 8x8 digits, exported with skl2onnx's defaults.

## Uses

Classifies 64 pixel intensities into the digits 0-9.

## Bias, Risks, and Limitations

Trained on one small public set; check it on your own data first.
"""


def test_a_paid_parent_without_a_licence_is_refused_before_the_reward_is_escrowed(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    creator = Account.create()
    w3 = cli.market(1).w3
    w3.provider.make_request("anvil_setBalance", [creator.address, hex(10**20)])  # type: ignore[arg-type]
    x, y = load_digits(return_X_y=True)
    package = tmp_path / "parent"
    package.mkdir()
    model = LogisticRegression(max_iter=200).fit(x / 16.0, y)
    (package / "model.onnx").write_bytes(
        to_onnx(model, (x[:1] / 16).astype("float32")).SerializeToString()
    )
    (package / "README.md").write_text(CARD)
    seller = Market(
        Settings(data_dir=tmp_path / "creator", rpc_url=cli.rpc_url),
        account=creator,
        deployment=cli.deployment,
    )
    parent = int(seller.models.publish(package, price=4 * TOKEN).model_id)

    spec = tmp_path / "task.toml"
    spec.write_text(
        'name = "fine-tune-digits"\nrounds = 2\nmin_participants = 1\nmax_participants = 2\n'
        'parent_royalty_bps = 500\n\n[learner]\nkind = "logistic_regression"\n\n'
        "[input]\nn_features = 64\nclasses = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n\n"
        f"[initial_model]\nmodel_id = {parent}\nversion = 1\n"
    )
    requester = cli.market(1)
    balance = requester.contracts.token.balance_of(cli.accounts[1].address)
    code, _, err = cli(
        "fl", "create", str(spec), "--reward", "30", "--superlink", "127.0.0.1:9092", "--yes"
    )
    assert code == 101, err
    assert f"mercato buy {parent}" in err and f"initial model {parent} version 1" in err
    assert requester.contracts.token.balance_of(cli.accounts[1].address) == balance
    assert requester.federation.tasks() == []


def test_a_private_tasks_budget_shows_in_fl_show_and_status(cli: Cli) -> None:  # noqa: F811
    requester = cli.market(1)
    spec = TaskSpec(
        name="private-digits",
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        rounds=3,
        min_participants=3,
        max_participants=3,
        privacy="private",
        privacy_settings={"noise_multiplier": 2.0},
    )
    now = int(requester.w3.eth.get_block("latest")["timestamp"])
    task = requester.federation.create(
        store_spec(requester.store, spec),
        reward=30 * TOKEN,
        stake=TOKEN,
        min_participants=3,
        max_participants=3,
        join_deadline=now + 3600,
        finish_deadline=now + 86_400,
    )
    for who in (2, 3, 4):
        cli.market(who).federation.join(task, bytes([who]) * 32)
    code, out, err = cli("fl", "show", str(task))
    assert code == 0, err
    planned = task_epsilon(spec, 3)
    assert planned is not None
    assert f"epsilon 0 after 0 round(s), delta 1e-05; epsilon {planned:.3g} after all 3" in out

    requester.federation.commit_round(
        task, 1, raw_cid_for(b"m1"), raw_cid_for(b"r1"), {0, 1, 2}, 0.5
    )
    code, out, err = cli("fl", "status", str(task), "--json")
    assert code == 0, err
    budget = json.loads(out)["privacy"]
    assert budget["epsilon"] == pytest.approx(task_epsilon(spec, 1))
    assert (budget["rounds"], budget["delta"]) == (1, settings_of(spec).delta)
    code, out, _ = cli("fl", "status", str(task))
    assert code == 0 and f"Privacy budget: epsilon {task_epsilon(spec, 1):.3g} after 1" in out
