# SPDX-License-Identifier: AGPL-3.0-only
"""Sample model packages built from datasets that ship with scikit-learn.

Nothing is downloaded, and every build gives the same bytes (fixed seeds, single-thread
fitting, no timestamps), so the same manifests and CIDs. The demo and the tests use
them. Laid out as::

    DIR/
    ├── iris-logreg/           iris species from 4 measurements (quick fit)
    ├── iris-logreg-tuned/     the same model trained further; card names its base_model
    ├── digits-mlp/            8x8 handwritten digits, weights in external data
    └── diabetes-gbr/          disease progression regression (tree ensemble)
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sklearn.datasets import load_diabetes, load_digits, load_iris
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from mercato.models.card import ModelCard
from mercato.models.package import ModelPackage
from mercato.models.sklearn import export_sklearn

SAMPLE_LICENSE = "cc0-1.0"
# The card's try fields (see docs/models.md): what the web form and the CLI's tables show.
IRIS_TRY = {
    "features": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
    "classes": ["setosa", "versicolor", "virginica"],
    "example": '{"X": [[5.1, 3.5, 1.4, 0.2]]}',
}
DIABETES_TRY = {
    "features": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
}


# The sections a buyer reads before paying (see mercato.models.sections): every sample
# has them, since the demo sells most of them.
_TEACHING = (
    "\n## Uses\n\nA teaching example: it shows how Mercato publishes, tries and sells a "
    "model. {uses}\n\n## Bias, Risks, and Limitations\n\n{limits} Not for any decision "
    "that matters.\n"
)


def _card(text: str, **fields: object) -> ModelCard:
    return ModelCard(license=SAMPLE_LICENSE, library_name="sklearn", text=text, **fields)  # type: ignore[arg-type]


def _iris_base() -> LogisticRegression:
    data = load_iris()
    # A deliberately short fit, so the tuned child visibly improves on it.
    model = LogisticRegression(max_iter=5, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.data, data.target)
    return model


def build_iris(directory: Path) -> ModelPackage:
    """Build `iris-logreg`: logistic regression on the iris data set, briefly trained.

    Args:
        directory: Where to write the package.

    Returns:
        The validated package.
    """
    card = _card(
        "# iris-logreg\n\nClassifies iris flowers (setosa, versicolor, virginica) from "
        "sepal and petal length and width in cm. Input `X`: float32 [N, 4]. Outputs: "
        "`label` (int64 [N]) and `probabilities` (float32 [N, 3]).\n"
        + _TEACHING.format(
            uses="It tells apart three iris species from four measurements in cm.",
            limits="Trained briefly, on purpose, on the 150 flowers of one 1936 data set: "
            "it underfits, and knows no other species.",
        ),
        pipeline_tag="tabular-classification",
        tags=["sample", "iris", "logistic-regression"],
        datasets=["scikit-learn/iris"],
        metrics=["accuracy"],
        **IRIS_TRY,
    )
    return export_sklearn(_iris_base(), 4, card, directory, name="iris-logreg")


def build_iris_tuned(directory: Path) -> ModelPackage:
    """Build `iris-logreg-tuned`: `iris-logreg` warm-started and trained to convergence.

    Args:
        directory: Where to write the package.

    Returns:
        The validated package; its card names `iris-logreg` as `base_model`.
    """
    data = load_iris()
    model = copy.deepcopy(_iris_base())
    model.set_params(max_iter=500)
    model.fit(data.data, data.target)  # warm_start: continues from the parent's weights
    card = _card(
        "# iris-logreg-tuned\n\n`iris-logreg` trained further (warm start, up to 500 "
        "iterations) on the same data. Same inputs and outputs as its parent.\n"
        + _TEACHING.format(
            uses="It tells apart three iris species from four measurements in cm.",
            limits="Trained on the 150 flowers of one 1936 data set, and scored on the same "
            "flowers: it knows no other species, and its scores are optimistic.",
        ),
        pipeline_tag="tabular-classification",
        tags=["sample", "iris", "logistic-regression"],
        datasets=["scikit-learn/iris"],
        metrics=["accuracy"],
        base_model=["iris-logreg"],
        base_model_relation="finetune",
        **IRIS_TRY,
    )
    return export_sklearn(model, 4, card, directory, name="iris-logreg-tuned")


def _full_ink(images: Any) -> int:
    """The first image whose darkest pixel is 16, the data set's full ink."""
    return int(next(i for i, image in enumerate(images) if image.max() == 16))


