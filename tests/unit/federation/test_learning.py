# SPDX-License-Identifier: AGPL-3.0-only
"""Local training, FedAvg and the ONNX export of the global model (real sklearn,
real skl2onnx, real ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from mercato.errors import FederationSpecError
from mercato.federation import learning
from mercato.federation.spec import InputSchema, TaskSpec


def _digits() -> tuple[np.ndarray, np.ndarray]:
    features, labels = load_digits(return_X_y=True)
    return features / 16.0, labels


@pytest.mark.parametrize("kind", ["logistic_regression", "sgd", "mlp"])
def test_local_training_learns_and_the_onnx_export_predicts_the_same(kind: str) -> None:
    features, labels = _digits()
    spec = TaskSpec(
        name="d", input=InputSchema(n_features=64, classes=tuple(range(10))), learner=kind,
        local_epochs=3,
    )  # fmt: skip
    start = learning.initial_params(spec)
    result = learning.train_local(spec, start, features[:1000], labels[:1000])
    assert result.num_examples == 1000
    accuracy = learning.evaluate(spec, result.params, features[1000:], labels[1000:])
    assert accuracy > 0.7
    onnx_bytes = learning.export_onnx(spec, result.params)
    assert onnx_bytes == learning.export_onnx(spec, result.params)  # deterministic
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    predicted = session.run(None, {"X": features[1000:].astype(np.float32)})[0]
    assert np.mean(predicted == labels[1000:]) == pytest.approx(accuracy, abs=0.01)


def test_a_data_owner_with_two_classes_returns_the_global_shape() -> None:
    features, labels = _digits()
    spec = TaskSpec(name="d", input=InputSchema(n_features=64, classes=tuple(range(10))))
    mask = labels < 2
    result = learning.train_local(spec, learning.initial_params(spec), features[mask], labels[mask])
    assert [p.shape for p in result.params] == [(10, 64), (10,)]


def test_fedavg_weights_by_examples() -> None:
    a = [np.array([[0.0, 0.0]]), np.array([0.0])]
    b = [np.array([[4.0, 8.0]]), np.array([4.0])]
    averaged = learning.fedavg([(a, 3), (b, 1)])
    assert averaged[0].tolist() == [[1.0, 2.0]]
    assert averaged[1].tolist() == [1.0]
    with pytest.raises(FederationSpecError, match="different layouts"):
        learning.fedavg([(a, 1), ([np.zeros((2, 2)), np.zeros(1)], 1)])
    with pytest.raises(FederationSpecError, match="at least one"):
        learning.fedavg([])


def test_parameters_of_another_shape_or_not_finite_are_refused() -> None:
    spec = TaskSpec(name="d", input=InputSchema(n_features=4, classes=(0, 1, 2)))
    with pytest.raises(FederationSpecError, match="shapes"):
        learning.build_model(spec, [np.zeros((3, 5)), np.zeros(3)])
    with pytest.raises(FederationSpecError, match="NaN"):
        learning.build_model(spec, [np.full((3, 4), np.nan), np.zeros(3)])


def test_initial_onnx_weights_are_read_back() -> None:
    features, labels = _digits()
    spec = TaskSpec(name="d", input=InputSchema(n_features=64, classes=tuple(range(10))))
    params = learning.train_local(spec, learning.initial_params(spec), features, labels).params
    back = learning.params_from_onnx(spec, learning.export_onnx(spec, params))
    assert np.allclose(back[0], params[0], atol=1e-6)
    assert np.allclose(back[1], params[1], atol=1e-6)
    other = TaskSpec(name="d", input=InputSchema(n_features=64, classes=tuple(range(1, 11))))
    with pytest.raises(FederationSpecError, match="classes"):
        learning.params_from_onnx(other, learning.export_onnx(spec, params))
    with pytest.raises(FederationSpecError, match="not ONNX"):
        learning.params_from_onnx(spec, b"\xff\xff garbage")


def test_a_clientapp_process_does_not_import_the_onnx_exporter() -> None:
    # Every message starts a fresh flwr-clientapp process; skl2onnx (about 1.2 s of CPU)
    # is only needed where the coordinator exports the global model.
    import subprocess
    import sys

    probe = (
        "import sys, mercato.federation.client_app; "
        "print(sorted(m for m in ('skl2onnx', 'mercato.models.sklearn') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.strip() == "[]"
