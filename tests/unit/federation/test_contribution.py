# SPDX-License-Identifier: AGPL-3.0-only
"""Contribution scores, robust aggregation and cheater checks on a real (small) federated
run: scikit-learn's digits split non-IID over four honest data owners."""

from __future__ import annotations

import numpy as np
import pytest

from mercato.errors import FederationSpecError
from mercato.federation.contribution import (
    AggregationRule,
    CoalitionValue,
    Params,
    Update,
    exact_shapley,
    free_riders,
    leave_one_out,
    shapley,
    shares_bps,
    tmc_shapley,
)

from . import rounds as R

PARTS, VALIDATION, TEST = R.digits_split()
EXAMPLES = {seat: len(part.y) for seat, part in enumerate(PARTS)}
HONEST = {seat: R.honest(part, seed=seat) for seat, part in enumerate(PARTS)}
ROBUST = AggregationRule()  # the default: the trimmed mean, its cut rounded up
FEDAVG = AggregationRule(name="fedavg")


def _run(extra: dict[int, R.Train], rule: AggregationRule = ROBUST, **kwargs: object) -> R.Run:
    """A run as a scored task makes it: the robust rule over the updates worth
    aggregating (`worth_aggregating`); FedAvg alone, as an unscored task runs it."""
    trainers = {**HONEST, **extra}
    examples = {**EXAMPLES, **dict.fromkeys(extra, 300)}
    kwargs.setdefault("leave_out_worthless", rule is ROBUST)
    return R.federate(trainers, examples, VALIDATION, rule=rule, **kwargs)  # type: ignore[arg-type]


def test_echo_and_noise_free_riders_get_no_share_and_every_honest_participant_does() -> None:
    run = _run({4: R.echo(), 5: R.noise()})
    shares = shares_bps(run.totals)
    assert run.totals[4] == 0.0  # an echo adds exactly nothing to the round's step
    assert free_riders(shares) == {4, 5}
    assert all(shares[seat] > 0 for seat in HONEST)
    assert sum(shares.values()) == 10_000


def test_a_sybil_pair_shares_one_participants_credit_not_two() -> None:
    twin = {4: R.honest(PARTS[0], seed=0)}  # partition 0 joined again from another address
    # The same models in both runs (the rule alone: with the updates worth aggregating,
    # a detected pair also goes into the model once, so the runs would differ).
    detected = _run(twin, leave_out_worthless=False)
    blind = _run(twin, sybil_threshold=1.01, leave_out_worthless=False)  # detection off
    assert detected.sybil.groups() == [{0, 4}]
    pair = detected.totals[0] + detected.totals[4]
    assert detected.totals[0] == detected.totals[4]
    assert pair < 0.75 * (blind.totals[0] + blind.totals[4])
    # Honest participants with their own data are never taken for a pair.
    clean = _run({})
    assert clean.sybil.groups() == []
    assert all(
        (clean.sybil.similarity(a, b) or 0) < clean.sybil.threshold
        for a in HONEST
        for b in HONEST
        if a < b
    )


def test_robust_aggregation_survives_a_poisoner_that_wrecks_fedavg() -> None:
    poisoner = {4: R.scaler(PARTS[0], factor=-10.0)}
    robust_clean = R.accuracy(_run({}).final, TEST)
    robust_poisoned_run = _run(poisoner)
    fedavg_clean = R.accuracy(_run({}, FEDAVG).final, TEST)
    fedavg_poisoned = R.accuracy(_run(poisoner, FEDAVG).final, TEST)
    assert abs(R.accuracy(robust_poisoned_run.final, TEST) - robust_clean) <= 0.02
    assert fedavg_clean - fedavg_poisoned > 0.10
    assert shares_bps(robust_poisoned_run.totals)[4] == 0


def test_a_label_flipping_poisoner_earns_nothing() -> None:
    run = _run({4: R.label_flipper(PARTS[1])})
    shares = shares_bps(run.totals)
    assert run.totals[4] < 0 and shares[4] == 0
    assert all(shares[seat] > 0 for seat in HONEST)