def build_digits(directory: Path) -> ModelPackage:
    """Build `digits-mlp`: a small neural network on 8x8 digit images.

    Args:
        directory: Where to write the package.

    Returns:
        The validated package; its weights live in `model.onnx.data`.
    """
    data = load_digits()
    model = MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.data, data.target)
    card = _card(
        "# digits-mlp\n\nRecognises handwritten digits 0-9. Input `X`: float32 [N, 64], "
        "an 8x8 image flattened row by row, pixel values 0-16. Outputs: `label` "
        "(int64 [N]) and `probabilities` (float32 [N, 10]).\n"
        + _TEACHING.format(
            uses="It reads one handwritten digit, 0-9, drawn on an 8x8 grid.",
            limits="Trained on 1,797 digits from 43 writers at 8x8 pixels: letters, other "
            "scripts, larger pictures and several digits at once are beyond it.",
        ),
        pipeline_tag="image-classification",
        tags=["sample", "digits", "mlp"],
        datasets=["scikit-learn/digits"],
        metrics=["accuracy"],
        # A digit from the data set whose ink reaches the full 16: the web form's canvas
        # scales drawings to the example's range.
        example=json.dumps({"X": [[int(v) for v in data.data[_full_ink(data.data)]]]}),
    )
    return export_sklearn(model, 64, card, directory, external_data=True, name="digits-mlp")


def build_diabetes(directory: Path) -> ModelPackage:
    """Build `diabetes-gbr`: gradient-boosted trees predicting disease progression.

    Args:
        directory: Where to write the package.

    Returns:
        The validated package.
    """
    data = load_diabetes()
    model = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0)
    model.fit(data.data, data.target)
    card = _card(
        "# diabetes-gbr\n\nPredicts a quantitative measure of diabetes progression one "
        "year after baseline from 10 standardised features (age, sex, BMI, blood "
        "pressure, six blood serum measurements). Input `X`: float32 [N, 10]. Output: "
        "`variable` (float32 [N, 1]).\n"
        + _TEACHING.format(
            uses="It predicts a disease-progression score from ten standardised measurements.",
            limits="Fitted on 442 patients of one study; it is no medical advice and knows "
            "nothing of the measurements' units before standardisation.",
        ),
        pipeline_tag="tabular-regression",
        tags=["sample", "diabetes", "gradient-boosting"],
        datasets=["scikit-learn/diabetes"],
        metrics=["r2"],
        features=DIABETES_TRY["features"],
        example=json.dumps({"X": [[round(float(v), 4) for v in data.data[0]]]}),
    )
    return export_sklearn(model, 10, card, directory, name="diabetes-gbr")


SAMPLES: dict[str, Callable[[Path], ModelPackage]] = {
    "iris-logreg": build_iris,
    "iris-logreg-tuned": build_iris_tuned,
    "digits-mlp": build_digits,
    "diabetes-gbr": build_diabetes,
}


def build_samples(directory: str | Path, names: list[str] | None = None) -> dict[str, ModelPackage]:
    """Build the sample packages under `directory`, one sub-directory each.

    Args:
        directory: The parent directory; created if missing.
        names: Which samples (keys of `SAMPLES`); all by default.

    Returns:
        The packages by name.

    Raises:
        KeyError: an unknown sample name.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    chosen = list(SAMPLES) if names is None else names
    # Multi-threaded BLAS may split sums differently from run to run (and under load),
    # which changes the last bits of the weights; one thread gives the same bytes.
    with threadpool_limits(limits=1):
        return {name: SAMPLES[name](root / name) for name in chosen}
