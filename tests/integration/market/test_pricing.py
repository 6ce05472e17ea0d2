# SPDX-License-Identifier: AGPL-3.0-only
"""Prices and the terms a purchase agrees to, on a real Anvil: a model published free
cannot be priced until an encrypted version exists (its bytes are public in the clear and
no key could ever be delivered), and a purchase whose terms no longer match the listing is
a typed error that costs the buyer nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mercato.agent import SellerAgent
from mercato.chain.contracts import LicenseState
from mercato.client import Market
from mercato.config import Settings
from mercato.errors import EncryptedVersionError, ListingChangedError, UnencryptedVersionError
from mercato.models.samples import build_samples

from .conftest import Network
from .test_journeys import creator_auth, publish, run

TOKEN = 10**18


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_samples(tmp_path_factory.mktemp("pricing"), ["iris-logreg"])["iris-logreg"].root


def fresh_creator(network: Network) -> tuple[Market, LocalAccount]:
    """A creator the demo never set up: a key made a moment ago, funded by the faucet,
    storing into the data directory of the running node whose gateway serves the blocks
    (that node's agent does not deliver for this account)."""
    creator = Account.create()
    settings = Settings(
        data_dir=network.creator_dir, rpc_url=network.rpc_url,
        provider_url=network.creator_gateway,
    )  # fmt: skip
    market = Market(settings, account=creator, deployment=network.deployment)
    market.wallet.faucet()
    return market, creator


def test_a_free_model_is_priced_only_after_an_encrypted_version(
    network: Network, package: Path, tmp_path: Path
) -> None:
    selling, _creator = fresh_creator(network)
    model_id = selling.models.publish(package, price=0, name="pricing-free-first").model_id

    with pytest.raises(UnencryptedVersionError) as refused:
        selling.models.set_price(model_id, TOKEN)
    assert refused.value.model_id == model_id and refused.value.version == 1
    assert "--encrypt" in str(refused.value)
    assert selling.contracts.marketplace.listing(model_id).price == 0  # nothing was sent

    added = selling.models.add_version(model_id, package, encrypt=True)
    assert added.encrypted and added.version == 2
    assert selling.models.set_price(model_id, TOKEN).price == TOKEN

    # The sale goes through: the creator's own agent delivers version 2's key.
    buyer = network.buyers[0]
    buying = network.market(network.buyer_dir, buyer)
    buying.orders.buy(model_id)
    report = SellerAgent([selling], selling.settings.data_dir).deliver_round()
    assert len(report.delivered) == 1
    assert buying.orders.status(model_id).state is LicenseState.DELIVERED
    dest = buying.orders.download(model_id, tmp_path / "bought")
    assert (dest / "model.onnx").read_bytes() == (package / "model.onnx").read_bytes()


def test_the_cli_refuses_to_price_a_model_published_free(network: Network, package: Path) -> None:
    model_id = int(str(publish(network, package, "pricing-cli-free", "0")["model_id"]))
    result = run(network, "price", "set", str(model_id), "3", *creator_auth(network),
                 data_dir=network.creator_dir)  # fmt: skip
    assert result.returncode == 94, result.stderr
    assert f"version add {model_id} DIR --encrypt" in result.stderr
    assert network.market(network.creator_dir).contracts.marketplace.listing(model_id).price == 0


def test_a_purchase_above_the_buyers_maximum_is_a_typed_error(
    network: Network, package: Path, tmp_path: Path
) -> None:
    selling, _creator = fresh_creator(network)
    model_id = selling.models.publish(package, price=2 * TOKEN, name="pricing-max").model_id
    buyer = network.buyers[1]
    buying = network.market(network.buyer_dir, buyer)
    before = buying.contracts.token.balance_of(buyer.address)

    with pytest.raises(ListingChangedError) as refused:
        buying.orders.buy(model_id, max_price=TOKEN)
    assert refused.value.model_id == model_id
    assert buying.contracts.token.balance_of(buyer.address) == before
    assert buying.orders.status(model_id).state is LicenseState.NONE


def test_a_paid_model_is_made_free_only_after_a_version_in_the_clear(
    network: Network, package: Path, tmp_path: Path
) -> None:
    selling, _creator = fresh_creator(network)
    model_id = selling.models.publish(package, price=TOKEN, name="pricing-paid-first").model_id

    with pytest.raises(EncryptedVersionError) as refused:
        selling.models.set_price(model_id, 0)
    assert "--no-encrypt" in str(refused.value)
    assert selling.contracts.marketplace.listing(model_id).price == TOKEN

    selling.models.add_version(model_id, package, encrypt=False)
    assert selling.models.set_price(model_id, 0).price == 0
    # A free download opens the version in the clear, with no transaction.
    reader = network.market(network.buyer_dir)
    dest = reader.orders.download(model_id, tmp_path / "free")
    assert (dest / "model.onnx").read_bytes() == (package / "model.onnx").read_bytes()
