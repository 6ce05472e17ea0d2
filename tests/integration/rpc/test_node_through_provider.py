# SPDX-License-Identifier: AGPL-3.0-only
"""A real node (`mercato node up --rpc-url <provider>`) deploys, publishes, sells and
delivers through the stand-in hosted provider of `proxy.py` (capped `eth_getLogs`,
random 429 and 503 answers, dropped connections) in front of a real Anvil."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.contracts import LicenseState
from mercato.chain.deployment import Deployment
from mercato.client import Market
from mercato.client.artifacts import package_tar_stream
from mercato.config import Settings
from mercato.models.package import load_package
from mercato.models.samples import build_samples
from tests.integration.market.conftest import PASSWORD, NodeProcess, import_keys

from .proxy import RpcProxy

PRICE = 2 * 10**18


def test_node_publishes_sells_and_delivers_through_the_provider(
    anvil: AnvilSupervisor,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    provider: Callable[..., RpcProxy],
) -> None:
    proxy = provider()
    creator, buyer = dev_accounts(4)[2:4]
    creator_dir = tmp_path / "creator"
    import_keys(creator_dir, [creator])
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    gateway = f"http://127.0.0.1:{free_port()}"
    (creator_dir / "config.toml").write_text(f"gateway_port = {gateway.rsplit(':', 1)[1]}\n")
    node = NodeProcess(
        creator_dir,
        ["--rpc-url", proxy.url, "--password-file", str(password_file),
         "--account", creator.address],
    )  # fmt: skip
    node.start()  # deploys through the provider on the fresh chain
    try:
        deployment = Deployment.load(creator_dir, 31_337)
        assert deployment is not None
        sample = build_samples(tmp_path_factory.mktemp("samples"), ["digits-mlp"])["digits-mlp"]
        seller = Market(
            Settings(data_dir=creator_dir, rpc_url=proxy.url, provider_url=gateway),
            account=creator,
        )
        model = int(seller.models.publish(sample.root, price=PRICE).model_id)
        shopper = Market(
            Settings(data_dir=tmp_path / "buyer", rpc_url=proxy.url),
            account=buyer,
            deployment=deployment,
        )
        shopper.orders.buy(model)
        assert shopper.orders.wait_for_delivery(model, timeout=120).state is LicenseState.DELIVERED
        assert [v.version for v in shopper.models.show(model).versions] == [1]
        dest = shopper.orders.download(model, tmp_path / "download")
    finally:
        node.stop()
    tar = b"".join(package_tar_stream(load_package(dest)))
    assert hashlib.sha256(tar).digest() == seller.models.version(model).plaintext_sha256
    # The node met the provider's limits and failures on the way.
    assert proxy.stats["429"] and proxy.stats["eth_sendRawTransaction"]
    assert proxy.stats["range_refused"] or proxy.stats["results_refused"]
