# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato fl show` on a real Anvil tells a data owner how a task pays and what its
model survives before it joins: scored or not, the aggregation and the hostile updates
it keeps out, the valuation, the Sybil threshold and the validation set's CID."""

from __future__ import annotations

import json

import pytest

from mercato.federation.spec import InputSchema, TaskSpec, raw_cid_for, store_spec
from tests.integration.market.test_federation_cli import Cli, cli  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
TOKEN = 10**18


def _create(cli: Cli, spec: TaskSpec) -> int:  # noqa: F811
    requester = cli.market(1)
    now = int(requester.w3.eth.get_block("latest")["timestamp"])
    return int(
        requester.federation.create(
            store_spec(requester.store, spec),
            reward=30 * TOKEN,
            stake=TOKEN,
            min_participants=spec.min_participants,
            max_participants=spec.max_participants,
            join_deadline=now + 3600,
            finish_deadline=now + 86_400,
        )
    )


def test_fl_show_prints_the_scoring_settings(cli: Cli) -> None:  # noqa: F811
    validation = str(raw_cid_for(b"validation rows"))
    base = {
        "name": "scored-digits",
        "input": InputSchema(n_features=64, classes=tuple(range(10))),
        "min_participants": 4,
        "max_participants": 6,
    }
    scored = _create(cli, TaskSpec(**base, scoring={"validation_cid": validation}))  # type: ignore[arg-type]
    code, out, err = cli("fl", "show", str(scored))
    assert code == 0, err
    text = " ".join(out.split())  # the table wraps long values
    assert "Scoring scored: paid by measured contribution" in text
    assert "keeps out 1 hostile update(s) when 4 seats reply, 2 when 6 do" in text
    assert "Valuation auto: exact Shapley while 2^players fits in 256" in text
    assert "Sybil threshold 0.98 mean cosine" in text
    assert f"Validation set {validation}" in text
    code, out, err = cli("fl", "show", str(scored), "--json")
    assert code == 0, err
    scoring = json.loads(out)["scoring"]  # the settings in effect, defaults filled in
    assert scoring["aggregation"] == "trimmed_mean" and scoring["valuation"] == "auto"
    assert scoring["validation_cid"] == validation and scoring["evaluations_per_round"] == 256

    plain = _create(cli, TaskSpec(**base))  # type: ignore[arg-type]
    code, out, err = cli("fl", "show", str(plain))
    assert code == 0, err
    text = " ".join(out.split())
    assert "Scoring unscored (no validation set)" in text
    assert "Valuation" not in text
    code, out, err = cli("fl", "show", str(plain), "--json")
    assert code == 0 and json.loads(out)["scoring"] is None, err
