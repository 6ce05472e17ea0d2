# SPDX-License-Identifier: AGPL-3.0-only
"""A card's tabular widget examples are ready-made inputs of the try form: in a real
Chromium, picking one fills every box with its row, and the filled form runs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from playwright.sync_api import expect

from mercato.chain.session import demo_accounts
from mercato.node import Node
from tests.e2e.conftest import open_page, shot

CARD = Path(__file__).resolve().parents[1] / "data" / "cards" / "cc-by-nc.md"
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _package(root: Path) -> Path:
    """The CC-BY-NC card with a tiny X[N, 4] -> Y[N, 2] model (the card is under test)."""
    weights = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "sums",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(root / "model.onnx"))
    shutil.copy(CARD, root / "README.md")
    return root


def test_a_widget_example_fills_the_try_form_and_runs(
    browser: Any, demo_node: tuple[Node, str], tmp_path: Path
) -> None:
    node, base = demo_node
    creator = demo_accounts()[0]  # the node holds this key, so it serves the model's tries
    model_id = node.account_market(creator).models.publish(_package(tmp_path), price=0).model_id
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/v1/models/{model_id}").status_code != 200:
        assert time.monotonic() < deadline, "the model never reached the index"
        time.sleep(0.2)

    page, _ = open_page(browser, node, demo_accounts()[4])
    page.goto(f"{base}/models/{model_id}")
    examples = page.locator("#try-examples")
    expect(examples).to_be_visible()  # try.js shows the buttons
    expect(examples.locator("button")).to_have_count(2)
    page.click("text=A setosa and a virginica (2)")
    for label, value in zip(FEATURES, ["6.3", "3.3", "6.0", "2.5"], strict=True):
        expect(page.get_by_label(label)).to_have_value(value)
    page.click("text=A setosa and a virginica (1)")
    expect(page.get_by_label(FEATURES[0])).to_have_value("5.1")
    page.click("#try-form button[type=submit]")
    # Y = (sepal length + petal length, sepal width + petal width) of the first row.
    result = page.locator("#try-result")
    expect(result).to_contain_text("6.5")
    expect(result).to_contain_text("3.7")
    shot(page, "card-example-try")
    page.context.close()
