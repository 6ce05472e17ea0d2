# SPDX-License-Identifier: AGPL-3.0-only
"""A buyer browses, tries, buys, downloads and reviews; a creator publishes from the browser."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
from playwright.sync_api import expect

from mercato.chain.session import demo_accounts
from mercato.node import Node
from tests.e2e.conftest import open_page, shot


def _api(base: str, path: str) -> Any:
    return httpx.get(base + path).json()


IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_ROW = ["5.1", "3.5", "1.4", "0.2"]


def _sign_in(page: Any) -> None:
    page.click("#connect")
    expect(page.locator("#wallet-address")).to_contain_text("Signed in")


def test_browse_try_buy_download_review(browser: Any, demo_node: tuple[Node, str]) -> None:
    node, base = demo_node
    buyer = demo_accounts()[3]
    page, wallet = open_page(browser, node, buyer)

    page.goto(base + "/")
    expect(page.locator("#model-list")).to_contain_text("iris-logreg")
    page.fill("input[name=q]", "digits")
    # HTMX swaps the results in place while typing; only the digits model is left.
    expect(page.locator("#model-list .model-card")).to_have_count(1)
    expect(page.locator("#model-list")).to_contain_text("digits-mlp")
    shot(page, "01-search")

    iris = next(m for m in _api(base, "/v1/models")["items"] if m["name"] == "iris-logreg")
    page.goto(f"{base}/models/{iris['model_id']}")
    expect(page.locator("#price")).to_have_text("5 MCT")
    expect(page.locator("#fee")).to_contain_text("0 MCT")  # the fee shows before signing
    expect(page.locator("svg.lineage")).to_be_visible()
    # The form starts empty, each box named after its feature, the card's example as hint.
    expect(page.get_by_label("sepal length (cm)")).to_have_attribute("placeholder", "5.1")
    for label, value in zip(IRIS_FEATURES, IRIS_ROW, strict=True):
        page.get_by_label(label).fill(value)
    page.click("#try-form button[type=submit]")
    expect(page.locator("[data-output=probabilities] th").first).to_have_text("setosa")
    shot(page, "02-model-try")

    _sign_in(page)
    with page.expect_download(timeout=90_000) as download_info:
        page.click("#buy")
    expect(page.locator("#buy-status")).to_contain_text("Verified", timeout=90_000)
    path = download_info.value.path()
    version = _api(base, f"/v1/models/{iris['model_id']}/versions")[-1]
    # Decrypted in the browser; the bytes are the plaintext the chain commits to.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == version["plaintext_sha256"]
    assert "eth_signTypedData_v4" in wallet.calls  # first purchase: permit, no approve
    expect(page.locator("#txlist li[data-state=confirmed]")).to_have_count(1)
    shot(page, "03-bought")

    page.select_option("#rating", "4")
    page.click("#review")
    expect(page.locator("#review-status")).to_contain_text("Review recorded", timeout=30_000)
    deadline = time.monotonic() + 15
    reviews: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not reviews:
        reviews = _api(base, f"/v1/models/{iris['model_id']}/reviews")
        time.sleep(0.2)
    assert [(r["reviewer"], r["rating"]) for r in reviews] == [(buyer.address, 4)]
    page.reload()
    expect(page.locator("#reviews")).to_contain_text("★★★★☆")
    page.context.close()


def _publish_sample(
    browser: Any, node: Node, base: str, creator: Any, name: str, price: str
) -> tuple[Any, Any]:
    """Publish the iris sample from the web form as `creator`; the page and its result link."""
    page, _ = open_page(browser, node, creator)
    page.goto(base + "/publish")
    _sign_in(page)
    sample = node.settings.data_dir / "samples" / "iris-logreg"
    page.fill("#pub-name", name)
    page.set_input_files("#pub-files", [str(sample / "model.onnx"), str(sample / "README.md")])
    page.fill("#pub-price", price)
    page.click("#publish")
    link = page.locator("#published-link")
    expect(link).to_be_visible(timeout=60_000)
    return page, link


def test_publish_from_the_browser(browser: Any, demo_node: tuple[Node, str]) -> None:
    node, base = demo_node
    creator = demo_accounts()[0]  # the node holds this key, so its agent can deliver
    page, link = _publish_sample(browser, node, base, creator, "iris-from-browser", "2.5")
    shot(page, "04-published")
    model_id = int(link.inner_text().removeprefix("model #"))

    deadline = time.monotonic() + 15
    while httpx.get(f"{base}/v1/models/{model_id}").status_code != 200:
        assert time.monotonic() < deadline, "the published model never reached the index"
        time.sleep(0.2)
    detail = _api(base, f"/v1/models/{model_id}")
    assert (detail["name"], detail["price"], detail["creator"]) == (
        "iris-from-browser",
        str(25 * 10**17),
        creator.address,
    )
    link.click()
    expect(page.locator("#model-name")).to_have_text("iris-from-browser")

    page.goto(f"{base}/creators/{creator.address}")
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, "05-dashboard")
    page.context.close()


def test_pages_read_without_javascript(browser: Any, demo_node: tuple[Node, str]) -> None:
    _, base = demo_node
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base + "/?q=tuned")
    expect(page.locator("#model-list .model-card")).to_have_count(1)
    page.click("text=iris-logreg-tuned")
    expect(page.locator("svg.lineage")).to_contain_text("iris-logreg")
    for label, value in zip(IRIS_FEATURES, IRIS_ROW, strict=True):
        page.get_by_label(label).fill(value)
    page.click("#try-form button[type=submit]")  # a plain form post, no HTMX
    expect(page.locator("[data-output]")).to_have_count(2)
    expect(page.locator("a.back")).to_be_visible()  # a whole page, not a fragment
    context.close()


def test_a_browser_creator_names_the_node_as_agent_and_sales_get_delivered(
    browser: Any, demo_node: tuple[Node, str]
) -> None:
    node, base = demo_node
    creator = demo_accounts()[5]  # funded, but the node does not hold this key
    page, link = _publish_sample(browser, node, base, creator, "iris-by-a-browser-creator", "1")
    expect(page.locator("#txlist")).to_contain_text("Let this node deliver your keys: confirmed")
    model_id = int(link.inner_text().removeprefix("model #"))
    page.context.close()

    contracts = node.market.contracts  # type: ignore[union-attr]
    assert contracts.marketplace.agent_of(creator.address) == demo_accounts()[0].address
    buyer = node.account_market(demo_accounts()[8])
    buyer.orders.buy(model_id)
    assert buyer.orders.wait_for_delivery(model_id, timeout=60).licensed