def test_claiming_more_examples_or_sending_an_update_twice_earns_nothing_more() -> None:
    honest_claims = _run({})
    inflated = R.federate(HONEST, {**EXAMPLES, 0: 100 * EXAMPLES[0]}, VALIDATION, rule=ROBUST)
    assert shares_bps(inflated.totals) == shares_bps(honest_claims.totals)

    previous = R.initial_params()
    updates = [Update(s, HONEST[s](previous, 1), EXAMPLES[s]) for s in HONEST]
    again = [*updates, Update(0, HONEST[0](previous, 2), EXAMPLES[0])]  # seat 0 sends twice
    once = exact_shapley(CoalitionValue(previous, updates, lambda p: R.accuracy(p, VALIDATION)))
    twice = exact_shapley(CoalitionValue(previous, again, lambda p: R.accuracy(p, VALIDATION)))
    assert once == twice
    assert ROBUST.aggregate(again[:4])[0].tolist() == ROBUST.aggregate(updates)[0].tolist()


def test_tmc_shapley_comes_close_to_exact_shapley_at_six_participants() -> None:
    previous = R.initial_params()
    six = {**HONEST, 4: R.honest(PARTS[1], seed=7), 5: R.noise(scale=0.05)}
    updates = [Update(s, train(previous, 1), 300) for s, train in six.items()]

    def value() -> CoalitionValue:
        return CoalitionValue(previous, updates, lambda p: R.accuracy(p, VALIDATION))

    exact = exact_shapley(value())
    sampled = value()
    estimate = tmc_shapley(sampled, budget=24, rng=np.random.default_rng(3))
    # Every order's marginals add up to what the whole round adds: so do the estimates.
    assert sum(estimate.values()) == pytest.approx(sampled(sampled.everyone) - sampled(()))
    assert sampled.evaluations <= 24 + 2 + 2 * len(six)  # budget, v(all), v(()), one last pair
    # Given every coalition, many orders: the estimate converges on the exact values.
    converged = tmc_shapley(value(), budget=2**6, rng=np.random.default_rng(3))
    exact_bps = shares_bps(exact, min_contribution=0)
    converged_bps = shares_bps(converged, min_contribution=0)
    assert sum(abs(exact_bps[s] - converged_bps[s]) for s in exact) / len(exact) < 100
    assert shapley(value(), budget=64) == exact_shapley(value())  # 2^6 fits: exact


def test_leave_one_out_is_what_the_round_loses_without_each_player() -> None:
    previous: Params = [np.zeros(3)]
    updates = [Update(s, [np.eye(3)[s] * 3.0], 1) for s in range(3)]
    # The metric: how many coordinates moved above 0.5 (each update moves its own).
    value = CoalitionValue(previous, updates, lambda p: float(np.sum(p[0] > 0.5)))
    assert leave_one_out(value) == {0: 1.0, 1: 1.0, 2: 1.0}
    assert value({0, 1}) == 2.0 and value(set()) == 0.0
    grouped = CoalitionValue(previous, updates, lambda p: float(np.sum(p[0] > 0.5)), [{0, 1}])
    assert [set(p) for p in grouped.players] == [{0, 1}, {2}]


def test_shares_add_up_to_ten_thousand_and_totals_at_or_below_the_floor_get_nothing() -> None:
    shares = shares_bps({0: 1.0, 1: 1.0, 2: 1.0, 3: 0.0, 4: -2.0, 5: 0.005})
    assert sum(shares.values()) == 10_000
    assert shares[3] == shares[4] == shares[5] == 0
    assert sorted(shares[s] for s in (0, 1, 2)) == [3333, 3333, 3334]
    assert shares_bps({0: 0.0, 1: -1.0}) == {0: 0, 1: 0}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"name": "fedsomething"}, "Unknown aggregation rule"),
        ({"trim_fraction": 0.5}, "trim_fraction"),
        ({"num_malicious": -1}, "cannot be negative"),
    ],
)
def test_a_bad_aggregation_setting_is_a_typed_error(
    setting: dict[str, object], message: str
) -> None:
    with pytest.raises(FederationSpecError, match=message):
        AggregationRule(**setting)  # type: ignore[arg-type]
