# SPDX-License-Identifier: AGPL-3.0-only
"""What scoring contributions costs, what robust aggregation buys, and how close the
Shapley estimate comes, on the digits federation the tests use.

    .venv/bin/python benchmarks/federation_scoring.py [--rounds 3] [--seeds 5]

In process (no SuperLink): local training and scoring run here one after the other,
so the figures are ratios measured in the same run.

1. Scoring overhead per round, as a ratio of one participant's local training time
   (participants train in parallel, each on its own machine, so that is the round's
   training time), for leave-one-out and the default valuation "auto" (256 evaluations:
   exact Shapley up to 8 players, TMC-Shapley within 256 above) at 4, 8 and 16
   participants.
2. Test accuracy of the global model with 0, 1 and 2 poisoners (updates scaled by -10)
   among 4 honest participants (6 seats with 2), under FedAvg, Flower's FedTrimmedAvg
   (its cut rounded down), Mercato's trimmed mean (rounded up), the median, and the
   scored default (the trimmed mean over the updates worth aggregating).
3. Two echo free-riders among 4 honest: accuracy with the trimmed mean alone and with
   the scored default, against the 4 alone.
4. Six honest non-IID owners (classes overlapping two by two): how many leave-one-out
   and the default leave at a share of 0.
5. TMC-Shapley against exact Shapley at 6 participants (exact needs 2^6 = 64
   evaluations): mean absolute difference of the shares in basis points, at budgets of
   16, 32 and 48 evaluations, over several seeds.

Measured on the shared 2-core machine (load average 5.4), `--rounds 3 --seeds 5`:

1. LOO 0.07x / 0.02x / 0.22x; auto 0.02x / 1.10x / 4.11x at 4 / 8 / 16 participants
   (exact Shapley at 4 and 8, TMC-Shapley with 256 evaluations at 16). Digits trains in
   ~25 ms, so these ratios are a worst case: a real data owner's local training takes
   far longer. Exact Shapley alone measured 1.3x at 8 players, 3.8x at 10 and 21x at
   12, which is why auto stops exact at 2^8 = 256 evaluations.
2. 0 / 1 / 2 poisoners: FedAvg 91.9 / 0.0 / 0.0 %; Flower's FedTrimmedAvg (cut rounded
   down) 89.2 / 88.1 / 0.0 %; Mercato's trimmed mean (rounded up) 89.2 / 84.7 / 83.6 %;
   median 89.2 / 84.7 / 83.6 %; scored default (trimmed mean over the updates worth
   aggregating) 89.2 / 89.2 / 89.2 %. The trimmed mean alone now keeps 2 poisoners of 6
   out, at 5.6 points below the clean run on this non-IID split (cutting two per side
   also cuts honest extremes); leaving out updates that cost over five points in the
   round closes that gap.
3. 4 honest alone 89.2 %; with 2 echoes the trimmed mean alone ends at 85.8 % (the
   echoes pull each coordinate toward the previous model), the scored default 89.2 %.
4. 6 honest non-IID owners: leave-one-out left 4 at a share of 0, auto none.
5. TMC at 16 / 32 / 48 evaluations off by 939 / 632 / 538 bps from exact.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' digits federation

from flwr.server.strategy.aggregate import aggregate_trimmed_avg

from mercato.federation.contribution import (
    AggregationRule,
    CoalitionValue,
    Params,
    Update,
    exact_shapley,
    leave_one_out,
    shapley,
    shares_bps,
    tmc_shapley,
)
from mercato.federation.spec import ScoringSettings
from tests.unit.federation import rounds as R


def scoring_overhead(owners: int, rounds: int) -> dict[str, float]:
    parts, validation, _ = R.digits_split(owners=owners)
    trainers = {seat: R.honest(part, seed=seat) for seat, part in enumerate(parts)}
    params = R.initial_params()
    rule = AggregationRule()
    training: list[float] = []
    scoring: dict[str, list[float]] = {"loo": [], "auto": []}
    budget = ScoringSettings().evaluations_per_round
    for round_ in range(1, rounds + 1):
        updates = []
        for seat, train in trainers.items():
            started = time.perf_counter()
            updates.append(Update(seat, train(params, round_), len(parts[seat].y)))
            training.append(time.perf_counter() - started)
        for name in scoring:
            value = CoalitionValue(params, updates, lambda p: R.accuracy(p, validation))
            started = time.perf_counter()
            if name == "loo":
                leave_one_out(value)
            else:
                shapley(value, budget=budget, rng=np.random.default_rng(round_))
            scoring[name].append(time.perf_counter() - started)
        params = rule.aggregate(updates)
    one_training = statistics.mean(training)
    return {name: statistics.mean(times) / one_training for name, times in scoring.items()}


class FlowerTrimmedMean:
    """Flower's FedTrimmedAvg as it is (the cut rounded down): the baseline."""

    def aggregate(self, updates: list[Update]) -> Params:
        return aggregate_trimmed_avg([(u.params, u.num_examples) for u in updates], 0.25)


