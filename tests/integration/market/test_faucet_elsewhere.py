# SPDX-License-Identifier: AGPL-3.0-only
"""On a chain that is not a local development chain, the faucet says in a sentence what
a fresh wallet needs instead of failing on gas (a real Anvil, run with a public chain id)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.deployment import deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.config import Settings

PUBLIC_CHAIN_ID = 8_453  # any id outside the local ones


def test_the_faucet_on_another_chain_says_what_is_needed(tmp_path: Path) -> None:
    anvil = AnvilSupervisor(tmp_path / "anvil", port=free_port(), chain_id=PUBLIC_CHAIN_ID)
    anvil.start()
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        deploy(Web3Backend(w3, dev_accounts(1)[0])).save(tmp_path / "data")
        password = tmp_path / "password"
        password.write_text("correct horse battery staple\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
        env |= {"MERCATO_DATA_DIR": str(tmp_path / "data"), "MERCATO_RPC_URL": anvil.rpc_url}

        def mercato(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "mercato.cli", *args, "--password-file", str(password)],
                capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL,
            )  # fmt: skip

        created = mercato("wallet", "new", "--json")
        assert created.returncode == 0, created.stderr
        address = json.loads(created.stdout)["address"]
        result = mercato("wallet", "faucet")
        assert result.returncode == 92
        message = " ".join(result.stderr.split())
        assert f"chain {PUBLIC_CHAIN_ID} is not one" in message
        assert "native currency" in message and address in message
        assert "Traceback" not in result.stderr
        assert w3.eth.get_balance(address) == 0  # nothing was given

        # What the web marketplace's withdraw button has a browser wallet sign.
        settings = Settings(data_dir=tmp_path / "data", rpc_url=anvil.rpc_url)
        market = Market(settings)
        call = market.earnings.withdraw_call()
        assert call["to"] == market.contracts.marketplace.address
        assert call["data"] == "0x" + Web3.keccak(text="withdraw()")[:4].hex()
        assert market.earnings.withdrawable(address) == 0

        # A provider URL is the seller's choice: off a local chain, 'show' does not probe
        # this machine's own services with it.
        with _health_server() as url:
            assert httpx.get(f"{url}/v1/health").status_code == 200
            assert market.models.provider_reachable(url) is False
    finally:
        anvil.stop()


@contextmanager
def _health_server() -> Iterator[str]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib names it
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
