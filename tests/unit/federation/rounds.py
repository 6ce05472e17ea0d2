# SPDX-License-Identifier: AGPL-3.0-only
"""A small federated run on scikit-learn's digits, in process, for the scoring tests.

Each participant trains a multinomial logistic regression (SGD, log loss) from the
global model on its own partition; cheaters are participants whose `train` does
something else. The SuperLink/SuperNode path is tested elsewhere: here only the
arithmetic of aggregation and scores is under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from mercato.federation.contribution import (
    AggregationRule,
    CoalitionValue,
    Params,
    SybilDetector,
    Update,
    exact_shapley,
    worth_aggregating,
)

CLASSES = np.arange(10)
Train = Callable[[Params, int], Params]  # (global params, round) -> local params


@dataclass
class Data:
    X: NDArray[np.float64]
    y: NDArray[np.int64]


def digits_split(seed: int = 0, owners: int = 4) -> tuple[list[Data], Data, Data]:
    """`owners` non-IID partitions, a validation and a test set.

    Four owners hold mostly 2-3 classes each; more owners share those four groups
    of classes round robin, with a rest spread anywhere.
    """
    digits = load_digits()
    X = digits.data / 16.0
    y = digits.target
    X_train, X_rest, y_train, y_rest = train_test_split(
        X, y, test_size=0.4, random_state=seed, stratify=y
    )
    X_val, X_test, y_val, y_test = train_test_split(
        X_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    rng = np.random.default_rng(seed)
    groups = [{0, 1, 2}, {3, 4, 5}, {6, 7}, {8, 9}]
    parts: list[list[int]] = [[] for _ in range(owners)]
    for i, label in enumerate(y_train):
        group = next(g for g, classes in enumerate(groups) if label in classes)
        homes = [o for o in range(owners) if o % len(groups) == group] or [group % owners]
        # 80% of a class goes to a home partition of its group, the rest anywhere.
        if rng.random() < 0.8:
            parts[homes[int(rng.integers(len(homes))) if len(homes) > 1 else 0]].append(i)
        else:
            parts[int(rng.integers(owners))].append(i)
    partitions = [Data(X_train[idx], y_train[idx]) for idx in map(np.array, parts)]
    return partitions, Data(X_val, y_val), Data(X_test, y_test)


def initial_params(n_features: int = 64) -> Params:
    return [np.zeros((len(CLASSES), n_features)), np.zeros(len(CLASSES))]


def honest(data: Data, *, epochs: int = 3, seed: int = 0) -> Train:
    def train(params: Params, round_: int) -> Params:
        model = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=seed + round_)
        model.partial_fit(data.X[:1], data.y[:1], classes=CLASSES)
        model.coef_ = params[0].copy()
        model.intercept_ = params[1].copy()
        for _ in range(epochs):
            model.partial_fit(data.X, data.y)
        return [model.coef_.copy(), model.intercept_.copy()]

    return train


def echo() -> Train:
    return lambda params, _round: [p.copy() for p in params]


def noise(scale: float = 1e-3, seed: int = 1) -> Train:
    rng = np.random.default_rng(seed)
    return lambda params, _round: [p + rng.normal(0, scale, p.shape) for p in params]


def label_flipper(data: Data, **kwargs: int) -> Train:
    return honest(Data(data.X, (data.y + 1) % 10), **kwargs)


def scaler(data: Data, factor: float = -10.0) -> Train:
    """Trains honestly, then sends the global model moved `factor` times its update."""
    inner = honest(data)

    def train(params: Params, round_: int) -> Params:
        local = inner(params, round_)
        return [g + factor * (mine - g) for g, mine in zip(params, local, strict=True)]

    return train


def accuracy(params: Params, data: Data) -> float:
    scores = data.X @ params[0].T + params[1]
    return float(np.mean(np.argmax(scores, axis=1) == data.y))


@dataclass
class Run:
    final: Params
    totals: dict[int, float]
    sybil: SybilDetector
    evaluations: int


def federate(
    trainers: dict[int, Train],
    examples: dict[int, int],
    validation: Data,
    *,
    rule: AggregationRule,
    rounds: int = 3,
    score: Callable[[CoalitionValue], dict[int, float]] = exact_shapley,
    sybil_threshold: float = 0.98,
    leave_out_worthless: bool = False,
) -> Run:
    params = initial_params()
    totals = dict.fromkeys(trainers, 0.0)
    sybil = SybilDetector(threshold=sybil_threshold)
    evaluations = 0
    for round_ in range(1, rounds + 1):
        updates = [Update(s, train(params, round_), examples[s]) for s, train in trainers.items()]
        sybil.observe(params, updates)
        value = CoalitionValue(
            params, updates, lambda p: accuracy(p, validation), groups=sybil.groups()
        )
        scores = score(value)
        for seat, points in scores.items():
            totals[seat] += points
        evaluations += value.evaluations
        # As the ServerApp does (`evidence.score_round`) when asked; else the rule alone.
        params = rule.aggregate(
            worth_aggregating(params, updates, scores, value.players)
            if leave_out_worthless
            else updates
        )
    return Run(params, totals, sybil, evaluations)
