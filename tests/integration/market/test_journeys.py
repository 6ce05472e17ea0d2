# SPDX-License-Identifier: AGPL-3.0-only
"""Journeys a new user takes, each through the real `mercato` command against a real
node and Anvil: a creator sells and withdraws, a fresh wallet funds itself, buys and
downloads, owners and free models download without buying, refunds say when."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from mercato.chain.anvil import free_port
from mercato.chain.contracts import LicenseState
from mercato.client import Market
from mercato.client.running_node import NodeRecord, write_record
from mercato.config import Settings
from mercato.errors import local_time
from mercato.models.samples import build_samples

from .conftest import Network

TOKEN = 10**18


def run(
    network: Network, *args: str, data_dir: Path, rpc: bool = True
) -> subprocess.CompletedProcess[str]:
    """`mercato ARGS` with no terminal and no password in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    env |= {"MERCATO_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    if rpc:
        env["MERCATO_RPC_URL"] = network.rpc_url
    return subprocess.run(
        [sys.executable, "-m", "mercato.cli", *args],
        capture_output=True, text=True, timeout=240, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def creator_auth(network: Network) -> list[str]:
    return ["--account", network.creator.address, "--password-file", str(network.password_file)]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_samples(tmp_path_factory.mktemp("journeys"), ["iris-logreg"])["iris-logreg"].root


def publish(network: Network, package: Path, name: str, price: str) -> dict[str, object]:
    published = run(
        network, "publish", str(package), "--name", name, "--price", price, "--json",
        *creator_auth(network), data_dir=network.creator_dir,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    document: dict[str, object] = json.loads(published.stdout)
    return document


def fresh_folder(network: Network, folder: Path) -> Path:
    """A data directory that knows the deployment and nothing else."""
    (folder / "deployments").mkdir(parents=True)
    network.deployment.save(folder)
    return folder


def test_creator_sells_then_withdraws_from_the_cli(network: Network, package: Path) -> None:
    published = publish(network, package, "journey-withdraw", "3")
    assert published["name"] == "journey-withdraw"
    assert published["delivered_by"] == "this_node"
    model_id = int(str(published["model_id"]))
    buyer = network.buyers[6]
    buying = network.market(network.buyer_dir, buyer)
    buying.orders.buy(model_id)
    buying.orders.wait_for_delivery(model_id, timeout=90)

    # A read command: no password, no terminal.
    shown = run(network, "earnings", "--json", "--account", network.creator.address,
                data_dir=network.creator_dir)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    earned = json.loads(shown.stdout)
    sold = next(m for m in earned["models"] if m["model_id"] == model_id)
    assert sold["sales"] == 1 and sold["sold"] == 3 * TOKEN
    withdrawable = earned["withdrawable"]
    # The marketplace keeps one base unit credited (a cheaper next credit).
    assert withdrawable == earned["credited"] - earned["withdrawn"] - 1 >= 3 * TOKEN - 1

    token = network.market(network.creator_dir).contracts.token
    before = token.balance_of(network.creator.address)
    refused = run(network, "withdraw", *creator_auth(network), data_dir=network.creator_dir)
    assert refused.returncode == 93  # no terminal to confirm on, and no --yes
    assert "--yes" in refused.stderr
    assert token.balance_of(network.creator.address) == before

    done = run(network, "withdraw", "--yes", "--json", *creator_auth(network),
               data_dir=network.creator_dir)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["amount"] == withdrawable
    assert token.balance_of(network.creator.address) == before + withdrawable

    again = run(network, "withdraw", "--yes", *creator_auth(network), data_dir=network.creator_dir)
    assert again.returncode == 91
    shown = run(network, "earnings", "--json", "--account", network.creator.address,
                data_dir=network.creator_dir)  # fmt: skip
    after = json.loads(shown.stdout)
    assert after["withdrawable"] == 0
    assert after["withdrawn"] >= withdrawable


def test_a_fresh_wallet_gets_funds_buys_and_downloads(
    network: Network, package: Path, tmp_path: Path
) -> None:
    model_id = int(str(publish(network, package, "journey-fresh", "2")["model_id"]))
    folder = fresh_folder(network, tmp_path / "fresh")
    auth = ["--password-file", str(network.password_file)]
    created = run(network, "wallet", "new", "--json", *auth, data_dir=folder)
    assert created.returncode == 0, created.stderr
    address = json.loads(created.stdout)["address"]

    funded = run(network, "wallet", "faucet", *auth, data_dir=folder)
    assert funded.returncode == 0, funded.stderr
    market = network.market(folder)
    assert market.wallet.gas_balance(address) > 0
    assert market.wallet.balance(address) >= 2 * TOKEN

    bought = run(network, "buy", str(model_id), "--yes", "--wait", "90", *auth, data_dir=folder)
    assert bought.returncode == 0, bought.stderr
    assert "price 2 MCT" in bought.stderr  # the quote shown before paying
    dest = tmp_path / "model"
    started = time.time()
    downloaded = run(network, "download", str(model_id), str(dest), *auth, data_dir=folder)
    assert downloaded.returncode == 0, downloaded.stderr
    assert (dest / "model.onnx").read_bytes() == (package / "model.onnx").read_bytes()
    # Real modification times, not the deterministic tar's 1970.
    assert (dest / "model.onnx").stat().st_mtime >= started - 5

    listed = run(network, "orders", "--json", data_dir=folder)  # no password
    assert listed.returncode == 0, listed.stderr
    assert [o["model_id"] for o in json.loads(listed.stdout)] == [model_id]


def test_a_fresh_wallet_that_buys_before_the_faucet_is_told_what_to_do(
    network: Network, tmp_path: Path
) -> None:
    folder = fresh_folder(network, tmp_path / "empty")
    auth = ["--password-file", str(network.password_file)]
    assert run(network, "wallet", "new", *auth, data_dir=folder).returncode == 0
    free = network.market(network.creator_dir, network.creator).models.publish(
        build_samples(tmp_path / "s", ["diabetes-gbr"])["diabetes-gbr"].root,
        price=0, name="journey-no-gas",
    )  # fmt: skip
    result = run(network, "buy", str(free.model_id), "--yes", *auth, data_dir=folder)
    assert result.returncode == 26
    assert "mercato wallet faucet" in result.stderr
    assert "Traceback" not in result.stderr


def test_buying_your_own_model_is_refused(network: Network, package: Path) -> None:
    model_id = int(str(publish(network, package, "journey-own", "1")["model_id"]))
    token = network.market(network.creator_dir).contracts.token
    before = token.balance_of(network.creator.address)
    result = run(network, "buy", str(model_id), "--yes", *creator_auth(network),
                 data_dir=network.creator_dir)  # fmt: skip
    assert result.returncode == 69
    assert f"own model {model_id}" in result.stderr
    assert token.balance_of(network.creator.address) == before


def test_the_owner_downloads_without_buying(
    network: Network, package: Path, tmp_path: Path
) -> None:
    model_id = int(str(publish(network, package, "journey-owner", "4")["model_id"]))
    dest = tmp_path / "mine"
    result = run(network, "download", str(model_id), str(dest), *creator_auth(network),
                 data_dir=network.creator_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (dest / "model.onnx").read_bytes() == (package / "model.onnx").read_bytes()
    market = network.market(network.creator_dir)
    assert market.orders.status(model_id, network.creator.address).state is LicenseState.NONE


def test_a_free_model_downloads_without_a_transaction_or_password(
    network: Network, package: Path, tmp_path: Path
) -> None:
    model_id = int(str(publish(network, package, "journey-free", "0")["model_id"]))
    buyer = network.buyers[6]
    w3 = Web3(Web3.HTTPProvider(network.rpc_url))
    nonce = w3.eth.get_transaction_count(buyer.address)
    dest = tmp_path / "free"
    # No --password-file and no terminal: a prompt would fail the command.
    result = run(network, "download", str(model_id), str(dest), "--account", buyer.address,
                 data_dir=network.buyer_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (dest / "model.onnx").read_bytes() == (package / "model.onnx").read_bytes()
    assert w3.eth.get_transaction_count(buyer.address) == nonce


def test_orders_and_refund_say_when_a_refund_becomes_possible(
    network: Network, tmp_path: Path
) -> None:
    # A seller with no node: its sales stay pending.
    seller = Account.create()
    folder = fresh_folder(network, tmp_path / "seller")
    settings = Settings(data_dir=folder, rpc_url=network.rpc_url, provider_url="http://127.0.0.1:9")
    selling = Market(settings, account=seller, deployment=network.deployment)
    selling.wallet.faucet()  # gas and MCT for a brand-new account
    sample = build_samples(tmp_path / "s", ["iris-logreg"])["iris-logreg"].root
    model_id = selling.models.publish(sample, price=TOKEN, name="journey-refund").model_id
    buyer = network.buyers[5]
    auth = ["--account", buyer.address, "--password-file", str(network.password_file)]
    bought = run(network, "buy", str(model_id), "--yes", "--wait", "0", *auth,
                 data_dir=network.buyer_dir)  # fmt: skip
    assert bought.returncode == 0, bought.stderr
    deadline = network.market(network.buyer_dir).orders.status(model_id, buyer.address).time

    listed = run(network, "orders", "--account", buyer.address, data_dir=network.buyer_dir)
    assert listed.returncode == 0, listed.stderr
    assert f"refund possible after {local_time(deadline)}" in listed.stdout
    refused = run(network, "refund", str(model_id), *auth, data_dir=network.buyer_dir)
    assert refused.returncode == 90
    assert local_time(deadline) in refused.stderr
    assert str(deadline) not in refused.stderr  # a date, not a unix number


def test_show_says_name_signature_version_and_whether_the_seller_answers(
    network: Network, package: Path
) -> None:
    model_id = int(str(publish(network, package, "journey-show", "1")["model_id"]))
    shown = run(network, "show", str(model_id), "--json", data_dir=network.buyer_dir)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["name"] == "journey-show"
    assert document["description"].startswith("Classifies iris flowers")
    assert document["inputs"][0]["name"] == "X" and document["inputs"][0]["shape"] == ["N", 4]
    assert document["current_version"] == 1
    assert document["provider_reachable"] is True
    text = run(network, "show", str(model_id), data_dir=network.buyer_dir)
    assert "inputs: X float32 [N, 4]" in text.stdout
    assert "current version 1" in text.stdout
    assert "reachable" in text.stdout


def test_version_add_keeps_the_models_name(network: Network, package: Path, tmp_path: Path) -> None:
    model_id = int(str(publish(network, package, "journey-named", "0")["model_id"]))
    added = run(network, "version", "add", str(model_id), str(package), *creator_auth(network),
                data_dir=network.creator_dir)  # fmt: skip
    assert added.returncode == 0, added.stderr
    market = network.market(network.creator_dir)
    assert market.models.manifest(model_id, 2)["name"] == "journey-named"


def test_commands_find_the_node_running_on_their_data_directory(
    network: Network, tmp_path: Path
) -> None:
    # No --rpc-url and no MERCATO_RPC_URL: the creator node's record says where its chain is.
    found = run(network, "wallet", "balance", "--json", network.creator.address,
                data_dir=network.creator_dir, rpc=False)  # fmt: skip
    assert found.returncode == 0, found.stderr
    balance = network.market(network.creator_dir).wallet.balance(network.creator.address)
    assert json.loads(found.stdout)["balance"] == balance  # this network's chain, no other

    # A record left by a node that is gone is ignored.
    folder = fresh_folder(network, tmp_path / "stale")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_record(folder, NodeRecord(dead.pid, network.rpc_url, "http://127.0.0.1:1"))
    (folder / "config.toml").write_text(f"anvil_port = {free_port()}\n")
    stale = run(network, "wallet", "balance", network.creator.address, data_dir=folder, rpc=False)
    assert stale.returncode == 25  # the chain of the settings, which nothing serves
    assert "Traceback" not in stale.stderr


def test_unknown_card_title_and_no_name_is_refused_before_any_password(
    network: Network, package: Path, tmp_path: Path
) -> None:
    untitled = tmp_path / "untitled"
    untitled.mkdir()
    for item in package.iterdir():
        text = item.read_bytes()
        if item.name == "README.md":
            text = text.replace(b"# iris-logreg\n", b"")
        (untitled / item.name).write_bytes(text)
    result = run(network, "publish", str(untitled), "--account", network.creator.address,
                 data_dir=network.creator_dir)  # fmt: skip
    assert result.returncode == 50
    assert "--name" in result.stderr
    assert "password" not in result.stderr.lower()
