# SPDX-License-Identifier: AGPL-3.0-only
"""What scoring contributions costs, what robust aggregation buys, and how close the
Shapley estimate comes, on the digits federation the tests use.

    .venv/bin/python benchmarks/federation_scoring.py [--rounds 3] [--seeds 5]

In process (no SuperLink): local training and scoring run here one after the other,
so the figures are ratios measured in the same run.

1. Scoring overhead per round, as a ratio of one participant's local training time
   (participants train in parallel, each on its own machine, so that is the round's
   training time), for leave-one-out and TMC-Shapley (budget 10 evaluations per
   participant) at 4, 8 and 16 participants.
2. Test accuracy of the global model with 0, 1 and 2 poisoners (updates scaled by -10)
   among 4 honest participants, under FedAvg and under the robust default (trimmed mean).
3. TMC-Shapley against exact Shapley at 6 participants (exact needs 2^6 = 64
   evaluations): mean absolute difference of the shares in basis points, at budgets of
   16, 32 and 48 evaluations, over several seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' digits federation

from mercato.federation.contribution import (
    AggregationRule,
    CoalitionValue,
    Update,
    exact_shapley,
    leave_one_out,
    shares_bps,
    tmc_shapley,
)
from tests.unit.federation import rounds as R


def scoring_overhead(owners: int, rounds: int) -> dict[str, float]:
    parts, validation, _ = R.digits_split(owners=owners)
    trainers = {seat: R.honest(part, seed=seat) for seat, part in enumerate(parts)}
    params = R.initial_params()
    rule = AggregationRule()
    training: list[float] = []
    scoring: dict[str, list[float]] = {"loo": [], "tmc": []}
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
                tmc_shapley(value, budget=10 * owners, rng=np.random.default_rng(round_))
            scoring[name].append(time.perf_counter() - started)
        params = rule.aggregate(updates)
    one_training = statistics.mean(training)
    return {name: statistics.mean(times) / one_training for name, times in scoring.items()}


def poisoned_accuracy(poisoners: int, rule: AggregationRule, rounds: int) -> float:
    parts, validation, test = R.digits_split()
    trainers = {seat: R.honest(part, seed=seat) for seat, part in enumerate(parts)}
    for k in range(poisoners):
        trainers[len(parts) + k] = R.scaler(parts[k], factor=-10.0)
    examples = {seat: 300 for seat in trainers}
    run = R.federate(trainers, examples, validation, rule=rule, rounds=rounds)
    return R.accuracy(run.final, test)


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
            f"TMC-Shapley {ratios['tmc']:6.2f}x"
        )
    print("2. test accuracy with poisoners (updates scaled by -10) among 4 honest")
    for poisoners in (0, 1, 2):
        fedavg = poisoned_accuracy(poisoners, AggregationRule(name="fedavg"), rounds)
        robust = poisoned_accuracy(poisoners, AggregationRule(), rounds)
        median = poisoned_accuracy(poisoners, AggregationRule(name="fedmedian"), rounds)
        print(
            f"   {poisoners} poisoner(s): FedAvg {fedavg:6.1%}   trimmed mean (default) "
            f"{robust:6.1%}   median {median:6.1%}"
        )
    print("3. TMC-Shapley vs exact Shapley at 6 participants (64 evaluations)")
    for budget in (16, 32, 48):
        error = shapley_error(budget, seeds)
        print(f"   budget {budget:>2} evaluations: mean |difference| {error:6.0f} bps")


if __name__ == "__main__":
    main()
