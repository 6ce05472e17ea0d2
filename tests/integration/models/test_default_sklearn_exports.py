# SPDX-License-Identifier: AGPL-3.0-only
"""Models as people export them: scikit-learn through skl2onnx with no options at all.

skl2onnx's defaults give classifiers a ZipMap output (a sequence of maps from label to
probability), which the try runtime must carry from the worker to JSON, the CLI and
the web page. Every dataset here ships inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from mercato.errors import InferenceRunError
from mercato.models import ModelPackage, RuntimeLimits, TryPool, load_package
from mercato.models.runtime.answers import present, read_answer

from .conftest import LIMITS

IRIS_CLASSES = ["setosa", "versicolor", "virginica"]

# name: (estimator, dataset loader, string labels?)
CLASSIFIERS: dict[str, tuple[Any, Callable[..., Any], bool]] = {
    "random-forest": (RandomForestClassifier(n_estimators=10, random_state=0), load_iris, False),
    "logistic-regression": (LogisticRegression(max_iter=200), load_iris, False),
    "gradient-boosting": (
        GradientBoostingClassifier(n_estimators=10, random_state=0),
        load_wine,
        False,
    ),
    "svc": (SVC(probability=True, random_state=0), load_breast_cancer, False),
    "k-neighbors": (KNeighborsClassifier(), load_wine, False),
    "decision-tree": (DecisionTreeClassifier(random_state=0), load_wine, True),
}
REGRESSORS: dict[str, tuple[Any, Callable[..., Any]]] = {
    "linear-regression": (LinearRegression(), load_diabetes),
    "random-forest-regressor": (
        RandomForestRegressor(n_estimators=10, random_state=0),
        load_diabetes,
    ),
}


def _card(name: str, extra: str = "") -> str:
    return f"---\nlicense: mit\n{extra}---\n# {name}\n\nExported with skl2onnx defaults.\n"


def _package(root: Path, name: str, model: onnx.ModelProto, extra: str = "") -> ModelPackage:
    directory = root / name
    directory.mkdir()
    onnx.save_model(model, str(directory / "model.onnx"))
    (directory / "README.md").write_text(_card(name, extra))
    return load_package(directory)


class Exported:
    """A fitted estimator, its default export and a few rows to try."""

    def __init__(self, estimator: Any, package: ModelPackage, rows: np.ndarray) -> None:
        self.estimator, self.package, self.rows = estimator, package, rows


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    root = tmp_path_factory.mktemp("default-exports")
    out: dict[str, Exported] = {}
    for name, (estimator, load, string_labels) in CLASSIFIERS.items():
        data = load()
        X = data.data.astype(np.float32)
        y = data.target_names[data.target] if string_labels else data.target
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # SVC(probability=True) is deprecated in newer scikit-learn, still common.
            warnings.simplefilter("ignore", FutureWarning)
            estimator.fit(X, y)
            model = to_onnx(estimator, X[:1])  # no options: the ZipMap stays
        extra = f"classes: {IRIS_CLASSES}\n" if load is load_iris else ""
        out[name] = Exported(estimator, _package(root, name, model, extra), X[::50][:3])
    for name, (estimator, load) in REGRESSORS.items():
        data = load()
        X = data.data.astype(np.float32)
        estimator.fit(X, data.target)
        out[name] = Exported(estimator, _package(root, name, to_onnx(estimator, X[:1])), X[:3])
    return out


@pytest.fixture(scope="module")
def pool() -> Iterator[TryPool]:
    with TryPool(workers=1, limits=LIMITS) as running:
        yield running


def _try(pool: TryPool, exported: Exported) -> dict[str, Any]:
    request = json.dumps({"inputs": {"X": exported.rows.tolist()}})
    return json.loads(pool.run_json(exported.package, request))


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_default_classifier_exports_validate_and_answer_with_labelled_probabilities(
    pool: TryPool, exported: dict[str, Exported], name: str
) -> None:
    model = exported[name]
    outputs = {o["name"]: o for o in model.package.manifest["outputs"]}
    # The manifest builder and its schema accept the ZipMap's type as it is.
    assert outputs["output_probability"]["kind"] == "sequence"
    assert outputs["output_probability"]["element"]["kind"] == "map"

    answer = _try(pool, model)["outputs"]
    probabilities = answer["output_probability"]
    assert probabilities["kind"] == "sequence"
    assert probabilities["element"]["kind"] == "map"
    classes = [str(c) for c in model.estimator.classes_]
    want = model.estimator.predict_proba(model.rows)
    assert len(probabilities["data"]) == len(model.rows)
    for got_row, want_row in zip(probabilities["data"], want, strict=True):
        assert list(got_row) == classes  # every class, in the model's order
        # Full precision in JSON: no rounding on the wire.
        np.testing.assert_allclose(list(got_row.values()), want_row, atol=2e-3)
    assert [str(v) for v in answer["output_label"]["data"]] == [
        str(v) for v in model.estimator.predict(model.rows)
    ]

    label_view, view = present(read_answer(json.dumps({"outputs": answer})), model.package.manifest)
    named = IRIS_CLASSES if name in ("random-forest", "logistic-regression") else classes
    if named is IRIS_CLASSES:  # the card names the classes: labels show their names
        predicted = model.estimator.predict(model.rows)
        assert label_view.text == ", ".join(f"{p} ({IRIS_CLASSES[p]})" for p in predicted)
    for row, want_row in zip(view.rows, want, strict=True):
        assert row[0].label == named[int(np.argmax(want_row))]
        assert [s.probability for s in row] == sorted((s.probability for s in row), reverse=True)


@pytest.mark.parametrize("name", list(REGRESSORS))
def test_default_regressor_exports_answer_their_predictions(
    pool: TryPool, exported: dict[str, Exported], name: str
) -> None:
    model = exported[name]
    answer = _try(pool, model)["outputs"]
    (output,) = answer.values()
    assert output["kind"] == "tensor"
    np.testing.assert_allclose(
        np.ravel(output["data"]), model.estimator.predict(model.rows), rtol=1e-4
    )
    (view,) = present(answer, model.package.manifest)
    assert view.rows == [] and view.text.startswith("[[")


def test_the_card_naming_classes_that_do_not_fit_the_model_is_refused(
    tmp_path: Path, exported: dict[str, Exported]
) -> None:
    from mercato.errors import ModelCardError

    estimator = exported["logistic-regression"].estimator
    model = to_onnx(estimator, np.zeros((1, 4), np.float32), options={"zipmap": False})
    with pytest.raises(ModelCardError, match="names 2 classes, but output 'probabilities'"):
        _package(tmp_path, "two-names", model, "classes: [a, b]\n")
    with pytest.raises(ModelCardError, match="names 3 features for input 'X', which has 4"):
        _package(tmp_path, "three-features", model, "features: [a, b, c]\n")


def _sequence_model() -> onnx.ModelProto:
    """Splits x into pieces of the given lengths: a sequence of unequal tensors."""
    graph = helper.make_graph(
        [helper.make_node("SplitToSequence", ["x", "lengths"], ["pieces"], axis=0)],
        "splits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_sequence_value_info("pieces", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("lengths", TensorProto.INT64, [2], [1, 2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_sequence_of_tensors_comes_back_as_separate_tensors(
    pool: TryPool, tmp_path: Path
) -> None:
    package = _package(tmp_path, "splits", _sequence_model())
    answer = json.loads(pool.run_json(package, '{"inputs": {"x": [1, 2, 3]}}'))
    assert answer["outputs"]["pieces"] == {
        "kind": "sequence",
        "element": {"kind": "tensor", "dtype": "float32"},
        "data": [[1.0], [2.0, 3.0]],
    }


def test_a_zipmap_over_the_output_limit_is_refused_and_the_pool_keeps_serving(
    exported: dict[str, Exported],
) -> None:
    model = exported["random-forest"]
    small = RuntimeLimits(**{**LIMITS.__dict__, "max_output_bytes": 256})
    rows = np.repeat(model.rows, 20, axis=0)
    with TryPool(workers=1, limits=small) as tight:
        with pytest.raises(InferenceRunError, match="bytes of output, limit 256"):
            tight.run(model.package, {"X": rows})
        assert len(tight.run(model.package, {"X": rows[:1]}).outputs["output_probability"]) == 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # Pipes, not a terminal: what a script calling the CLI sees.
    return subprocess.run(
        [sys.executable, "-m", "mercato.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "100"},
        check=False,
    )


def test_model_try_reads_the_shared_shorthand_and_prints_labels_or_json(
    exported: dict[str, Exported],
) -> None:
    root = str(exported["random-forest"].package.root)
    table = _cli("model", "try", root, "5.1, 3.5, 1.4, 0.2")
    assert table.returncode == 0, table.stderr
    assert "output_label: 0 (setosa)" in table.stdout
    lines = [line for line in table.stdout.splitlines() if "setosa" in line and "│" in line]
    assert lines and "1.000" in lines[0]

    as_json = _cli("model", "try", root, '{"X": [[5.1, 3.5, 1.4, 0.2]]}', "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    (row,) = answer["outputs"]["output_probability"]["data"]
    assert list(row) == ["0", "1", "2"]
    assert row["0"] == pytest.approx(1.0, abs=1e-6) and row["1"] == row["2"] == 0.0

    refused = _cli("model", "try", root, "[[1, 2]]", "--json")
    assert refused.returncode == 51
    assert json.loads(refused.stderr)["error"] == "inference_input_shape"
