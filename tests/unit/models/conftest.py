# SPDX-License-Identifier: AGPL-3.0-only
"""Small hand-made model packages for the unit tests (no training, milliseconds each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

CARD = """---
license: apache-2.0
tags: [test]
pipeline_tag: tabular-regression
---
# scale

Multiplies its input by a weight matrix.
"""


def scale_model(weights: int = 8) -> onnx.ModelProto:
    """Y = X @ W with W of shape [4, weights]; batch axis symbolic."""
    w = numpy_helper.from_array(np.arange(4 * weights, dtype=np.float32).reshape(4, weights), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "scale",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", weights])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.producer_name = "unit-test"
    return model


@pytest.fixture
def make_package(tmp_path: Path) -> Callable[..., Path]:
    """Write a package directory: model.onnx (+ optional external data) and README.md."""

    def make(
        name: str = "scale",
        *,
        card: str = CARD,
        external: bool = False,
        model: onnx.ModelProto | None = None,
    ) -> Path:
        root = tmp_path / name
        root.mkdir()
        proto = model if model is not None else scale_model(64 if external else 8)
        if external:
            onnx.save_model(
                proto,
                str(root / "model.onnx"),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location="model.onnx.data",
                size_threshold=16,
            )
        else:
            onnx.save_model(proto, str(root / "model.onnx"))
        (root / "README.md").write_text(card, encoding="utf-8")
        return root

    return make
