# SPDX-License-Identifier: AGPL-3.0-only
"""Publish, try, buy, deliver, download, review: two real nodes, one real chain, CLI and SDK."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mercato.chain.contracts import LicenseState
from mercato.client.artifacts import package_tar_stream
from mercato.errors import local_time
from mercato.models.package import load_package
from mercato.models.samples import build_samples

from .conftest import Network

TOKEN = 10**18
PRICE = 8 * TOKEN
ROYALTY_BPS = 1_500
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def models(network: Network, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A parent model by one creator and a paid model derived from it by another."""
    samples = build_samples(
        tmp_path_factory.mktemp("samples"), ["iris-logreg", "iris-logreg-tuned"]
    )
    published = network.cli(
        "publish", str(samples["iris-logreg"].root), "--price", "5", "--json",
        "--account", network.parent_creator.address, "--password-file", str(network.password_file),
        data_dir=network.creator_dir,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    parent = json.loads(published.stdout)
    assert parent["encrypted"] is True
    child = network.market(network.creator_dir, network.creator).models.publish(
        samples["iris-logreg-tuned"].root,
        price=PRICE,
        parents=[parent["model_id"]],
        royalty_bps=[ROYALTY_BPS],
    )
    return {
        "parent": parent["model_id"],
        "child": child.model_id,
        "source": samples["iris-logreg-tuned"].root,
    }


def _outputs(model_path: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": np.array(IRIS_ROWS, dtype=np.float32)})


def test_buyer_tries_buys_downloads_and_reviews_a_derived_model(
    network: Network, models: dict[str, object], tmp_path: Path
) -> None:
    child = str(models["child"])
    buyer = network.buyers[0]
    auth = ["--password-file", str(network.password_file), "--account", buyer.address]

    found = network.cli("search", "iris", "--derived-from", str(models["parent"]), "--json")
    assert found.returncode == 0, found.stderr
    assert [m["model_id"] for m in json.loads(found.stdout)["items"]] == [int(child)]

    shown = network.cli("show", child, "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["price"] == PRICE
    assert detail["parents"] == [{"model_id": models["parent"], "royalty_bps": ROYALTY_BPS}]
    assert detail["provider_url"] == network.creator_gateway

    tried = network.cli("try", child, json.dumps({"X": IRIS_ROWS}), "--json")
    assert tried.returncode == 0, tried.stderr
    labels = json.loads(tried.stdout)["outputs"]["label"]["data"]
    assert json.loads(tried.stdout)["model"] == Path(str(models["source"])).name  # not a CID
    assert labels == [int(x) for x in _outputs(Path(str(models["source"])) / "model.onnx")[0]]

    parent_owner_credits = network.market(network.buyer_dir).contracts.marketplace.credits(
        network.parent_creator.address
    )
    bought = network.cli("buy", "--yes", child, "--json", "--wait", "90", *auth)
    assert bought.returncode == 0, bought.stderr
    assert json.loads(bought.stdout)["state"] == "delivered"

    dest = tmp_path / "downloaded"
    downloaded = network.cli("download", child, str(dest), *auth)
    assert downloaded.returncode == 0, downloaded.stderr
    source = Path(str(models["source"]))
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in source.iterdir())
    for path in source.iterdir():
        assert (dest / path.name).read_bytes() == path.read_bytes()
    # The bytes verify against the sha256 the chain commits to...
    market = network.market(network.buyer_dir)
    on_chain = market.models.version(int(child)).plaintext_sha256
    digest = hashlib.sha256(b"".join(package_tar_stream(load_package(dest))))
    assert digest.digest() == on_chain
    # ...and the buyer's ONNX Runtime gives what the creator's gives.
    for mine, theirs in zip(
        _outputs(dest / "model.onnx"), _outputs(source / "model.onnx"), strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)

    royalty = PRICE * ROYALTY_BPS // 10_000
    assert (
        market.contracts.marketplace.credits(network.parent_creator.address)
        == parent_owner_credits + royalty
    )

    reviewed = network.cli("review", child, "5", *auth)
    assert reviewed.returncode == 0, reviewed.stderr
    assert json.loads(network.cli("show", child, "--json").stdout)["average_rating"] == 5.0

    # A read command: no password.
    listed = network.cli("orders", "--json", "--account", buyer.address)
    assert listed.returncode == 0, listed.stderr
    assert {"model_id": int(child), "licensed": True} in [
        {"model_id": o["model_id"], "licensed": o["licensed"]} for o in json.loads(listed.stdout)
    ]


def test_node_restarted_between_purchase_and_delivery_delivers_once(
    network: Network, models: dict[str, object]
) -> None:
    child = int(str(models["child"]))
    buyer = network.buyers[1]
    market = network.market(network.buyer_dir, buyer)
    network.creator_node.stop()
    market.orders.buy(child)
    assert market.orders.status(child).state is LicenseState.PENDING

    network.creator_node.start()
    assert market.orders.wait_for_delivery(child, timeout=90).state is LicenseState.DELIVERED
    network.creator_node.stop()
    network.creator_node.start()  # a second start must not deliver again
    market.models.show(child)  # a round trip to the chain after the restart
    delivered = market.logs(
        market.contracts.marketplace, "Delivered", model_id=child, buyer=buyer.address
    )
    assert len(delivered) == 1


def test_creator_node_down_past_the_deadline_buyer_refunds_every_token(
    network: Network, models: dict[str, object]
) -> None:
    child = str(models["child"])
    buyer = network.buyers[2]
    market = network.market(network.buyer_dir, buyer)
    auth = ["--password-file", str(network.password_file), "--account", buyer.address]
    before = market.wallet.balance()
    network.creator_node.stop()
    try:
        bought = network.cli("buy", "--yes", child, "--wait", "0", *auth)
        assert bought.returncode == 0, bought.stderr
        assert market.wallet.balance() == before - PRICE
        too_early = network.cli("refund", child, *auth)
        assert too_early.returncode == 90
        deadline = market.orders.status(int(child)).time
        assert local_time(deadline) in too_early.stderr

        network.time_travel(network.deployment.delivery_window + 1)
        refunded = network.cli("refund", child, *auth)
        assert refunded.returncode == 0, refunded.stderr
        assert market.wallet.balance() == before
        assert market.orders.status(int(child)).state is LicenseState.REFUNDED
    finally:
        network.creator_node.start()
    # The restarted node sees the refunded order and leaves it alone.
    assert market.orders.status(int(child)).state is LicenseState.REFUNDED


def test_node_delivers_for_an_owner_who_made_its_account_their_agent(
    network: Network, models: dict[str, object]
) -> None:
    parent = int(str(models["parent"]))
    owner = network.market(network.creator_dir, network.parent_creator)
    owner.contracts.marketplace.set_agent(network.creator.address)  # the node's account
    credits_before = owner.contracts.marketplace.credits(network.parent_creator.address)
    buyer = network.market(network.buyer_dir, network.buyers[6])

    buyer.orders.buy(parent)
    assert buyer.orders.wait_for_delivery(parent, timeout=90).state is LicenseState.DELIVERED
    price = owner.contracts.marketplace.listing(parent).price
    credited = owner.contracts.marketplace.credits(network.parent_creator.address)
    assert credited == credits_before + price
