# SPDX-License-Identifier: AGPL-3.0-only
"""The seller's agent and the try provider on a real Anvil: keys bound to (model, owner,
version), bad orders skipped without holding back others, delivery of whatever is still
pending for the accounts a node runs, whenever it starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from mercato.agent import SellerAgent
from mercato.agent import seller as seller_module
from mercato.agent.seller import RoundReport
from mercato.chain.contracts import Delivery, LicenseState, VersionDigests
from mercato.client import Market
from mercato.client.artifacts import cid_digest
from mercato.client.delivery import Deliverer
from mercato.client.provider import ProviderService
from mercato.client.sale_keys import sale_key
from mercato.crypto import derive_buyer_key, wrap_content_key
from mercato.errors import (
    ContentKeyMissingError,
    ContentKeyNotBoundError,
    InvalidKeyMaterialError,
)
from mercato.models.runtime import TryPool
from mercato.wallet import Wallet, keystore_dir

from .conftest import TOKEN, Chain

PRICE = 5 * TOKEN
# Accepted by the marketplace (not all zeros), refused by libsodium: a point of order 1.
LOW_ORDER_KEY = b"\x01" + bytes(31)


def _publish(chain: Chain, data_dir: Path, owner: LocalAccount, sample: str = "iris-logreg") -> int:
    market = chain.market(data_dir, owner)
    return int(market.models.publish(chain.packages[sample].root, price=PRICE).model_id)


def _copycat(chain: Chain, data_dir: Path, copycat: LocalAccount, victim_model: int) -> int:
    """Publishes, from another data directory, a model committing to the victim's public
    digests at 1 wei."""
    market = chain.market(data_dir, copycat)
    version = market.models.version(victim_model)
    digests = VersionDigests(
        cid_digest(version.artifact_cid),
        version.plaintext_sha256,
        cid_digest(version.manifest_cid),
    )
    return int(market.contracts.marketplace.publish(digests, 1))


def _buy(chain: Chain, buyer: LocalAccount, model_id: int, tmp_path: Path) -> Market:
    market = chain.market(tmp_path / f"buyer-{buyer.address}", buyer)
    market.orders.buy(model_id)
    assert market.orders.status(model_id).state is LicenseState.PENDING
    return market


def _download(chain: Chain, node_dir: Path, buyer: LocalAccount, model: int, dest: Path) -> None:
    """Downloads as `buyer` from the seller's own store (no gateway runs in these tests),
    which still checks the delivered key against the plaintext sha256 on-chain."""
    chain.market(node_dir, buyer).orders.download(model, dest)
    assert (dest / "README.md").exists()


def _provider(market: Market, accounts: list[str]) -> ProviderService:
    # The pool's workers are never started: package_for decides and unpacks, it runs nothing.
    return ProviderService(market, TryPool(workers=1), accounts=accounts)


def test_copycat_listing_gets_no_key_and_no_try_while_the_victims_sales_deliver(
    chain: Chain, tmp_path: Path
) -> None:
    victim, copycat, buyer = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    accomplice = chain.accounts[7]
    node_dir = tmp_path / "node"
    victim_model = _publish(chain, node_dir, victim)
    fake = _copycat(chain, tmp_path / "copycat", copycat, victim_model)
    # The copycat names the node's delivery account as its agent, and buys at 1 wei.
    chain.market(tmp_path / "copycat", copycat).contracts.marketplace.set_agent(victim.address)
    copycat_as_buyer = _buy(chain, accomplice, fake, tmp_path)
    _buy(chain, buyer, victim_model, tmp_path)

    agent = SellerAgent([chain.market(node_dir, victim)], node_dir)
    report = agent.deliver_round()

    assert [(o.model_id, o.buyer) for o in report.delivered] == [(victim_model, buyer.address)]
    assert [(o.model_id, reason) for o, reason in report.skipped] == [
        (fake, "content_key_not_bound")
    ]
    assert copycat_as_buyer.orders.status(fake).state is LicenseState.PENDING
    assert not copycat_as_buyer.logs(
        copycat_as_buyer.contracts.marketplace, "Delivered", model_id=fake
    )
    _download(chain, node_dir, buyer, victim_model, tmp_path / "download")
    assert (tmp_path / "download" / "README.md").exists()

    provider = _provider(chain.market(node_dir), [victim.address])
    with pytest.raises(ContentKeyNotBoundError) as caught:
        provider.package_for(fake)
    assert (caught.value.model_id, caught.value.owner) == (fake, copycat.address)
    assert provider.package_for(victim_model).root.is_dir()


def test_copycat_that_hands_its_listing_to_the_victim_still_gets_nothing(
    chain: Chain, tmp_path: Path
) -> None:
    victim, copycat = chain.accounts[1], chain.accounts[2]
    node_dir = tmp_path / "node"
    victim_model = _publish(chain, node_dir, victim)
    fake = _copycat(chain, tmp_path / "copycat", copycat, victim_model)
    copycat_market = chain.market(tmp_path / "copycat", copycat)
    copycat_as_buyer = _buy(chain, chain.accounts[7], fake, tmp_path)
    # Now the victim owns the copycat's model, so the victim's own node is responsible.
    copycat_market.contracts.registry.transfer_from(copycat.address, victim.address, fake)

    report = SellerAgent([chain.market(node_dir, victim)], node_dir).deliver_round()

    assert report.delivered == []
    assert [reason for _o, reason in report.skipped] == ["content_key_not_bound"]
    assert copycat_as_buyer.orders.status(fake).state is LicenseState.PENDING
    with pytest.raises(ContentKeyNotBoundError):
        _provider(chain.market(node_dir), [victim.address]).package_for(fake)


def test_transferred_model_is_no_longer_delivered_or_served_with_the_old_owners_key(
    chain: Chain, tmp_path: Path
) -> None:
    old_owner, new_owner, buyer = chain.accounts[1], chain.accounts[4], chain.accounts[3]
    node_dir = tmp_path / "node"
    model = _publish(chain, node_dir, old_owner)
    chain.market(node_dir, old_owner).contracts.registry.transfer_from(
        old_owner.address, new_owner.address, model
    )
    # Even when the new owner names the old owner's node as its agent.
    chain.market(tmp_path / "new", new_owner).contracts.marketplace.set_agent(old_owner.address)
    buyer_market = _buy(chain, buyer, model, tmp_path)

    report = SellerAgent([chain.market(node_dir, old_owner)], node_dir).deliver_round()

    assert report.delivered == []
    assert [reason for _o, reason in report.skipped] == ["content_key_not_bound"]
    assert buyer_market.orders.status(model).state is LicenseState.PENDING
    with pytest.raises(ContentKeyNotBoundError):
        _provider(chain.market(node_dir), [old_owner.address]).package_for(model)


def test_low_order_buyer_key_is_skipped_and_every_other_order_delivers(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seller, bad_buyer = chain.accounts[1], chain.accounts[5]
    good_buyers = chain.accounts[6:9]
    node_dir = tmp_path / "node"
    model = _publish(chain, node_dir, seller)
    bad = _buy(chain, bad_buyer, model, tmp_path)
    goods = [_buy(chain, b, model, tmp_path) for b in good_buyers]
    # The marketplace now refuses libsodium's low-order keys at purchase, so such an
    # order only exists on an older deployment. Stand one in: this buyer's posted key is
    # sealed to as if it were 01 00..00, and the real libsodium refuses it.
    bad_key = derive_buyer_key(bad_buyer, chain.deployment.chain_id).public_key
    real_wrap = seller_module.wrap_content_key
    monkeypatch.setattr(
        seller_module,
        "wrap_content_key",
        lambda key, public: real_wrap(key, LOW_ORDER_KEY if public == bad_key else public),
    )

    report = SellerAgent([chain.market(node_dir, seller)], node_dir).deliver_round()

    assert {o.buyer for o in report.delivered} == {b.address for b in good_buyers}
    assert [(o.buyer, reason) for o, reason in report.skipped] == [
        (bad_buyer.address, "invalid_key_material")
    ]
    for market in goods:
        assert market.orders.status(model).state is LicenseState.DELIVERED
    # The bad order is left pending, so its buyer can take the refund after the deadline.
    assert bad.orders.status(model).state is LicenseState.PENDING
    chain.time_travel(chain.deployment.delivery_window + 1)
    assert bad.orders.refund(model).state is LicenseState.REFUNDED


def test_a_refused_batch_falls_back_to_delivering_the_others_one_by_one(
    chain: Chain, tmp_path: Path
) -> None:
    seller = chain.accounts[1]
    buyers = chain.accounts[5:8]
    node_dir = tmp_path / "node"
    model = _publish(chain, node_dir, seller)
    markets = [_buy(chain, b, model, tmp_path) for b in buyers]
    seller_market = chain.market(node_dir, seller)
    agent = SellerAgent([seller_market], node_dir)
    orders, _head = agent.pending()
    assert {o.buyer for o in orders} == {b.address for b in buyers}
    info = seller_market.models.version(model)
    key = sale_key(seller_market, model, info, seller.address)
    items = [
        (o, Delivery(o.model_id, o.buyer, info.version, wrap_content_key(key, o.buyer_key)))
        for o in orders
    ]
    # Another process delivered the first order after the agent read the chain.
    seller_market.contracts.marketplace.deliver_many([items[0][1]])

    report = RoundReport()
    agent._send(seller_market, items, report)

    assert {o.buyer for o in report.delivered} == {o.buyer for o, _d in items[1:]}
    assert [reason for _o, reason in report.skipped] == ["contract_revert"]
    for market in markets:
        assert market.orders.status(model).state is LicenseState.DELIVERED
        assert len(market.logs(market.contracts.marketplace, "Delivered", model_id=model)) == 3


def test_node_started_after_another_accounts_node_delivers_what_is_still_pending(
    chain: Chain, tmp_path: Path
) -> None:
    demo, buyer = chain.accounts[1], chain.accounts[3]
    creator = chain.fresh_account()
    data_dir = tmp_path / "shared"  # one data directory, two accounts' nodes
    model = _publish(chain, data_dir, creator)
    buyer_market = _buy(chain, buyer, model, tmp_path)
    for _ in range(3):  # the demo account's node runs a while and skips the order
        assert SellerAgent([chain.market(data_dir, demo)], data_dir).deliver_round().delivered == []
    chain.time_travel(60)  # later, within the delivery window
    assert buyer_market.orders.status(model).state is LicenseState.PENDING

    report = SellerAgent([chain.market(data_dir, creator)], data_dir).deliver_round()

    assert [(o.model_id, o.buyer) for o in report.delivered] == [(model, buyer.address)]
    _download(chain, data_dir, buyer, model, tmp_path / "download")
    assert (tmp_path / "download" / "README.md").exists()


def test_restarted_agent_delivers_once_and_leaves_no_cursor(chain: Chain, tmp_path: Path) -> None:
    seller, buyer = chain.accounts[1], chain.accounts[3]
    node_dir = tmp_path / "node"
    model = _publish(chain, node_dir, seller)
    buyer_market = _buy(chain, buyer, model, tmp_path)
    cursor = node_dir / "agent" / f"cursor-{chain.deployment.chain_id}.json"
    cursor.parent.mkdir(parents=True)
    cursor.write_text('{"block": 999999}')  # an older version's cursor, far ahead

    assert SellerAgent([chain.market(node_dir, seller)], node_dir).deliver_pending() == 1
    assert not cursor.exists()
    assert SellerAgent([chain.market(node_dir, seller)], node_dir).deliver_pending() == 0
    delivered = buyer_market.logs(buyer_market.contracts.marketplace, "Delivered", model_id=model)
    assert len(delivered) == 1


def test_agent_for_many_owners_uses_each_owners_own_key(chain: Chain, tmp_path: Path) -> None:
    node_account = chain.accounts[1]
    owners = [chain.fresh_account(), chain.fresh_account()]
    buyers = chain.accounts[5:7]
    node_dir = tmp_path / "node"
    models = []
    for owner, sample in zip(owners, ["iris-logreg", "digits-mlp"], strict=True):
        # Each owner stores through this node's data directory, then names its account.
        models.append(_publish(chain, node_dir, owner, sample))
        chain.market(node_dir, owner).contracts.marketplace.set_agent(node_account.address)
    for buyer, model in zip(buyers, models, strict=True):
        _buy(chain, buyer, model, tmp_path)

    report = SellerAgent([chain.market(node_dir, node_account)], node_dir).deliver_round()

    assert sorted(o.model_id for o in report.delivered) == sorted(models)
    for buyer, model in zip(buyers, models, strict=True):
        _download(chain, node_dir, buyer, model, tmp_path / f"download-{model}")
    provider = _provider(chain.market(node_dir), [node_account.address])
    assert all(provider.package_for(m).root.is_dir() for m in models)


def test_older_cid_keyed_file_migrates_only_for_its_first_publisher(
    chain: Chain, tmp_path: Path
) -> None:
    seller, copycat = chain.accounts[1], chain.accounts[2]
    node_dir = tmp_path / "node"
    model = _publish(chain, node_dir, seller)
    market = chain.market(node_dir, seller)
    version = market.models.version(model)
    staged = market.keys.load_staged(version.artifact_cid, seller.address)
    assert staged is not None
    # Rewrite the data directory as an older version left it: one file per CID.
    market.keys.staged_path(version.artifact_cid, seller.address).unlink()
    (node_dir / "keys" / f"{version.artifact_cid}.key").write_bytes(staged.key)
    fake = _copycat(chain, tmp_path / "copycat", copycat, model)
    # Even with the copycat's keystore on this node, its later listing is not the first.
    wallet = Wallet(keystore_dir(node_dir), kdf="pbkdf2", iterations=1_000)
    for account in (seller, copycat):
        wallet.import_private_key(account.key, "pw")
    provider = _provider(chain.market(node_dir), [seller.address, copycat.address])

    with pytest.raises(ContentKeyNotBoundError):
        provider.package_for(fake)
    assert provider.package_for(model).root.is_dir()
    bound = market.keys.load_bound(
        chain.deployment.chain_id, chain.deployment.model_registry, model, version.version
    )
    assert bound is not None and bound.owner == seller.address


def test_provider_refuses_models_this_node_does_not_sell(chain: Chain, tmp_path: Path) -> None:
    seller, stranger = chain.accounts[1], chain.accounts[4]
    node_dir = tmp_path / "node"
    model = _publish(chain, node_dir, seller)
    elsewhere = _publish(chain, tmp_path / "elsewhere", stranger)
    provider = _provider(chain.market(node_dir), [seller.address])
    with pytest.raises(ContentKeyNotBoundError):
        provider.package_for(elsewhere)  # its owner neither runs here nor named us
    with pytest.raises(ContentKeyMissingError):
        _provider(chain.market(tmp_path / "empty"), [stranger.address]).package_for(elsewhere)
    package = provider.package_for(model)
    # 12.11: the plaintext copy is readable by its owner only, at every level.
    packages = node_dir / "packages"
    for path in [packages, *packages.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path
    assert package.root.is_relative_to(packages)


def test_delivery_status_says_who_delivers(chain: Chain, tmp_path: Path) -> None:
    creator, agent_account = chain.fresh_account(), chain.accounts[1]
    data_dir = tmp_path / "creator"
    model = _publish(chain, data_dir, creator)
    free = int(
        chain.market(data_dir, creator)
        .models.publish(chain.packages["digits-mlp"].root, price=0)
        .model_id
    )
    here = chain.market(data_dir, creator)
    assert here.models.delivery_status(free).by is Deliverer.FREE
    # No keystore for the creator here (an SDK account): nobody can sign as it.
    nobody = here.models.delivery_status(model)
    assert (nobody.by, nobody.key_here) == (Deliverer.NOBODY, True)
    assert "Nobody delivers" in nobody.message
    # Seen from another data directory, the key is not there either.
    assert chain.market(tmp_path / "other").models.delivery_status(model).key_here is False

    Wallet(keystore_dir(data_dir), kdf="pbkdf2", iterations=1_000).import_private_key(
        creator.key, "pw"
    )
    local = here.models.delivery_status(model)
    assert (local.by, local.account, local.node_running) == (
        Deliverer.THIS_NODE,
        creator.address,
        False,
    )
    assert f"mercato node up --account {creator.address}" in local.message

    here.contracts.marketplace.set_agent(agent_account.address)
    named = chain.market(tmp_path / "other").models.delivery_status(model)
    assert (named.by, named.account) == (Deliverer.AGENT, agent_account.address)


def test_sdk_refuses_to_pay_with_a_buyer_key_nobody_can_seal_to(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seller, buyer = chain.accounts[1], chain.accounts[3]
    model = _publish(chain, tmp_path / "node", seller)
    market = chain.market(tmp_path / "buyer", buyer)
    before = market.wallet.balance()

    class LowOrder:  # a wallet-derived key is never low-order; stand one in to reach the check
        public_key = LOW_ORDER_KEY

    monkeypatch.setattr("mercato.client.orders.derive_buyer_key", lambda *_a: LowOrder())
    with pytest.raises(InvalidKeyMaterialError, match="low-order"):
        market.orders.buy(model)
    assert market.orders.status(model).state is LicenseState.NONE
    assert market.wallet.balance() == before
