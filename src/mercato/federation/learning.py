# SPDX-License-Identifier: AGPL-3.0-only
"""The models a federated task trains, their parameters, and FedAvg.

Each learner is a scikit-learn estimator that trains incrementally (`partial_fit`) with
every class declared up front, so a data owner holding only some classes still returns
parameters of the global shape:

- `logistic_regression` and `sgd`: `SGDClassifier` (logistic loss, or the spec's loss);
  parameters `[coef, intercept]`;
- `mlp`: `MLPClassifier` with plain SGD (no momentum, so no optimizer state is lost
  between rounds); parameters `[W1, ..., Wk, b1, ..., bk]`.

The global model after a round is exported to ONNX with skl2onnx, as the registry's
sample models are (deterministic bytes: the same parameters give the same CID).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.neural_network import MLPClassifier

from mercato.errors import FederationSpecError
from mercato.federation.spec import TaskSpec

Params = list[NDArray[np.floating]]


@dataclass(frozen=True)
class LocalResult:
    """What local training gives back: new parameters and how many examples made them."""

    params: Params
    num_examples: int
    train_seconds: float


def _seed(spec: TaskSpec) -> int:
    return int(spec.hyperparameters.get("seed", 0))


def new_estimator(spec: TaskSpec) -> SGDClassifier | MLPClassifier:
    """An untrained estimator for the spec's learner.

    Raises:
        FederationSpecError: the learner kind is unknown.
    """
    hyper = spec.hyperparameters
    if spec.learner in ("logistic_regression", "sgd"):
        loss = (
            "log_loss" if spec.learner == "logistic_regression" else hyper.get("loss", "log_loss")
        )
        return SGDClassifier(
            loss=loss,
            alpha=float(hyper.get("alpha", 1e-4)),
            learning_rate="constant",
            eta0=float(hyper.get("eta0", 0.01)),
            random_state=_seed(spec),
        )
    if spec.learner == "mlp":
        return MLPClassifier(
            hidden_layer_sizes=tuple(hyper.get("hidden_layer_sizes", [16])),
            solver="sgd",
            momentum=0.0,
            learning_rate_init=float(hyper.get("learning_rate_init", 0.1)),
            alpha=float(hyper.get("alpha", 1e-4)),
            batch_size=int(hyper.get("batch_size", 32)),
            random_state=_seed(spec),
        )
    raise FederationSpecError(f"Unknown learner {spec.learner!r}.")


def initial_params(spec: TaskSpec) -> Params:
    """Starting parameters when the spec names no initial model: zeros for linear
    learners, a seeded random layout for the MLP (zeros would keep its units identical)."""
    n_features = spec.input.n_features
    n_classes = len(spec.input.classes)
    rows = 1 if n_classes == 2 else n_classes
    if spec.learner in ("logistic_regression", "sgd"):
        return [np.zeros((rows, n_features)), np.zeros(rows)]
    sizes = [n_features, *spec.hyperparameters.get("hidden_layer_sizes", [16]), rows]
    rng = np.random.default_rng(_seed(spec))
    weights = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot, as sklearn's own init
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
    return [*weights, *[np.zeros(size) for size in sizes[1:]]]


def get_params(model: SGDClassifier | MLPClassifier) -> Params:
    """The estimator's parameters as a list of arrays (copies)."""
    if isinstance(model, SGDClassifier):
        return [model.coef_.copy(), model.intercept_.copy()]
    return [w.copy() for w in model.coefs_] + [b.copy() for b in model.intercepts_]


def check_shapes(spec: TaskSpec, params: Sequence[NDArray[Any]]) -> None:
    """Raise if `params` do not have the spec's layout (a hostile or confused peer).

    Raises:
        FederationSpecError: wrong number of arrays, a wrong shape, or a non-finite value.
    """
    expected = [p.shape for p in initial_params(spec)]
    got = [np.shape(p) for p in params]
    if got != expected:
        raise FederationSpecError(f"Parameters have shapes {got}; the task's model has {expected}.")
    if not all(np.all(np.isfinite(p)) for p in params):
        raise FederationSpecError("Parameters hold NaN or infinite values.")


def build_model(spec: TaskSpec, params: Params) -> SGDClassifier | MLPClassifier:
    """An estimator holding `params`, ready to predict, export or train further.

    Raises:
        FederationSpecError: `params` do not fit the spec's model.
    """
    check_shapes(spec, params)
    classes = np.array(spec.input.classes)
    model = new_estimator(spec)
    n_features = spec.input.n_features
    if isinstance(model, SGDClassifier):
        model.coef_ = np.array(params[0], dtype=np.float64)
        model.intercept_ = np.array(params[1], dtype=np.float64)
        model.classes_ = classes
        model.n_features_in_ = n_features
        model.t_ = 1.0
        model._expanded_class_weight = np.ones(len(classes))  # set by its first partial_fit
        return model
    # MLPClassifier has no public way to set weights before a fit: one partial_fit on a
    # single zero row lays out the network, then the weights are overwritten.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # batch size above one row: clipped
        model.partial_fit(np.zeros((1, n_features)), classes[:1], classes=classes)
    layers = len(params) // 2
    model.coefs_ = [np.array(w, dtype=np.float64) for w in params[:layers]]
    model.intercepts_ = [np.array(b, dtype=np.float64) for b in params[layers:]]
    return model


