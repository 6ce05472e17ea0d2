# SPDX-License-Identifier: AGPL-3.0-only
"""Journey: a new creator publishes a scikit-learn classifier exported with skl2onnx's
defaults (a ZipMap output), and buyers try it from the CLI and from the browser."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from eth_account import Account
from playwright.sync_api import expect
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from mercato.node import Node
from tests.e2e.conftest import open_page, shot

FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
CARD = """---
license: mit
pipeline_tag: tabular-classification
library_name: sklearn
features: {features}
classes: [setosa, versicolor, virginica]
example: '{{"X": [[6.7, 3.0, 5.2, 2.3]]}}'
---
# iris-forest

A random forest on the iris measurements, exported with skl2onnx's defaults.

## Uses

Tells the three iris species apart from four flower measurements in centimetres.

## Bias, Risks, and Limitations

Trained on 150 flowers from one survey; other species or other units give wrong answers.
"""


@pytest.fixture(scope="module")
def forest_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A default skl2onnx export: outputs `output_label` and a ZipMap `output_probability`."""
    data = load_iris()
    X = data.data.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, data.target)
    root = tmp_path_factory.mktemp("iris-forest")
    (root / "model.onnx").write_bytes(to_onnx(forest, X[:1]).SerializeToString())
    (root / "README.md").write_text(CARD.format(features=json.dumps(FEATURES)))
    return root


def _fresh_creator(node: Node) -> Any:
    """An account nobody has used: a new key, given gas money on the local chain."""
    assert node.session is not None
    creator = Account.create()
    # The test wallet signs messages with the key but hands transactions to Anvil to
    # sign (see conftest): Anvil must act for this address as it does for its own.
    for method, params in (
        ("anvil_setBalance", [creator.address, hex(10**19)]),
        ("anvil_impersonateAccount", [creator.address]),
    ):
        answer = httpx.post(
            node.session.rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        ).json()
        assert "error" not in answer, answer
    return creator


def _publish(browser: Any, node: Node, base: str, creator: Any, package: Path) -> int:
    page, _ = open_page(browser, node, creator)
    page.goto(base + "/publish")
    page.click("#connect")
    expect(page.locator("#wallet-address")).to_contain_text("Signed in")
    page.fill("#pub-name", "iris-forest")
    page.set_input_files("#pub-files", [str(package / "model.onnx"), str(package / "README.md")])
    page.fill("#pub-price", "1")
    page.click("#publish")
    link = page.locator("#published-link")
    expect(link).to_be_visible(timeout=60_000)
    model_id = int(link.inner_text().removeprefix("model #"))
    page.context.close()
    deadline = time.monotonic() + 30
    while httpx.get(f"{base}/v1/models/{model_id}").status_code != 200:
        assert time.monotonic() < deadline, "the published model never reached the index"
        time.sleep(0.2)
    return model_id


