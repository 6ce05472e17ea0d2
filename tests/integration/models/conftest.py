# SPDX-License-Identifier: AGPL-3.0-only
"""Sample packages, hostile models and a small try pool shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mercato.models import ModelPackage, RuntimeLimits, TryPool, load_package
from mercato.models.samples import build_samples

CARD = "---\nlicense: mit\ntags: [hostile]\n---\n# {name}\n\nA model that misbehaves on purpose.\n"


def _write(root: Path, name: str, model: onnx.ModelProto) -> ModelPackage:
    directory = root / name
    directory.mkdir()
    onnx.save_model(model, str(directory / "model.onnx"))
    (directory / "README.md").write_text(CARD.format(name=name))
    return load_package(directory)


def counting_loop_body() -> onnx.GraphProto:
    """A Loop body that adds 1 to its float carry on every trip."""
    return helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "one"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )


def looping_model() -> onnx.ModelProto:
    """A Loop whose trip count is 2**62: it would run for years."""
    body = counting_loop_body()
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "loops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[
            helper.make_tensor("trips", TensorProto.INT64, [], [2**62]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def memory_eater_model() -> onnx.ModelProto:
    """Allocates a float tensor of n elements: n = 2**30 asks for 4 GiB."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "ConstantOfShape",
                ["n"],
                ["y"],
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]),
            )
        ],
        "eats",
        [helper.make_tensor_value_info("n", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n_value"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelPackage]:
    return build_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelPackage]:
    root = tmp_path_factory.mktemp("hostile")
    return {
        "loops": _write(root, "loops", looping_model()),
        "eats-memory": _write(root, "eats-memory", memory_eater_model()),
    }


LIMITS = RuntimeLimits(
    timeout_s=1.5,
    memory_bytes=256 * 1024 * 1024,
    max_input_bytes=1024 * 1024,
    max_request_bytes=4 * 1024 * 1024,
    session_cache_size=2,
    startup_timeout_s=60,
    queue_timeout_s=60,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[TryPool]:
    with TryPool(workers=2, limits=LIMITS) as running:
        yield running


def digit_images(seed: int, row_counts: Iterable[int]) -> list[np.ndarray]:
    """One random batch of 8x8 digit images (64 features) per row count."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 16, (rows, 64)).astype(np.float32) for rows in row_counts]


def reference_session(package: ModelPackage) -> ort.InferenceSession:
    """The package's model in this process, to check the pool's answers against."""
    return ort.InferenceSession(str(package.entry_path), providers=["CPUExecutionProvider"])


def iris_rows() -> np.ndarray:
    return np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def gather_model() -> onnx.ModelProto:
    """Batchable: y[i] = table[idx[i]] over 4 entries; an index past 3 fails the run."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)],
        "gathers",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        initializer=[helper.make_tensor("table", TensorProto.FLOAT, [4], [10, 11, 12, 13])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def batch_looping_model() -> onnx.ModelProto:
    """Batchable: y = x, after a loop that runs max(x) times (x = 1e15 runs for years)."""
    body = counting_loop_body()
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
            helper.make_node("Cast", ["top"], ["trips"], to=TensorProto.INT64),
            helper.make_node("Loop", ["trips", "cond", "zero"], ["v"], body=body),
            helper.make_node("Mul", ["v", "nought"], ["nothing"]),
            helper.make_node("Add", ["x", "nothing"], ["y"]),
        ],
        "loops-per-row",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        initializer=[
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
            helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
            helper.make_tensor("nought", TensorProto.FLOAT, [1], [0.0]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="session")
def batchable(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelPackage]:
    root = tmp_path_factory.mktemp("batchable")
    return {
        "gathers": _write(root, "gathers", gather_model()),
        "loops-per-row": _write(root, "loops-per-row", batch_looping_model()),
    }
