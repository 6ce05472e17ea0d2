# SPDX-License-Identifier: AGPL-3.0-only
"""A real Anvil with the contracts deployed, markets on it, and the sample packages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.config import Settings
from mercato.models.package import ModelPackage
from mercato.models.samples import build_samples

TOKEN = 10**18


@dataclass
class Chain:
    anvil: AnvilSupervisor
    w3: Web3
    deployment: Deployment
    accounts: list[LocalAccount]
    packages: dict[str, ModelPackage]

    def market(self, data_dir: Path, account: LocalAccount | None = None) -> Market:
        settings = Settings(data_dir=data_dir, rpc_url=self.anvil.rpc_url)
        return Market(settings, account=account, deployment=self.deployment)

    def fresh_account(self) -> LocalAccount:
        """A new key (not one of Anvil's), with gas and 1,000 MCT."""
        account: LocalAccount = Account.create()
        self.w3.provider.make_request(
            "anvil_setBalance",  # type: ignore[arg-type]
            [account.address, hex(10**20)],
        )
        minter = Market(
            Settings(data_dir=self.anvil.chain_dir.parent, rpc_url=self.anvil.rpc_url),
            account=self.accounts[0],
            deployment=self.deployment,
        )
        minter.contracts.token.mint(account.address, 1_000 * TOKEN)
        return account

    def time_travel(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


@pytest.fixture(scope="package")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelPackage]:
    return build_samples(tmp_path_factory.mktemp("samples"), ["iris-logreg", "digits-mlp"])


@pytest.fixture
def chain(anvil: AnvilSupervisor, w3: Web3, packages: dict[str, ModelPackage]) -> Chain:
    accounts = dev_accounts(10)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    return Chain(anvil, w3, deployment, accounts, packages)
