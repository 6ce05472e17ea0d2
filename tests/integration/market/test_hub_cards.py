# SPDX-License-Identifier: AGPL-3.0-only
"""Six model cards written after popular Hugging Face Hub cards, each published with the
real `mercato publish` against a real node and Anvil, then read back from the node's
index through its REST API and its model page: licences as the Hub names them, the
self-reported `model-index`, widget examples, CO2, gating, base model and relation.
Tiny ONNX models stand in for the real weights (the cards are what is tested)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mercato.models.package import load_package

from .conftest import Network

CARDS = Path(__file__).resolve().parents[2] / "data" / "cards"
POLL_LIMIT = 120.0
# Paid where the card has the sections a buyer reads; the two free ones are free on
# purpose (a card without them, and a non-commercial licence).
PRICES = {
    "llm-llama31": "4",
    "sd-openrail": "2",
    "sentence-transformer": "0",
    "whisper-small": "3",
    "cc-by-nc": "0",
    "other-license": "6",
}
OTHER_TERMS = "QWEN RESEARCH LICENSE AGREEMENT\n\nFor research only. <script>alert(1)</script>\n"


def _model() -> onnx.ModelProto:
    weights = np.arange(32, dtype=np.float32).reshape(4, 8)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 8])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _package(root: Path, card: str) -> Path:
    folder = root / card
    folder.mkdir()
    onnx.save_model(_model(), str(folder / "model.onnx"))
    shutil.copy(CARDS / f"{card}.md", folder / "README.md")
    if card == "other-license":
        (folder / "LICENSE").write_text(OTHER_TERMS)
    return folder


def run(network: Network, *args: str) -> subprocess.CompletedProcess[str]:
    """`mercato ARGS` as the creator, with no terminal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    env |= {
        "MERCATO_DATA_DIR": str(network.creator_dir),
        "MERCATO_RPC_URL": network.rpc_url,
        "COLUMNS": "200",
    }
    auth = ["--account", network.creator.address, "--password-file", str(network.password_file)]
    return subprocess.run(
        [sys.executable, "-m", "mercato.cli", *args, *auth],
        capture_output=True, text=True, timeout=240, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def until(check: Callable[[], Any], what: str) -> Any:
    """Polls `check` until it returns something truthy (the node's index catching up)."""
    deadline = time.monotonic() + POLL_LIMIT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


@dataclass(frozen=True)
class Published:
    model_id: int
    folder: Path
    stderr: str


@pytest.fixture(scope="module")
def published(network: Network, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Published]:
    root = tmp_path_factory.mktemp("hub-cards")
    out = {}
    for card, price in PRICES.items():
        folder = _package(root, card)
        done = run(network, "publish", str(folder), "--price", price, "--json")
        assert done.returncode == 0, done.stderr
        out[card] = Published(int(json.loads(done.stdout)["model_id"]), folder, done.stderr)
    return out


def _detail(network: Network, model_id: int) -> dict[str, Any] | None:
    answer = httpx.get(f"{network.creator_gateway}/v1/models/{model_id}", timeout=30)
    if answer.status_code != 200 or not answer.json().get("card"):
        return None
    document: dict[str, Any] = answer.json()
    return document


def _page(network: Network, model_id: int) -> str:
    answer = httpx.get(f"{network.creator_gateway}/models/{model_id}", timeout=30)
    assert answer.status_code == 200
    return answer.text


def test_every_card_round_trips_through_publish_index_api_and_page(
    network: Network, published: dict[str, Published]
) -> None:
    for card, item in published.items():
        detail = until(
            lambda mid=item.model_id: _detail(network, mid),  # type: ignore[misc]
            f"the index to show {card}",
        )
        expected = load_package(item.folder).manifest["card"]
        assert detail["card"] == expected, card  # every Hub field survives, as published
        page = _page(network, item.model_id)
        assert f"<code>{expected['license']}</code>" in page, card


def test_licences_show_the_hubs_name_and_link(
    network: Network, published: dict[str, Published]
) -> None:
    llama = _page(network, published["llm-llama31"].model_id)
    assert (
        'href="https://huggingface.co/meta-llama/Meta-Llama-3.1-70B-Instruct/blob/main/LICENSE"'
        in llama
    )
    assert "Llama 3.1 Community License Agreement" in llama
    openrail = _page(network, published["sd-openrail"].model_id)
    assert "CreativeML OpenRAIL-M" in openrail
    nc = _page(network, published["cc-by-nc"].model_id)
    assert 'href="https://spdx.org/licenses/CC-BY-NC-4.0.html"' in nc
    assert "Creative Commons Attribution Non Commercial 4.0" in nc
    other = _page(network, published["other-license"].model_id)
    assert '<span id="license-name">qwen-research</span>' in other
    assert "see <code>LICENSE</code> in the package" in other
    # The custom terms are readable before paying (the package itself is encrypted),
    # escaped like every text the card brings.
    assert "For research only. &lt;script&gt;alert(1)&lt;/script&gt;" in other
    assert "<script>alert(1)</script>" not in other


def test_self_reported_results_sit_beside_on_chain_evaluations(
    network: Network, published: dict[str, Published]
) -> None:
    page = _page(network, published["whisper-small"].model_id)
    assert "self-reported" in page
    table = page.split('id="self-reported"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 4  # a header and the three results
    assert "LibriSpeech (clean) (test)" in table and "3.432213777886737" in table
    assert 'href="https://huggingface.co/spaces/hf-audio/open_asr_leaderboard"' in table


def test_hub_fields_are_shown_before_purchase(
    network: Network, published: dict[str, Published]
) -> None:
    llama = _page(network, published["llm-llama31"].model_id)
    assert 'id="gating"' in llama and "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT" in llama
    assert "Job title (select: Student, Research Graduate, AI researcher, Other)" in llama
    assert '<span class="pill" id="base-model-relation">finetune</span>' in llama
    assert "en, de, fr, it, pt, hi, es, th" in llama
    assert '<dd id="pipeline-tag">text-generation</dd>' in llama
    sd = _page(network, published["sd-openrail"].model_id)
    assert "11250000 g CO₂eq" in sd and "hardware used: A100 PCIe 40GB" in sd
    assert "Pikachu in Paris" in sd  # widget prompts, shown as examples
    assert "laion/laion2B-en" in sd
    qwen = _page(network, published["other-license"].model_id)
    assert "quantized" in qwen


def test_tabular_widget_rows_are_ready_made_try_inputs(
    network: Network, published: dict[str, Published]
) -> None:
    page = _page(network, published["cc-by-nc"].model_id)
    assert (
        """data-example='{"in:X": ["5.1", "3.5", "1.4", "0.2"]}'>A setosa and a virginica (1)"""
        in page
    )
    assert """data-example='{"in:X": ["6.3", "3.3", "6.0", "2.5"]}'""" in page


def test_a_free_card_without_buyer_sections_publishes_with_a_warning(
    published: dict[str, Published],
) -> None:
    warned = published["sentence-transformer"].stderr
    assert "warning" in warned and "intended uses" in warned and "limitations" in warned
    assert "warning" not in published["whisper-small"].stderr


def test_a_price_on_a_card_without_buyer_sections_is_refused_before_anything_is_sent(
    network: Network, tmp_path: Path
) -> None:
    registry = network.market(network.creator_dir).contracts.registry
    before = registry.total_models()
    folder = _package(tmp_path, "sentence-transformer")
    refused = run(network, "publish", str(folder), "--price", "1")
    assert refused.returncode == 52, refused.stderr
    assert "## Uses" in refused.stderr and "Bias, Risks, and Limitations" in refused.stderr
    assert registry.total_models() == before


def _found(network: Network, **params: str) -> list[int]:
    answer = httpx.get(f"{network.creator_gateway}/v1/models", params=params, timeout=30)
    assert answer.status_code == 200
    return [int(item["model_id"]) for item in answer.json()["items"]]


def test_hub_licence_ids_and_reported_results_are_searchable(
    network: Network, published: dict[str, Published]
) -> None:
    llama = published["llm-llama31"].model_id
    until(lambda: llama in _found(network, license="llama3.1"), "the licence filter")
    assert _found(network, license="llama3.1") == [llama]
    whisper = published["whisper-small"].model_id
    assert whisper in _found(network, q="librispeech_asr")  # a self-reported result's dataset
    assert published["other-license"].model_id in _found(network, q="qwen-research")


def test_a_paid_model_keeps_its_buyer_sections_in_every_new_version_and_price(
    network: Network, published: dict[str, Published], tmp_path: Path
) -> None:
    bare = _package(tmp_path, "sentence-transformer")  # no intended uses, no limitations
    paid = published["whisper-small"].model_id
    refused = run(network, "version", "add", str(paid), str(bare))
    assert refused.returncode == 52, refused.stderr
    assert f"Model {paid}'s card" in refused.stderr
    # A free model given an encrypted version still cannot be priced with that card.
    free = published["sentence-transformer"].model_id
    added = run(network, "version", "add", str(free), str(bare), "--encrypt")
    assert added.returncode == 0, added.stderr
    priced = run(network, "price", "set", str(free), "1")
    assert priced.returncode == 52, priced.stderr
    assert "## Uses" in priced.stderr
    listing = network.market(network.creator_dir).contracts.marketplace.listing(free)
    assert listing.price == 0
