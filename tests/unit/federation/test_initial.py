# SPDX-License-Identifier: AGPL-3.0-only
"""Starting parameters from registry models: what skl2onnx writes by default is read
back exactly (the learner predicts what the ONNX model predicts), and every model the
learner cannot start from is refused with what to change."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mercato.errors import InitialModelError
from mercato.federation.initial import load_initial_params, params_from_registry_onnx
from mercato.federation.learning import build_model, export_onnx
from mercato.federation.spec import InitialModel, InputSchema, TaskSpec


def _iris(classes: tuple[int, ...] = (0, 1, 2)) -> tuple[Any, Any]:
    x, y = load_iris(return_X_y=True)
    keep = np.isin(y, classes)
    return x[keep].astype(np.float32), y[keep]


def _spec(n_features: int = 4, classes: tuple[int, ...] = (0, 1, 2), **kw: Any) -> TaskSpec:
    return TaskSpec(
        name="iris",
        input=InputSchema(n_features=n_features, classes=classes),
        initial_model=InitialModel(model_id=3, version=1),
        **kw,
    )


def _onnx_labels(data: bytes, x: Any) -> Any:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("classes", [(0, 1, 2), (0, 1)], ids=["multiclass", "binary"])
def test_a_default_skl2onnx_logistic_regression_starts_the_learner_where_it_was(
    classes: tuple[int, ...],
) -> None:
    x, y = _iris(classes)
    data = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1]).SerializeToString()
    spec = _spec(classes=classes)
    params = params_from_registry_onnx(spec, data, 3, 1)
    rows = 1 if len(classes) == 2 else len(classes)
    assert [p.shape for p in params] == [(rows, 4), (rows,)]
    # The learner holding these parameters predicts what the published model predicts.
    ours = build_model(spec, params).predict(x.astype(np.float64))
    assert np.array_equal(ours, _onnx_labels(data, x))


def test_an_sgd_export_and_the_learners_own_export_are_read_back() -> None:
    x, y = _iris()
    spec = _spec()
    sgd = SGDClassifier(loss="log_loss", random_state=0).fit(x, y)
    data = to_onnx(sgd, x[:1]).SerializeToString()
    params = params_from_registry_onnx(spec, data, 3, 1)
    assert np.allclose(params[0], sgd.coef_, atol=1e-6)
    assert np.allclose(params[1], sgd.intercept_, atol=1e-5)
    again = params_from_registry_onnx(spec, export_onnx(spec, params), 3, 1)
    assert np.allclose(again[0], params[0], atol=1e-6)


def test_load_initial_params_asks_the_source_for_the_specs_model_and_version() -> None:
    x, y = _iris()
    data = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1]).SerializeToString()
    asked: list[tuple[int, int]] = []

    def source(model_id: int, version: int) -> bytes:
        asked.append((model_id, version))
        return data

    params = load_initial_params(_spec(), source)
    assert asked == [(3, 1)]
    assert params[0].shape == (3, 4)


def _refusal(spec: TaskSpec, data: bytes) -> InitialModelError:
    with pytest.raises(InitialModelError) as caught:
        params_from_registry_onnx(spec, data, 3, 1)
    assert caught.value.model_id == 3 and caught.value.version == 1
    return caught.value


def test_a_model_of_another_width_is_refused_naming_both_widths() -> None:
    x, y = _iris()
    data = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1]).SerializeToString()
    error = _refusal(_spec(n_features=64), data)
    assert "reads 4 features" in str(error) and "has 64" in str(error)
    assert "n_features = 4" in str(error)


def test_a_model_with_other_classes_is_refused() -> None:
    x, y = _iris()
    data = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1]).SerializeToString()
    error = _refusal(_spec(classes=(0, 1, 2, 3)), data)
    assert "[0, 1, 2]" in str(error) and "[0, 1, 2, 3]" in str(error)


@pytest.mark.parametrize(
    "estimator",
    [
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0),
        DecisionTreeClassifier(random_state=0),
    ],
    ids=["mlp", "tree"],
)
def test_a_model_the_learner_cannot_start_from_is_refused(estimator: Any) -> None:
    x, y = _iris()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few MLP epochs do
        estimator.fit(x, y)
    error = _refusal(_spec(), to_onnx(estimator, x[:1]).SerializeToString())
    assert "not a linear classifier" in str(error)
    assert "LogisticRegression or SGDClassifier" in str(error)


def test_a_pipeline_with_a_scaler_is_refused_rather_than_losing_the_scaler() -> None:
    x, y = _iris()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    error = _refusal(_spec(), to_onnx(pipeline, x[:1]).SerializeToString())
    assert "Scaler" in str(error) and "drop that step" in str(error)


def test_an_mlp_task_cannot_start_from_a_registry_model() -> None:
    x, y = _iris()
    data = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1]).SerializeToString()
    error = _refusal(_spec(learner="mlp"), data)
    assert "'logistic_regression' or 'sgd'" in str(error)


def test_bytes_that_are_not_onnx_are_refused() -> None:
    assert "not ONNX" in str(_refusal(_spec(), b"\x00not a model"))