def train_local(
    spec: TaskSpec, params: Params, features: NDArray[Any], labels: NDArray[Any]
) -> LocalResult:
    """Train the global model on one data owner's rows for `spec.local_epochs` passes.

    Args:
        spec: The task spec.
        params: The global model's parameters.
        features: The local rows (already checked by `load_local_data`).
        labels: Their labels.

    Returns:
        The new parameters and the number of local examples.

    Raises:
        FederationSpecError: `params` do not fit the spec's model.
    """
    import time

    started = time.perf_counter()
    model = build_model(spec, params)
    classes = np.array(spec.input.classes)
    rng = np.random.default_rng(_seed(spec))
    x = np.asarray(features, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(spec.local_epochs):
            order = rng.permutation(len(x))
            model.partial_fit(x[order], labels[order], classes=classes)
    return LocalResult(get_params(model), len(x), time.perf_counter() - started)


def evaluate(spec: TaskSpec, params: Params, features: NDArray[Any], labels: NDArray[Any]) -> float:
    """The spec's metric (accuracy) of `params` on the given rows."""
    model = build_model(spec, params)
    predicted = model.predict(np.asarray(features, dtype=np.float64))
    return float(np.mean(predicted == labels))


def fedavg(updates: Sequence[tuple[Params, int]]) -> Params:
    """Average parameter lists, each weighted by its number of examples (FedAvg).

    Args:
        updates: `(params, num_examples)` per participant; all of the same layout.

    Returns:
        The weighted mean, array by array.

    Raises:
        FederationSpecError: no update, or no example at all, or layouts differ.
    """
    total = sum(n for _, n in updates)
    if not updates or total <= 0:
        raise FederationSpecError("FedAvg needs at least one update with examples.")
    shapes = [np.shape(p) for p in updates[0][0]]
    for params, _ in updates:
        if [np.shape(p) for p in params] != shapes:
            raise FederationSpecError("Updates in one round have different layouts.")
    averaged: Params = []
    for i in range(len(shapes)):
        layer = np.zeros(shapes[i])
        for params, n in updates:
            layer += np.asarray(params[i], dtype=np.float64) * (n / total)
        averaged.append(layer)
    return averaged


def export_onnx(spec: TaskSpec, params: Params) -> bytes:
    """The global model as deterministic ONNX bytes (the round's model CID names them).

    Raises:
        FederationSpecError: `params` do not fit the spec's model.
    """
    # skl2onnx costs about 1.2 s of CPU to import and only the coordinator exports: a
    # ClientApp process (one per message) never needs it.
    from mercato.models.sklearn import sklearn_to_onnx

    model = sklearn_to_onnx(build_model(spec, params), spec.input.n_features)
    imports = sorted(model.opset_import, key=lambda entry: (entry.domain, entry.version))
    del model.opset_import[:]
    model.opset_import.extend(imports)
    return model.SerializeToString(deterministic=True)


def params_from_onnx(spec: TaskSpec, data: bytes) -> Params:
    """Read a linear classifier's weights back from ONNX (a task's initial model).

    Only what `export_onnx` writes for the linear learners is understood: the
    `coef`, `intercept` and `classes` initializers skl2onnx gives an `SGDClassifier`.
    Anything else is refused rather than guessed.

    Raises:
        FederationSpecError: not ONNX, not such a classifier, or of another shape.
    """
    if spec.learner == "mlp":
        raise FederationSpecError(
            "An initial ONNX model is supported for the linear learners only; start an "
            "mlp task from scratch."
        )
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # onnx raises DecodeError and others without a common base
        raise FederationSpecError(f"The initial model is not ONNX: {exc}.") from exc
    tensors = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    if not {"coef", "intercept", "classes"} <= set(tensors):
        raise FederationSpecError(
            "The initial model is not a linear classifier exported by Mercato."
        )
    labels = tuple(int(c) for c in np.ravel(tensors["classes"]))
    if labels != spec.input.classes:
        raise FederationSpecError(
            f"The initial model's classes {labels} are not the task's {spec.input.classes}."
        )
    coefficients = np.asarray(tensors["coef"], dtype=np.float64)
    intercepts = np.ravel(np.asarray(tensors["intercept"], dtype=np.float64))
    if coefficients.ndim != 2:
        raise FederationSpecError("The initial model's weights do not fit the task's input.")
    params: Params = [coefficients.T.copy(), intercepts]
    check_shapes(spec, params)
    return params
