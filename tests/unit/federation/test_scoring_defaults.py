# SPDX-License-Identifier: AGPL-3.0-only
"""The scored mode's defaults on a real (small) federated run: scikit-learn's digits split
non-IID over six honest data owners whose classes overlap two by two.

- the default valuation ("auto": exact Shapley while 2^players evaluations fit in the
  budget) pays every honest owner, where leave-one-out leaves some at 0 (and a share of
  0 forfeits the stake);
- the trimmed mean cuts its fraction of the replies rounded up, so two poisoners among
  six seats are cut where Flower's rounding down keeps one;
- updates that moved nothing or cost over five points this round are left out of the
  model, so echo free-riders do not slow it and poisoners do not bend it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from flwr.server.strategy.aggregate import aggregate_trimmed_avg

from mercato.errors import FederationEvidenceError, FederationSpecError
from mercato.federation.contribution import (
    AggregationRule,
    CoalitionValue,
    Update,
    auto_method,
    leave_one_out,
    shapley,
    shares_bps,
    tolerated_bad_seats,
    trimmed_mean,
    trimmed_per_side,
    worth_aggregating,
)
from mercato.federation.evidence import (
    RoundEvidence,
    check_round_evidence,
    check_shapley_total,
    round_method,
)
from mercato.federation.spec import InputSchema, TaskSpec, raw_cid_for, scoring_of

from . import rounds as R

SIX, VALIDATION6, _ = R.digits_split(owners=6)
PARTS, VALIDATION, TEST = R.digits_split()
ROBUST = AggregationRule()
FEDAVG = AggregationRule(name="fedavg")


def _spec(max_participants: int = 8, **scoring: object) -> TaskSpec:
    return TaskSpec(
        name="digits",
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        max_participants=max_participants,
        scoring={"validation_cid": str(raw_cid_for(b"rows")), **scoring},
    )


def _default(value: CoalitionValue) -> dict[int, float]:
    """What `evidence.score_round` does under the default settings."""
    settings = scoring_of(_spec())
    assert round_method(settings, len(value.players)) == "exact"
    return shapley(value, budget=settings.evaluations_per_round)


def test_leave_one_out_zeroes_an_honest_owner_the_default_pays_every_one() -> None:
    """Owners 0 and 4 hold the same classes, and so do 1 and 5: leaving either of a
    pair out changes little, so leave-one-out credits little."""
    trainers = {seat: R.honest(part, seed=seat) for seat, part in enumerate(SIX)}
    examples = {seat: len(part.y) for seat, part in enumerate(SIX)}
    loo = R.federate(trainers, examples, VALIDATION6, rule=ROBUST, score=leave_one_out)
    default = R.federate(trainers, examples, VALIDATION6, rule=ROBUST, score=_default)
    assert 0 in shares_bps(loo.totals).values(), loo.totals  # an honest owner forfeits
    shares = shares_bps(default.totals)
    assert all(bps > 0 for bps in shares.values()), shares
    assert scoring_of(_spec()).valuation == "auto"


def test_auto_is_exact_while_the_budget_allows_and_tmc_above() -> None:
    assert auto_method(8, 256) == "exact"
    assert auto_method(9, 256) == "tmc_shapley"
    assert auto_method(4, 16) == "exact"
    assert auto_method(13, 10_000) == "tmc_shapley"  # exact is never run past 12
    settings = scoring_of(_spec(max_participants=100))  # auto allows any seat count
    assert round_method(settings, 20) == "tmc_shapley"
    assert round_method(dataclasses.replace(settings, valuation="loo"), 3) == "loo"
    with pytest.raises(FederationSpecError, match="'exact'"):
        _spec(max_participants=20, valuation="exact")


def _record(players: int, method: str) -> RoundEvidence:
    seats = range(players)
    return RoundEvidence(
        task_id=9,
        round=1,
        method=method,
        rule=dataclasses.asdict(ROBUST),
        previous_model="a",
        step_model="b",
        players=[[s] for s in seats],
        update_digests=dict.fromkeys(seats, "d"),
        scores=dict.fromkeys(seats, 0.1),
        leave_one_out=dict.fromkeys(seats, 0.1),
        validation=str(raw_cid_for(b"rows")),
    )


def test_evidence_must_name_the_method_auto_means_for_its_players() -> None:
    settings = scoring_of(_spec())
    check_round_evidence(
        _record(8, "exact"), task_id=9, round=1, contributors=frozenset(range(8)), settings=settings
    )
    with pytest.raises(FederationEvidenceError, match="means 'exact' for a round of 8"):
        check_round_evidence(
            _record(8, "loo"),
            task_id=9,
            round=1,
            contributors=frozenset(range(8)),
            settings=settings,
        )
    with pytest.raises(FederationEvidenceError, match="means 'tmc_shapley' for a round of 9"):
        check_round_evidence(
            _record(9, "exact"),
            task_id=9,
            round=1,
            contributors=frozenset(range(9)),
            settings=settings,
        )


def test_shapley_scores_must_add_up_to_what_the_round_gained() -> None:
    previous = R.initial_params()
    updates = [Update(s, R.honest(PARTS[s], seed=s)(previous, 1), 1) for s in range(4)]
    value = CoalitionValue(previous, updates, lambda p: R.accuracy(p, VALIDATION))
    scores = shapley(value, budget=256)
    step = value.model(value.everyone)
    record = dataclasses.replace(_record(4, "exact"), scores=scores)
    check = dict(previous=previous, step_model=step, evaluate=lambda p: R.accuracy(p, VALIDATION))
    check_shapley_total(record, **check)  # type: ignore[arg-type]
    # TMC too: along every order the marginal values add up to the round's gain.
    tmc = shapley(value, budget=8, rng=np.random.default_rng(3))
    check_shapley_total(dataclasses.replace(record, method="tmc_shapley", scores=tmc), **check)  # type: ignore[arg-type]
    lowered = {**scores, 1: scores[1] - 0.01}  # one seat paid less, nobody more
    with pytest.raises(FederationEvidenceError, match="add up to"):
        check_shapley_total(dataclasses.replace(record, scores=lowered), **check)  # type: ignore[arg-type]


def test_the_trimmed_mean_cuts_its_fraction_of_the_replies_rounded_up() -> None:
    assert [trimmed_per_side(0.25, n) for n in (1, 2, 3, 4, 5, 6, 8, 9, 12)] == [
        0, 0, 1, 1, 2, 2, 2, 3, 3,
    ]  # fmt: skip
    assert trimmed_per_side(0.0, 6) == 0
    assert trimmed_per_side(0.49, 4) == 1  # never so many that nothing is left
    assert tolerated_bad_seats("trimmed_mean", 0.25, 1, 6) == 2
    assert tolerated_bad_seats("median", 0.25, 1, 6) == 2
    assert tolerated_bad_seats("fedavg", 0.25, 1, 6) == 0
    # Two extreme values among six: both cut (Flower's rounding down keeps one).
    values = [[np.array([v])] for v in (1.0, 2.0, 3.0, 4.0, 1e6, 1e6)]
    assert trimmed_mean(values, 0.25)[0].tolist() == [3.5]
    flower = aggregate_trimmed_avg([(v, 1) for v in values], 0.25)[0]
    assert flower.tolist()[0] > 1e5


def _poisoned(poisoners: int, rule: AggregationRule, *, leave_out: bool) -> R.Run:
    trainers = {seat: R.honest(part, seed=seat) for seat, part in enumerate(PARTS)}
    for k in range(poisoners):
        trainers[4 + k] = R.scaler(PARTS[k], factor=-10.0)
    examples = dict.fromkeys(trainers, 300)
    return R.federate(trainers, examples, VALIDATION, rule=rule, leave_out_worthless=leave_out)


@pytest.mark.parametrize("poisoners", [1, 2])
def test_the_default_survives_up_to_two_poisoners_at_six_seats(poisoners: int) -> None:
    """Four honest owners and 1 or 2 poisoners (updates scaled by -10): the scored
    default (the trimmed mean over the updates worth aggregating) stays within 2
    points of the four alone; FedAvg, as an unscored task runs it, falls apart. The
    trimmed mean alone, without the scores, still keeps both poisoners out."""
    clean = R.accuracy(_poisoned(0, ROBUST, leave_out=True).final, TEST)
    run = _poisoned(poisoners, ROBUST, leave_out=True)
    assert abs(R.accuracy(run.final, TEST) - clean) <= 0.02
    assert all(shares_bps(run.totals)[4 + k] == 0 for k in range(poisoners))
    fedavg_clean = R.accuracy(_poisoned(0, FEDAVG, leave_out=False).final, TEST)
    fedavg = R.accuracy(_poisoned(poisoners, FEDAVG, leave_out=False).final, TEST)
    assert fedavg_clean - fedavg > 0.10
    rule_alone = R.accuracy(_poisoned(poisoners, ROBUST, leave_out=False).final, TEST)
    assert rule_alone > 0.75  # Flower's rounding down left 2 poisoners in: 0% here


def test_echo_free_riders_no_longer_slow_the_trimmed_mean() -> None:
    honest = {seat: R.honest(part, seed=seat) for seat, part in enumerate(PARTS)}
    echoes = {**honest, 4: R.echo(), 5: R.echo()}
    examples = dict.fromkeys(echoes, 300)

    def accuracy(trainers: dict[int, R.Train], leave_out: bool) -> float:
        run = R.federate(trainers, examples, VALIDATION, rule=ROBUST, leave_out_worthless=leave_out)
        return R.accuracy(run.final, TEST)

    without = accuracy(honest, True)
    # Measured: with the echoes in, each coordinate is pulled toward the previous
    # model and three rounds end over a point lower.
    assert accuracy(echoes, False) < without - 0.01
    assert abs(accuracy(echoes, True) - without) <= 0.005


def test_what_is_left_out_of_the_model() -> None:
    previous = R.initial_params()
    honest = [Update(s, R.honest(PARTS[s], seed=s)(previous, 1), 1) for s in range(3)]
    echo = Update(3, [p.copy() for p in previous], 10_000)
    noise = Update(4, R.noise()(previous, 1), 10_000)
    harmful = Update(5, R.scaler(PARTS[0])(previous, 1), 1)
    updates = [*honest, echo, noise, harmful]
    scores = {0: 0.1, 1: -0.02, 2: 0.1, 3: 0.0, 4: 0.001, 5: -0.3}
    kept = worth_aggregating(previous, updates, scores)
    assert [u.seat for u in kept] == [0, 1, 2]  # a little below 0 stays in
    # Nothing worth it: every update is kept and the rule alone decides.
    assert [u.seat for u in worth_aggregating(previous, [echo, harmful], scores)] == [3, 5]
    # A Sybil pair goes in once, as the mean of its members' updates.
    twin = Update(6, [p + 2.0 for p in honest[0].params], 1)
    pair = worth_aggregating(
        previous, [*honest, twin], {0: 0.1, 1: 0.1, 2: 0.1, 6: 0.1}, [frozenset({0, 6})]
    )
    assert [u.seat for u in pair] == [0, 1, 2]
    assert np.allclose(pair[0].params[0], honest[0].params[0] + 1.0)
