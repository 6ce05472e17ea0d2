# SPDX-License-Identifier: AGPL-3.0-only
"""Pages a person would trust with money: dates, license-aware buy box, the seller's
node state, refund times, the creator's dashboard and withdrawal, the wallet's network,
search cards and filters, charts, model cards, small screens.

Everything is real: the demo node (Anvil, the node's agent, SQLite index), Debian's
Chromium, and a test wallet holding Anvil dev keys (see conftest.py).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from playwright.sync_api import expect

from mercato.chain.anvil import free_port
from mercato.chain.session import demo_accounts
from mercato.node import Node
from tests.e2e.conftest import INJECTED, open_page
from tests.e2e.conftest import TestWallet as InjectedWallet

TOKEN = 10**18


def _api(base: str, path: str) -> Any:
    return httpx.get(base + path).json()


def _model_id(base: str, name: str) -> int:
    """The demo model called `name` (the first published, when a test publishes a copy)."""
    items = _api(base, "/v1/models?limit=100")["items"]
    return min(m["model_id"] for m in items if m["name"] == name)


def _sign_in(page: Any) -> None:
    page.click("#connect")
    expect(page.locator("#wallet-address")).to_contain_text("Signed in")


def _wait_indexed(base: str, path: str, check: Any) -> Any:
    """Polls the API until `check(body)` holds (the index follows the chain)."""
    deadline = time.monotonic() + 30
    while True:
        body = _api(base, path)
        if check(body):
            return body
        assert time.monotonic() < deadline, f"{path} never showed the change: {body}"
        time.sleep(0.2)


def test_versions_reviews_and_sales_show_dates_not_block_numbers(
    browser: Any, demo_node: tuple[Node, str]
) -> None:
    node, base = demo_node
    iris = _model_id(base, "iris-logreg")
    page, _ = open_page(browser, node, demo_accounts()[0])
    page.goto(f"{base}/models/{iris}")
    published = page.locator("#versions time.when").first
    expect(published).to_be_visible()
    stamp = datetime.fromisoformat(published.get_attribute("datetime").replace("Z", "+00:00"))
    block = _api(base, f"/v1/models/{iris}/versions")[0]["block_number"]
    assert node.market is not None
    chain_time = node.market.w3.eth.get_block(block)["timestamp"]
    assert stamp == datetime.fromtimestamp(chain_time, UTC)
    expect(published.locator(".ago")).to_have_text(re.compile(r"^\((just now|\d+ \w+ ago)\)$"))
    expect(published).to_have_attribute("data-local", "true")  # rewritten to local time
    expect(page.locator("#evaluations time.when").first).to_be_visible()
    assert "Block" not in page.locator("#versions thead").inner_text()
    page.context.close()


def test_download_and_review_only_for_a_license_holder(
    browser: Any, demo_node: tuple[Node, str]
) -> None:
    node, base = demo_node
    free = _model_id(base, "diabetes-gbr")
    holder = demo_accounts()[4]
    page, _ = open_page(browser, node, holder)
    page.goto(f"{base}/models/{free}")
    # Not connected: nothing to download or sign.
    expect(page.locator("#download")).to_be_hidden()
    expect(page.locator("#review-form")).to_be_hidden()
    expect(page.locator("#review-note")).to_contain_text("Connect a wallet that holds a license")
    _sign_in(page)
    # Connected, but without a license: still nothing.
    expect(page.locator("#download")).to_be_hidden()
    expect(page.locator("#review")).to_be_hidden()
    expect(page.locator("#review-note")).to_contain_text("buy it first")

    node.account_market(holder).orders.buy(free)  # a free license, straight from the SDK
    page.reload()
    expect(page.locator("#licensed")).to_contain_text("You hold a license")
    expect(page.locator("#download")).to_be_visible()
    expect(page.locator("#review")).to_be_visible()
    expect(page.locator("#buy")).to_have_count(0)
    page.context.close()


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_pending_order_shows_refund_time_and_an_offline_seller(
    browser: Any, demo_node: tuple[Node, str]
) -> None:
    node, base = demo_node
    seller, buyer = demo_accounts()[6], demo_accounts()[2]
    seller_market = node.account_market(seller)
    sample = node.settings.data_dir / "samples" / "diabetes-gbr"
    # A paid model whose owner never names this node as agent: nobody delivers it.
    model_id = seller_market.models.publish(sample, price=2 * TOKEN).model_id
    seller_market.contracts.registry.set_provider(_dead_url())
    node.account_market(buyer).orders.buy(model_id)
    _wait_indexed(base, f"/v1/models/{model_id}", lambda m: m.get("model_id") == model_id)

    page, _ = open_page(browser, node, buyer)
    page.goto(f"{base}/models/{model_id}")
    expect(page.locator("#seller")).to_have_attribute("data-state", "offline")
    expect(page.locator("#seller")).to_contain_text("offline")
    window = node.market.contracts.marketplace.delivery_window()  # type: ignore[union-attr]
    expect(page.locator("#refund-window")).to_contain_text(
        "1 day" if window == 86_400 else "within"
    )
    expect(page.locator("#pending")).to_have_count(0)  # not signed in: no order to show
    _sign_in(page)
    refund = page.locator("#pending time.when")
    expect(refund).to_be_visible()
    order = _api(base, f"/v1/orders/{buyer.address}/{model_id}")
    assert order["state"] == "pending"
    shown = datetime.fromisoformat(refund.get_attribute("datetime").replace("Z", "+00:00"))
    assert shown == datetime.fromtimestamp(order["time"], UTC)  # the on-chain deadline
    # The page shows it in the browser's own time zone.
    local = page.evaluate(
        "(iso) => new Date(iso).toLocaleString(undefined, {dateStyle: 'medium', "
        "timeStyle: 'short'})",
        refund.get_attribute("datetime"),
    )
    expect(refund.locator(".date")).to_have_text(local)

    # The buyer's own dashboard lists the order with its dates, not block numbers.
    page.click("#nav-dashboard")
    row = page.locator(f"#orders tr[data-state=pending]:has(a[href='/models/{model_id}'])")
    expect(row).to_contain_text("refund possible from")
    times = row.locator("time.when")
    expect(times).to_have_count(2)  # bought, refund possible from
    last = times.nth(1).get_attribute("datetime")
    assert datetime.fromisoformat(last.replace("Z", "+00:00")) == shown
    page.context.close()

    # The demo creator's own node answers its health check.
    online, _ = open_page(browser, node, buyer)
    online.goto(f"{base}/models/{_model_id(base, 'iris-logreg')}")
    expect(online.locator("#seller")).to_have_attribute("data-state", "online")
    online.context.close()


def test_the_owner_is_told_they_own_it_and_cannot_buy_it(
    browser: Any, demo_node: tuple[Node, str]
) -> None:
    node, base = demo_node
    owner = demo_accounts()[0]
    iris = _model_id(base, "iris-logreg")
    page, wallet = open_page(browser, node, owner)
    page.goto(f"{base}/models/{iris}")
    # Not signed in, the page cannot know; the wallet refuses before any transaction.
    page.click("#buy")
    expect(page.locator("#buy-status")).to_contain_text("You own this model")
    assert "eth_sendTransaction" not in wallet.calls
    _sign_in(page)
    expect(page.locator("#owned")).to_contain_text("You own this model")
    expect(page.locator("#buy")).to_have_count(0)
    link = page.locator("#owner-download")
    expect(link).to_be_visible()
    version = _api(base, f"/v1/models/{iris}/versions")[-1]
    assert httpx.get(base + link.get_attribute("href")).status_code == 200
    assert version["version"] == 1
    page.context.close()


def test_a_creator_withdraws_earnings_from_the_dashboard(
    browser: Any, demo_node: tuple[Node, str]
) -> None:
    """Journey (b), browser part: a sale is credited, the creator withdraws it."""
    node, base = demo_node
    creator, buyer = demo_accounts()[1], demo_accounts()[7]
    tuned = _model_id(base, "iris-logreg-tuned")
    buying = node.account_market(buyer)
    buying.orders.buy(tuned)
    assert buying.orders.wait_for_delivery(tuned, timeout=60).licensed
    credits = node.market.contracts.marketplace.credits  # type: ignore[union-attr]
    withdrawable = int(credits(creator.address)) - 1
    assert withdrawable > 0
    _wait_indexed(
        base,
        f"/v1/creators/{creator.address}/earnings",
        lambda e: int(e["credited"]) > 0,
    )

    page, _ = open_page(browser, node, creator)
    page.goto(base + "/")
    page.click("#nav-dashboard")
    expect(page.locator("#dashboard-connect")).to_be_visible()
    page.click("#dashboard-connect")  # signs in; the menu's dashboard is now this wallet's
    expect(page).to_have_url(f"{base}/creators/{creator.address}")
    expect(page.locator("h1")).to_have_text("Your dashboard")
    expect(page.locator("#withdrawable")).to_have_text(f"{withdrawable / TOKEN:g} MCT")
    expect(page.locator("#per-model")).to_contain_text("iris-logreg-tuned")
    points = page.locator("svg.chart polyline.series").first.get_attribute("points")
    assert len(points.split()) >= 3  # a running total over time, not a lone dot
    page.evaluate(
        """() => {
          window.__buttonStates = [];
          const record = () => {
            const b = document.getElementById('withdraw');
            if (b) window.__buttonStates.push([b.disabled, b.textContent]);
          };
          new MutationObserver(record).observe(document.body,
            {subtree: true, childList: true, attributes: true, characterData: true});
        }"""
    )
    token = node.market.contracts.token  # type: ignore[union-attr]
    before = int(token.balance_of(creator.address))
    page.click("#withdraw")
    expect(page.locator("#withdraw-status")).to_contain_text("tokens are in your wallet")
    states = page.evaluate("window.__buttonStates")
    assert [True, "Waiting for confirmation…"] in states
    assert int(token.balance_of(creator.address)) - before == withdrawable
    expect(page.locator("#withdrawable")).to_have_text("0 MCT")
    expect(page.locator("#withdrawn")).to_contain_text(f"{withdrawable / TOKEN:g} MCT")
    expect(page.locator("#withdraw")).to_be_disabled()
    expect(page.locator("#txlist li[data-state=confirmed]")).to_contain_text("Withdraw")
    page.context.close()


class OtherChainWallet(InjectedWallet):
    """A wallet on mainnet that does not know the local chain until it is added."""

    def __init__(self, account: LocalAccount, rpc_url: str) -> None:
        super().__init__(account, rpc_url)
        self.chain_id = 1
        self.known = {1}
        self.added: list[dict[str, Any]] = []

    def handle(self, method: str, params_json: str) -> str:
        params = json.loads(params_json)
        if method == "eth_chainId":
            self.calls.append(method)
            return json.dumps({"result": hex(self.chain_id)})
        if method == "wallet_switchEthereumChain":
            self.calls.append(method)
            wanted = int(params[0]["chainId"], 16)
            if wanted not in self.known:
                return json.dumps({"error": {"code": 4902, "message": "Unrecognized chain"}})
            self.chain_id = wanted
            return json.dumps({"result": None})
        if method == "wallet_addEthereumChain":
            self.calls.append(method)
            self.added.append(params[0])
            self.known.add(int(params[0]["chainId"], 16))
            return json.dumps({"result": None})
        return super().handle(method, params_json)


def test_a_wallet_on_another_chain_is_offered_to_switch_and_add_it(
    browser: Any, demo_node: tuple[Node, str]
) -> None:
    node, base = demo_node
    assert node.session is not None
    wallet = OtherChainWallet(demo_accounts()[4], node.session.rpc_url)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # The wallet also keeps the page's event listeners, to tell it the chain changed.
    assert "  on() {}," in INJECTED
    context.add_init_script(
        INJECTED.replace(
            "  on() {},", "  on(name, fn) { (window.__listeners ||= {})[name] = fn; },"
        )
    )
    page = context.new_page()
    page.expose_function("__testWallet", wallet.handle)
    page.goto(base + "/")
    banner = page.locator("#network")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("on chain 1")
    expect(page.locator("#rpc-url")).to_have_text(node.session.rpc_url)
    page.click("#connect")  # refused: nothing is signed on the wrong chain
    assert "personal_sign" not in wallet.calls

    page.click("#switch-network")
    expect(banner).to_be_hidden()
    chain_id = node.market.chain_id  # type: ignore[union-attr]
    assert wallet.calls.count("wallet_switchEthereumChain") == 2  # unknown, then after adding
    assert wallet.added == [
        {
            "chainId": hex(chain_id),
            "chainName": f"Mercato local chain {chain_id}",
            "rpcUrls": [node.session.rpc_url],
            "nativeCurrency": {"name": "Ether", "symbol": "ETH", "decimals": 18},
        }
    ]
    _sign_in(page)

    wallet.chain_id = 1  # switched back in the wallet itself: the page notices
    page.evaluate("window.__listeners.chainChanged('0x1')")
    expect(banner).to_be_visible()
    context.close()


def test_search_cards_filters_and_model_card(browser: Any, demo_node: tuple[Node, str]) -> None:
    node, base = demo_node
    page, _ = open_page(browser, node, demo_accounts()[4])
    page.goto(base + "/")
    title = page.locator("a.title", has_text=re.compile("^iris-logreg$"))
    card = page.locator(".model-card", has=title)
    creator = demo_accounts()[0].address
    expect(card.locator("a.creator")).to_have_text(f"{creator[:6]}…{creator[-4:]}")
    expect(card.locator(".summary")).to_contain_text("Classifies iris flowers")
    assert "scikit-learn/iris" not in card.inner_text()
    summary_box = card.locator(".summary").evaluate(
        "e => [getComputedStyle(e).whiteSpace, e.getClientRects().length]"
    )
    assert summary_box == ["nowrap", 1]  # one line
    assert card.locator(".price").evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"

    tasks = page.locator("#filter-task option").all_inner_texts()
    models = _api(base, "/v1/models?limit=100")["items"]
    assert tasks[1:] == sorted({m["task"] for m in models if m["task"]})
    licenses = page.locator("#filter-license option").all_inner_texts()
    assert licenses[1:] == sorted({m["license"] for m in models if m["license"]})
    page.select_option("#filter-task", "tabular-regression")
    expect(page.locator("#model-list .model-card")).to_have_count(
        sum(m["task"] == "tabular-regression" for m in models)
    )
    expect(page.locator("#model-list")).to_contain_text("diabetes-gbr")
    # A link with a task no model has keeps it chosen, and says so.
    page.goto(base + "/?task=speech-recognition")
    expect(page.locator("#filter-task option:checked")).to_have_text(
        "speech-recognition (no model)"
    )
    expect(page.locator("#results")).to_contain_text("No model matches")

    tuned = _model_id(base, "iris-logreg-tuned")
    parent = _model_id(base, "iris-logreg")
    page.goto(f"{base}/models/{tuned}")
    text = page.locator("#card-text").inner_text()
    assert "iris-logreg-tuned" not in text.splitlines()[0]  # the name is not repeated
    assert "scikit-learn/iris accuracy" not in text
    expect(page.locator("#base-model a")).to_have_attribute("href", f"/models/{parent}")
    expect(page.locator("td.shape").first).to_have_text("N \N{MULTIPLICATION SIGN} 4")
    page.context.close()


def test_charts_have_round_ticks_a_fitting_range_and_a_legend(
    browser: Any, demo_node: tuple[Node, str]
) -> None:
    node, base = demo_node
    iris = _model_id(base, "iris-logreg")
    page, _ = open_page(browser, node, demo_accounts()[4])
    page.goto(f"{base}/models/{iris}")
    chart = page.locator("svg.chart").first
    legend = chart.locator(".legend-item").all_text_contents()
    assert len(legend) == 2 and all(t.startswith("accuracy · 0x") for t in legend)
    ticks = [
        float(t)
        for t in chart.locator("text.tick[text-anchor=end]").all_text_contents()
        if re.fullmatch(r"-?[0-9.]+", t)
    ]
    step = round(ticks[1] - ticks[0], 10)
    assert all(round(b - a, 10) == step for a, b in itertools.pairwise(ticks))
    assert round(step / 10 ** int(f"{step:e}".split("e")[1]), 10) in (1, 2, 2.5, 5)
    scores = [e["score"] for e in _api(base, f"/v1/models/{iris}/evaluations")]
    low = min(float(s) for s in scores)
    # Scores in the 0.6-0.7 band use the chart's height, not its top tenth.
    assert ticks[0] > 0 and ticks[0] <= low and ticks[-1] <= 1.0 + step
    page.context.close()


def test_favicon_and_one_line_page_errors(demo_node: tuple[Node, str]) -> None:
    _, base = demo_node
    icon = httpx.get(base + "/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in icon.text and "http" not in icon.text.replace("http://www.w3.org", "")
    head = httpx.get(base + "/").text
    assert '<link rel="icon" href="/static/favicon.svg"' in head
    missing = httpx.get(base + "/models/999999")
    assert missing.status_code == 404 and "Not here" in missing.text


PAGES = {
    "home": "/",
    "search": "/?q=iris",
    "model": "/models/{iris}",
    "try": None,  # reached by submitting the model page's form without JavaScript
    "publish": "/publish",
    "dashboard": "/creators/{creator}",
    "missing": "/models/999999",
}


@pytest.mark.parametrize("width", [1280, 390])
def test_screenshots_of_every_page_and_no_sideways_scroll(
    browser: Any, demo_node: tuple[Node, str], width: int
) -> None:
    from tests.e2e.conftest import ARTIFACTS

    node, base = demo_node
    iris = _model_id(base, "iris-logreg")
    creator = demo_accounts()[0].address
    if not _api(base, f"/v1/creators/{creator}/earnings")["credits"]:
        buyer = node.account_market(demo_accounts()[8])  # a sale, so the chart has a line
        buyer.orders.buy(iris)
        assert buyer.orders.wait_for_delivery(iris, timeout=60).licensed
        _wait_indexed(base, f"/v1/creators/{creator}/earnings", lambda e: e["credits"])
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    wide: list[str] = []
    for name, path in PAGES.items():
        if path is None:
            page.goto(f"{base}/models/{iris}")
            page.evaluate("document.getElementById('try-form').removeAttribute('hx-post')")
            page.click("#try-form button[type=submit]")
            page.wait_for_load_state()
        else:
            page.goto(base + path.format(iris=iris, creator=creator))
        page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
        sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if sizes[0] > sizes[1]:
            wide.append(f"{name}: {sizes[0]} > {sizes[1]}")
    context.close()

    # The creator's own view: signed in, with the Withdraw button and their purchases.
    own, _ = open_page(browser, node, demo_accounts()[0])
    own.set_viewport_size({"width": width, "height": 900})
    own.goto(base + "/dashboard")
    own.click("#dashboard-connect")
    expect(own.locator("#withdraw")).to_be_visible()
    own.screenshot(path=str(folder / f"dashboard-own-{width}.png"), full_page=True)
    sizes = own.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if sizes[0] > sizes[1]:
        wide.append(f"dashboard-own: {sizes[0]} > {sizes[1]}")
    own.goto(f"{base}/models/{iris}")  # the owner's buy box
    expect(own.locator("#owned")).to_be_visible()
    own.screenshot(path=str(folder / f"model-own-{width}.png"), full_page=True)
    own.context.close()

    assert (folder / f"dashboard-{width}.png").stat().st_size > 0
    if width == 390:
        assert wide == []