def _cli(node: Node, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert node.session is not None
    return subprocess.run(
        [sys.executable, "-m", "mercato.cli", *args],
        capture_output=True,  # pipes, not a terminal
        text=True,
        timeout=180,
        check=False,
        env={
            **os.environ,
            "MERCATO_DATA_DIR": str(data_dir),
            "MERCATO_RPC_URL": node.session.rpc_url,
            "COLUMNS": "120",
            "MERCATO_DEBUG": "1",  # a bug shows its traceback in the failure
        },
    )


def test_a_default_sklearn_classifier_is_published_and_tried_with_labels(
    browser: Any, demo_node: tuple[Node, str], forest_package: Path, tmp_path: Path
) -> None:
    node, base = demo_node
    creator = _fresh_creator(node)
    model_id = _publish(browser, node, base, creator, forest_package)
    detail = httpx.get(f"{base}/v1/models/{model_id}").json()
    assert detail["creator"] == creator.address

    # The CLI, as a buyer with a data directory of its own (only the deployment record).
    buyer_dir = tmp_path / "buyer"
    shutil.copytree(node.settings.data_dir / "deployments", buyer_dir / "deployments")
    table = _cli(node, buyer_dir, "try", str(model_id), "5.1, 3.5, 1.4, 0.2")
    assert table.returncode == 0, table.stderr
    assert "output_label: 0 (setosa)" in table.stdout
    best = next(line for line in table.stdout.splitlines() if "setosa" in line and "│" in line)
    assert "1.000" in best or "0.9" in best  # rounded for people
    as_json = _cli(node, buyer_dir, "try", str(model_id), '{"X": [[6.7, 3.0, 5.2, 2.3]]}', "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)["outputs"]
    assert answer["output_probability"]["kind"] == "sequence"
    (row,) = answer["output_probability"]["data"]
    assert set(row) == {"0", "1", "2"} and abs(sum(row.values()) - 1) < 1e-5
    assert answer["output_label"]["data"] == [2]
    # A mistake is explained from the published manifest, before any call is made.
    wrong = _cli(node, buyer_dir, "try", str(model_id), "1, 2", "--json")
    assert wrong.returncode == 51
    refusal = json.loads(wrong.stderr)
    assert refusal["error"] == "inference_input_shape" and "axis 1 is 2" in refusal["message"]

    # The browser: feature names, empty boxes with the card's example as hints.
    page, _ = open_page(browser, node, creator)
    page.goto(f"{base}/models/{model_id}")
    for name, hint in zip(FEATURES, ["6.7", "3", "5.2", "2.3"], strict=True):
        box = page.get_by_label(name)
        expect(box).to_have_value("")
        expect(box).to_have_attribute("placeholder", hint)
    for name, value in zip(FEATURES, ["6.7", "3.0", "5.2", "2.3"], strict=True):
        page.get_by_label(name).fill(value)
    page.click("#try-form button[type=submit]")
    scores = page.locator("[data-output=output_probability]")
    expect(scores.locator("th").first).to_have_text("virginica")  # best first
    expect(scores.locator("th")).to_have_count(3)
    expect(page.locator("code.output[data-output=output_label]")).to_have_text("2 (virginica)")
    shot(page, "06-try-zipmap-classifier")

    # A bad value is one line for the person, never a traceback or a server error.
    page.get_by_label(FEATURES[0]).fill("abc")
    page.click("#try-form button[type=submit]")
    error = page.locator("#try-result .error")
    expect(error).to_contain_text("sepal length (cm) of X must be a number")
    assert "\n" not in error.inner_text().strip() and "Traceback" not in page.content()
    page.context.close()


def test_a_digit_drawn_on_the_canvas_is_tried(browser: Any, demo_node: tuple[Node, str]) -> None:
    node, base = demo_node
    digits = next(
        m for m in httpx.get(f"{base}/v1/models").json()["items"] if m["name"] == "digits-mlp"
    )
    page, _ = open_page(browser, node, Account.create())
    page.goto(f"{base}/models/{digits['model_id']}")
    canvas = page.locator("[data-picture] canvas")
    expect(canvas).to_be_visible()  # the script shows it; without JavaScript, text only
    canvas.scroll_into_view_if_needed()  # the mouse works in the viewport
    box = canvas.bounding_box()
    assert box is not None
    # A vertical stroke down the middle: a "1".
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(
            box["x"] + box["width"] / 2, box["y"] + box["height"] * (0.15 + 0.07 * step)
        )
    page.mouse.up()
    pixels = page.locator("textarea[name='in:X']")
    drawn = pixels.input_value()
    values = [float(v) for v in drawn.split(",")]
    assert len(values) == 64 and max(values) > 8 and min(values) == 0
    assert all(0 <= v <= 16 for v in values)
    page.click("#try-form button[type=submit]")
    expect(page.locator("[data-output=probabilities] th")).to_have_count(10)
    shot(page, "07-try-drawn-digit")

    # An uploaded picture is shrunk to 8x8 the same way: dark ink counts, paper does not.
    upload = {"name": "bar.png", "mimeType": "image/png", "buffer": _bar_png(32)}
    page.locator("[data-upload]").set_input_files(upload)
    expect(pixels).not_to_have_value(drawn)  # the picture loads asynchronously
    uploaded = [float(v) for v in pixels.input_value().split(",")]
    rows = [uploaded[i : i + 8] for i in range(0, 64, 8)]
    assert all(row[0] == 0 and row[7] == 0 and max(row[3:5]) > 8 for row in rows)
    page.context.close()


def _bar_png(size: int) -> bytes:
    """A white square picture with a black vertical bar in the middle quarter, as PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = bytes(0 if size * 3 // 8 <= x < size * 5 // 8 else 255 for x in range(size))
    pixels = b"".join(b"\x00" + row for _ in range(size))  # filter 0, 8-bit gray
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )
