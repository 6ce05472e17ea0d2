# SPDX-License-Identifier: AGPL-3.0-only
"""A small Mercato network for end-to-end tests: one Anvil, a creator's node and a
buyer's node as real `mercato node up` processes with separate data directories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.deployment import Deployment
from mercato.client import Market
from mercato.config import Settings
from mercato.wallet import Wallet, keystore_dir

PASSWORD = "correct horse battery staple"
NODE_START_TIMEOUT = 120


@dataclass
class NodeProcess:
    """`mercato node up` in a child process, started and stopped like a service."""

    data_dir: Path
    args: list[str]
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "mercato.cli",
            "node",
            "up",
            "--data-dir",
            str(self.data_dir),
        ]
        self.process = subprocess.Popen(
            [*command, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        ready = threading.Event()
        threading.Thread(target=self._read, args=(self.process, ready), daemon=True).start()
        # `ready` is also set when the process closes its output, so a crash fails fast.
        if not ready.wait(NODE_START_TIMEOUT) or self.process.poll() is not None:
            self.stop()
            raise AssertionError("node did not start:\n" + "".join(self.output))

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _read(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line)
            if "ready" in line:
                ready.set()
        ready.set()


@dataclass
class Network:
    anvil: AnvilSupervisor
    creator_dir: Path
    buyer_dir: Path
    password_file: Path
    creator_node: NodeProcess
    buyer_node: NodeProcess
    creator_gateway: str
    parent_creator: LocalAccount
    creator: LocalAccount
    buyers: list[LocalAccount]

    @property
    def rpc_url(self) -> str:
        return self.anvil.rpc_url

    @property
    def deployment(self) -> Deployment:
        record = Deployment.load(self.creator_dir, 31_337)
        assert record is not None
        return record

    def market(self, data_dir: Path, account: LocalAccount | None = None) -> Market:
        settings = Settings(
            data_dir=data_dir, rpc_url=self.rpc_url, provider_url=self.creator_gateway
        )
        return Market(settings, account=account, deployment=self.deployment)

    def cli(
        self, *args: str, data_dir: Path | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Runs `mercato ARGS` as the buyer (by default) against the shared chain."""
        folder = data_dir or self.buyer_dir
        command = [sys.executable, "-m", "mercato.cli", *args]
        env = {
            **os.environ,
            "MERCATO_DATA_DIR": str(folder),
            "MERCATO_RPC_URL": self.rpc_url,
            "COLUMNS": "200",
        }
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)

    def time_travel(self, seconds: int) -> None:
        w3 = Web3(Web3.HTTPProvider(self.rpc_url))
        w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def import_keys(data_dir: Path, accounts: list[LocalAccount]) -> None:
    # PBKDF2 with few rounds keeps the tests quick; the node opens any KDF the same way.
    wallet = Wallet(keystore_dir(data_dir), kdf="pbkdf2", iterations=1_000)
    for account in accounts:
        wallet.import_private_key(account.key, PASSWORD)


@pytest.fixture(scope="package")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("network")
    anvil = AnvilSupervisor(root / "chain", port=free_port())
    anvil.start()
    accounts = dev_accounts(10)
    parent_creator, creator, buyers = accounts[1], accounts[2], accounts[3:]
    creator_dir, buyer_dir = root / "creator", root / "buyer"
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n")
    import_keys(creator_dir, [creator, parent_creator])
    import_keys(buyer_dir, buyers)
    gateway_port = free_port()
    creator_gateway = f"http://127.0.0.1:{gateway_port}"
    common = ["--rpc-url", anvil.rpc_url, "--password-file", str(password_file)]
    # The settings file, not a flag, so `mercato publish` records the same provider URL.
    (creator_dir / "config.toml").write_text(f"gateway_port = {gateway_port}\n")
    creator_node = NodeProcess(creator_dir, [*common, "--account", creator.address])
    buyer_node = NodeProcess(
        buyer_dir,
        [*common, "--gateway-port", str(free_port()),
         "--deployment", str(creator_dir / "deployments" / "31337.json")],
    )  # fmt: skip
    try:
        creator_node.start()  # deploys on the fresh chain and funds the dev accounts
        buyer_node.start()
        yield Network(
            anvil, creator_dir, buyer_dir, password_file, creator_node, buyer_node,
            creator_gateway, parent_creator, creator, buyers,
        )  # fmt: skip
    finally:
        creator_node.stop()
        buyer_node.stop()
        anvil.stop()
