# SPDX-License-Identifier: AGPL-3.0-only
"""A slow restore of one model's package does not hold back try calls on another
(real Anvil, real store, real restores).

The only thing added is a pause: `restore_package` is wrapped so that the first
model's restore waits until the test lets it go, standing for a package that takes
minutes to rebuild (or a hostile one). Every restore still runs for real.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.deployment import deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.client import provider as provider_module
from mercato.client.provider import ProviderService
from mercato.config import Settings
from mercato.models.package import ModelPackage
from mercato.models.runtime import TryPool
from mercato.models.samples import build_samples

pytestmark = pytest.mark.integration

GUARD = 300.0  # seconds: only so that a regression fails instead of hanging


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    return build_samples(tmp_path_factory.mktemp("samples"), ["iris-logreg"])["iris-logreg"]


def test_a_slow_restore_does_not_block_other_models(
    tmp_path: Path, package: ModelPackage, monkeypatch: pytest.MonkeyPatch
) -> None:
    anvil = AnvilSupervisor(tmp_path / "anvil", port=free_port())
    anvil.start()
    try:
        accounts = dev_accounts(2)
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        deployment = deploy(Web3Backend(w3, accounts[0]), fund=[accounts[1].address])
        settings = Settings(data_dir=tmp_path / "node", rpc_url=anvil.rpc_url)
        market = Market(settings, account=accounts[1], deployment=deployment)
        slow = int(market.models.publish(package.root, price=0).model_id)
        fast = int(market.models.publish(package.root, price=0).model_id)

        entered, release = threading.Event(), threading.Event()
        real_restore = provider_module.restore_package

        def restore(*args: Any, **kwargs: Any) -> None:
            if f"/{slow}/" in str(args[4]):  # the slow model's package folder
                entered.set()
                release.wait(GUARD)
            real_restore(*args, **kwargs)

        monkeypatch.setattr(provider_module, "restore_package", restore)
        service = ProviderService(
            Market(settings, deployment=deployment), TryPool(workers=1), [accounts[1].address]
        )
        results: dict[int, Any] = {}

        def call(model_id: int) -> None:
            results[model_id] = service.package_for(model_id)

        slow_thread = threading.Thread(target=call, args=(slow,), daemon=True)
        slow_thread.start()
        assert entered.wait(GUARD)
        fast_thread = threading.Thread(target=call, args=(fast,), daemon=True)
        fast_thread.start()
        fast_thread.join(GUARD)
        finished_while_slow_restored = fast in results and slow not in results
        release.set()
        slow_thread.join(GUARD)
        assert finished_while_slow_restored
        assert results[fast].root.is_dir() and results[slow].root.is_dir()
        assert service.package_for(slow) is results[slow]  # cached, restored once
    finally:
        anvil.stop()
