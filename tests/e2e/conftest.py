# SPDX-License-Identifier: AGPL-3.0-only
"""Browser tier: a real node, Debian's Chromium driven by Playwright, and a test wallet.

The wallet is an EIP-1193 provider injected as `window.ethereum`. Its `request` calls
cross into Python (`page.expose_function`): accounts and signatures come from an Anvil
dev key held by eth-account; transactions and reads are forwarded to Anvil, which has
those dev accounts unlocked. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount

from mercato.chain.anvil import free_port
from mercato.chain.session import demo_accounts
from mercato.config import Settings
from mercato.node import Node, seed_demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BUNDLE = Path(__file__).resolve().parents[2] / "src/mercato/gateway/static/wallet.js"

if not Path(CHROMIUM).exists() and not os.environ.get("MERCATO_REQUIRE_BROWSER"):
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium); set MERCATO_REQUIRE_BROWSER=1 "
        "to make this a failure",
        allow_module_level=True,
    )

INJECTED = """
window.ethereum = {
  isMercatoTestWallet: true,
  async request({ method, params }) {
    const answer = JSON.parse(await window.__testWallet(method, JSON.stringify(params || [])));
    if (answer.error) {
      const error = new Error(answer.error.message);
      error.code = answer.error.code;
      throw error;
    }
    return answer.result;
  },
  on() {},
  removeListener() {},
};
"""


def _typed_numbers(data: dict[str, Any]) -> dict[str, Any]:
    """The permit's uint fields travel as decimal strings; eth-account wants integers."""
    types = {f["name"]: f["type"] for f in data["types"][data["primaryType"]]}
    data["message"] = {
        k: int(v) if types.get(k, "").startswith("uint") else v for k, v in data["message"].items()
    }
    data["domain"]["chainId"] = int(data["domain"]["chainId"])
    return data


class TestWallet:
    """The Python side of the injected provider."""

    def __init__(self, account: LocalAccount, rpc_url: str) -> None:
        self.account = account
        self.rpc_url = rpc_url
        self.calls: list[str] = []

    def handle(self, method: str, params_json: str) -> str:
        self.calls.append(method)
        params = json.loads(params_json)
        if method in ("eth_requestAccounts", "eth_accounts"):
            return json.dumps({"result": [self.account.address]})
        if method == "personal_sign":
            message = bytes.fromhex(params[0].removeprefix("0x"))
            signed = self.account.sign_message(encode_defunct(primitive=message))
            return json.dumps({"result": "0x" + bytes(signed.signature).hex()})
        if method == "eth_signTypedData_v4":
            data = _typed_numbers(json.loads(params[1]))
            signed = self.account.sign_message(encode_typed_data(full_message=data))
            return json.dumps({"result": "0x" + bytes(signed.signature).hex()})
        answer = httpx.post(
            self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        ).json()
        return json.dumps({k: answer[k] for k in ("result", "error") if k in answer})


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not BUNDLE.exists():
        pytest.fail("The web bundle is missing: run 'npm run build:web' (scripts/bootstrap does).")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def demo_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str]]:
    """A node with the demo models, indexed; yields (node, gateway URL)."""
    port = free_port()
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("node"),
        anvil_port=free_port(),
        gateway_port=port,
        try_per_minute=1000,
    )
    node = Node(settings, accounts=demo_accounts()[:2])
    node.start()
    try:
        ids = seed_demo(node, demo_accounts()[:2])
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not all(httpx.get(f"{base}/v1/models/{m}").status_code == 200 for m in ids):
            if time.monotonic() > deadline:
                raise TimeoutError("the demo models never reached the index")
            time.sleep(0.2)
        yield node, base
    finally:
        node.stop()


def open_page(browser: Any, node: Node, account: LocalAccount) -> tuple[Any, TestWallet]:
    """A fresh browser context whose window.ethereum is `account`."""
    assert node.session is not None
    wallet = TestWallet(account, node.session.rpc_url)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.add_init_script(INJECTED)
    page = context.new_page()
    page.expose_function("__testWallet", wallet.handle)
    page.set_default_timeout(30_000)
    return page, wallet


def shot(page: Any, name: str) -> Path:
    """Saves a full-page screenshot under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
