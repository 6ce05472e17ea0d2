# SPDX-License-Identifier: AGPL-3.0-only
"""Evaluations the demo attests, so a model page's performance history has something.

Two demo evaluators each run the sample models with ONNX Runtime on the scikit-learn
data sets they were built from and attest what they measured: one scores every row,
the other a held-out fifth of the rows. The scores are real measurements, and each
evaluation names the CID of the exact rows it used (CSV, as `ipfs add` would hash it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoEvaluator:
    """A demo account that attests evaluations, and which rows it scores."""

    name: str  # how the demo's log calls it
    account: int  # index into `demo_accounts()`
    every: int  # scores rows i with i % every == 0 (1: all of them)


DEMO_EVALUATORS = (
    DemoEvaluator("full-dataset benchmark", 6, 1),
    DemoEvaluator("held-out fifth benchmark", 7, 5),
)


def _dataset(sample: str) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Features, targets and the metric of the data set a sample was trained on."""
    from sklearn.datasets import load_diabetes, load_digits, load_iris

    loaders: dict[str, tuple[Callable[..., Any], str]] = {
        "iris-logreg": (load_iris, "accuracy"),
        "iris-logreg-tuned": (load_iris, "accuracy"),
        "digits-mlp": (load_digits, "accuracy"),
        "diabetes-gbr": (load_diabetes, "r2"),
    }
    if sample not in loaders:
        return None
    loader, metric = loaders[sample]
    x, y = loader(return_X_y=True)
    return np.asarray(x, dtype=np.float32), np.asarray(y), metric


def measure(model_path: Path, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    """Runs an ONNX model on `x` and scores its first output against `y`.

    Args:
        model_path: The ONNX file.
        x: float32 features, one row per sample.
        y: The true labels (accuracy) or values (r2).
        metric: "accuracy" or "r2".

    Returns:
        The score.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predicted = np.asarray(session.run(None, {name: x})[0]).reshape(len(x), -1)[:, 0]
    if metric == "accuracy":
        return float(np.mean(predicted.astype(np.int64) == y.astype(np.int64)))
    residual = float(np.sum((y - predicted) ** 2))
    total = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - residual / total


def _csv(x: np.ndarray, y: np.ndarray) -> bytes:
    rows = (
        ",".join(f"{v:g}" for v in (*features, target))
        for features, target in zip(x, y, strict=True)
    )
    return ("\n".join(rows) + "\n").encode()


def seed_evaluations(
    attest: Callable[[int, int, Any, str, float], None],
    packages: dict[str, Any],
    ids: dict[str, int],
) -> int:
    """Measures each published sample and attests the scores, once per evaluator.

    Args:
        attest: `(evaluator account index, model id, dataset CID, metric, score)` ->
            records one evaluation of version 1 as that demo account.
        packages: The sample packages by name (`build_samples`).
        ids: The model id each sample was published as.

    Returns:
        How many evaluations were attested.
    """
    from mercato.storage.unixfs import only_hash

    count = 0
    for sample, model_id in ids.items():
        data = _dataset(sample)
        if data is None or sample not in packages:
            continue
        x, y, metric = data
        package = packages[sample]
        model_path = Path(package.root) / package.entry
        for evaluator in DEMO_EVALUATORS:
            rows = np.arange(len(x)) % evaluator.every == 0
            score = measure(model_path, x[rows], y[rows], metric)
            dataset_cid = only_hash([_csv(x[rows], y[rows])])
            attest(evaluator.account, model_id, dataset_cid, metric, score)
            log.info("%s: model %d %s %.4f", evaluator.name, model_id, metric, score)
            count += 1
    return count
