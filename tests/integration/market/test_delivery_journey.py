# SPDX-License-Identifier: AGPL-3.0-only
"""Orders nobody delivers yet: a creator with a fresh key (not one of the node's
accounts) publishes while another account's node runs on the same data directory, a
buyer buys, and the creator's own node, started only after the sale, delivers it."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from mercato.chain.contracts import LicenseState
from mercato.client.artifacts import package_tar_stream
from mercato.client.delivery import Deliverer
from mercato.models.package import load_package
from mercato.models.samples import build_samples

from .conftest import Network, NodeProcess, import_keys

TOKEN = 10**18
PRICE = 3 * TOKEN


def _fresh(network: Network, mct: int = 0) -> LocalAccount:
    """A new key with gas (and `mct` tokens from a funded buyer)."""
    account: LocalAccount = Account.create()
    w3 = Web3(Web3.HTTPProvider(network.rpc_url))
    w3.provider.make_request("anvil_setBalance", [account.address, hex(10**20)])  # type: ignore[arg-type]
    if mct:
        donor = network.market(network.buyer_dir, network.buyers[-1])
        donor.contracts.token.transfer(account.address, mct)
    return account


def test_creator_node_started_after_the_sale_delivers_it(
    network: Network, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    creator, buyer = _fresh(network), _fresh(network, mct=PRICE)
    sample = build_samples(tmp_path_factory.mktemp("samples"), ["digits-mlp"])["digits-mlp"]
    import_keys(network.creator_dir, [creator])
    # Published on the data directory where the node of another account already runs.
    creator_market = network.market(network.creator_dir, creator)
    model = int(creator_market.models.publish(sample.root, price=PRICE).model_id)
    status = creator_market.models.delivery_status(model)
    assert (status.by, status.account, status.node_running) == (
        Deliverer.THIS_NODE,
        creator.address,
        False,
    )
    assert f"mercato node up --account {creator.address}" in status.message

    buyer_market = network.market(tmp_path / "buyer", buyer)
    buyer_market.orders.buy(model)
    # The running node is not the creator's: it leaves the order alone, however long it
    # runs (a few of its rounds, over blocks mined after the purchase).
    for _ in range(3):
        network.time_travel(1)
    time.sleep(3)
    assert buyer_market.orders.status(model).state is LicenseState.PENDING

    network.creator_node.stop()
    common = ["--rpc-url", network.rpc_url, "--password-file", str(network.password_file)]
    creators_node = NodeProcess(network.creator_dir, [*common, "--account", creator.address])
    try:
        creators_node.start()
        delivered = buyer_market.orders.wait_for_delivery(model, timeout=90)
        assert delivered.state is LicenseState.DELIVERED
        assert creator_market.models.delivery_status(model).node_running is True
        dest = buyer_market.orders.download(model, tmp_path / "download")
    finally:
        creators_node.stop()
        network.creator_node.start()
    tar = b"".join(package_tar_stream(load_package(dest)))
    assert hashlib.sha256(tar).digest() == creator_market.models.version(model).plaintext_sha256