def poisoned_accuracy(
    poisoners: int, rule: object, rounds: int, *, scored: bool = False, echoes: int = 0
) -> float:
    parts, validation, test = R.digits_split()
    trainers = {seat: R.honest(part, seed=seat) for seat, part in enumerate(parts)}
    for k in range(poisoners):
        trainers[len(parts) + k] = R.scaler(parts[k], factor=-10.0)
    for k in range(echoes):
        trainers[10 + k] = R.echo()
    examples = {seat: 300 for seat in trainers}
    run = R.federate(
        trainers,
        examples,
        validation,
        rule=rule,  # type: ignore[arg-type]
        rounds=rounds,
        leave_out_worthless=scored,
    )
    return R.accuracy(run.final, test)


def honest_at_zero(rounds: int) -> dict[str, int]:
    parts, validation, _ = R.digits_split(owners=6)
    trainers = {seat: R.honest(part, seed=seat) for seat, part in enumerate(parts)}
    examples = {seat: len(part.y) for seat, part in enumerate(parts)}
    budget = ScoringSettings().evaluations_per_round
    out = {}
    for name, score in (
        ("loo", leave_one_out),
        ("auto", lambda value: shapley(value, budget=budget)),
    ):
        run = R.federate(
            trainers, examples, validation, rule=AggregationRule(), rounds=rounds, score=score
        )
        out[name] = sum(1 for bps in shares_bps(run.totals).values() if bps == 0)
    return out


def shapley_error(budget: int, seeds: int) -> float:
    parts, validation, _ = R.digits_split()
    previous = R.initial_params()
    six = {seat: R.honest(part, seed=seat) for seat, part in enumerate(parts)}
    six[4] = R.honest(parts[1], seed=7)
    six[5] = R.noise(scale=0.05)
    updates = [Update(seat, train(previous, 1), 300) for seat, train in six.items()]

    def value() -> CoalitionValue:
        return CoalitionValue(previous, updates, lambda p: R.accuracy(p, validation))

    exact = shares_bps(exact_shapley(value()), min_contribution=0)
    differences = []
    for seed in range(seeds):
        estimate = tmc_shapley(value(), budget=budget, rng=np.random.default_rng(seed))
        shares = shares_bps(estimate, min_contribution=0)
        differences.append(sum(abs(exact[s] - shares[s]) for s in exact) / len(exact))
    return statistics.mean(differences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    report(args.rounds, args.seeds)


def report(rounds: int, seeds: int) -> None:
    """Measure and print the three figures (also `benchmarks/federation.py --scoring`)."""
    print("1. scoring time per round / one participant's local training time")
    for owners in (4, 8, 16):
        ratios = scoring_overhead(owners, rounds)
        print(
            f"   {owners:>2} participants: leave-one-out {ratios['loo']:6.2f}x   "
            f"auto (default) {ratios['auto']:6.2f}x"
        )
    print("2. test accuracy with poisoners (updates scaled by -10) among 4 honest")
    for poisoners in (0, 1, 2):
        fedavg = poisoned_accuracy(poisoners, AggregationRule(name="fedavg"), rounds)
        flower = poisoned_accuracy(poisoners, FlowerTrimmedMean(), rounds)
        trimmed = poisoned_accuracy(poisoners, AggregationRule(), rounds)
        median = poisoned_accuracy(poisoners, AggregationRule(name="fedmedian"), rounds)
        scored = poisoned_accuracy(poisoners, AggregationRule(), rounds, scored=True)
        print(
            f"   {poisoners} poisoner(s): FedAvg {fedavg:6.1%}   Flower's trimmed mean "
            f"{flower:6.1%}   trimmed mean {trimmed:6.1%}   median {median:6.1%}   "
            f"scored default {scored:6.1%}"
        )
    print("3. test accuracy with 2 echo free-riders among 4 honest")
    alone = poisoned_accuracy(0, AggregationRule(), rounds, scored=True)
    kept = poisoned_accuracy(0, AggregationRule(), rounds, echoes=2)
    left_out = poisoned_accuracy(0, AggregationRule(), rounds, scored=True, echoes=2)
    print(
        f"   4 honest alone {alone:6.1%}   with the echoes: trimmed mean alone {kept:6.1%}   "
        f"scored default {left_out:6.1%}"
    )
    print("4. honest non-IID owners (of 6) left at a share of 0")
    zeros = honest_at_zero(rounds)
    print(f"   leave-one-out {zeros['loo']}   auto (default) {zeros['auto']}")
    print("5. TMC-Shapley vs exact Shapley at 6 participants (64 evaluations)")
    for budget in (16, 32, 48):
        error = shapley_error(budget, seeds)
        print(f"   budget {budget:>2} evaluations: mean |difference| {error:6.0f} bps")


if __name__ == "__main__":
    main()
