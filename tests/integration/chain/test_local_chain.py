# SPDX-License-Identifier: AGPL-3.0-only
"""deploy() and the node's chain bring-up on a real Anvil process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.contracts import (
    MAX_PRICE,
    LicenseState,
    Listing,
    MercatoContracts,
    TokenAmount,
    VersionDigests,
)
from mercato.chain.deployment import TOKEN_UNIT, Deployment, deploy
from mercato.chain.session import DEMO_FUNDING, demo_accounts, open_chain
from mercato.chain.web3_backend import Web3Backend
from mercato.errors import AnvilError, ChainUnavailableError, ContractRevertError, DeploymentError

DIGESTS = VersionDigests(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
PRICE = 7 * TOKEN_UNIT


def _client(w3: Web3, deployment: Deployment, index: int) -> MercatoContracts:
    return MercatoContracts.connect(w3, deployment, Web3Backend(w3, dev_accounts(index + 1)[index]))


def test_deploy_on_anvil_links_contracts_and_funds_accounts(w3: Web3) -> None:
    deployer, buyer = dev_accounts(2)
    deployment = deploy(Web3Backend(w3, deployer), fund=[buyer.address], fund_amount=PRICE)

    contracts = MercatoContracts.connect(w3, deployment)
    assert deployment.chain_id == 31_337
    assert contracts.token.balance_of(buyer.address) == PRICE
    assert contracts.marketplace.delivery_window() == deployment.delivery_window
    registry = w3.eth.contract(
        address=deployment.model_registry, abi=contracts.registry.contract.abi
    )
    assert registry.functions.PUBLISHER().call() == deployment.marketplace
    # The record's deploy block holds the first contract creation.
    first = w3.eth.get_block(deployment.deploy_block, full_transactions=True)
    assert first["transactions"][0]["to"] is None


def test_full_sale_through_the_typed_wrappers(w3: Web3) -> None:
    deployment = deploy(
        Web3Backend(w3, dev_accounts(1)[0]), fund=[a.address for a in dev_accounts(4)]
    )
    parent_creator, creator, buyer = (_client(w3, deployment, i) for i in (1, 2, 3))
    parent = parent_creator.marketplace.publish(DIGESTS, PRICE)
    model = creator.marketplace.publish(DIGESTS, PRICE, parents=[parent], royalty_bps=[2_500])
    buyer_address = dev_accounts(4)[3].address

    receipt = buyer.marketplace.purchase_with_permit(
        model, PRICE, b"\x09" * 32, buyer.token, deadline=2**40
    )
    purchased = buyer.marketplace.events(receipt, "Purchased")[0]["args"]
    assert (purchased["model_id"], purchased["buyer"], purchased["price"]) == (
        model,
        buyer_address,
        PRICE,
    )
    assert buyer.marketplace.license(buyer_address, model).state is LicenseState.PENDING

    creator.marketplace.deliver(model, buyer_address, 1, b"\x42" * 80)
    assert buyer.marketplace.has_license(buyer_address, model)
    assert creator.marketplace.credits(dev_accounts(3)[2].address) == PRICE * 3 // 4
    assert creator.marketplace.credits(dev_accounts(2)[1].address) == PRICE // 4
    assert creator.registry.lineage(model) == [(parent, 2_500)]


def test_revert_reason_reaches_the_caller_as_a_typed_error(w3: Web3) -> None:
    deployment = deploy(Web3Backend(w3, dev_accounts(1)[0]), fund=[dev_accounts(2)[1].address])
    buyer = _client(w3, deployment, 1)
    with pytest.raises(ContractRevertError) as caught:
        buyer.marketplace.purchase(99, PRICE, b"\x01" * 32)
    assert caught.value.reason == "marketplace: model is not for sale"
    assert caught.value.function == "purchase"


def test_restart_keeps_models_balances_and_orders(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    port = free_port()
    session = open_chain(data_dir, port=port)
    assert session.deployed_now
    creator = MercatoContracts.connect(
        session.w3, session.deployment, Web3Backend(session.w3, demo_accounts()[0])
    )
    buyer_account = demo_accounts()[1]
    buyer = MercatoContracts.connect(
        session.w3, session.deployment, Web3Backend(session.w3, buyer_account)
    )
    model = creator.marketplace.publish(DIGESTS, PRICE)
    buyer.token.approve(session.deployment.marketplace, PRICE)
    buyer.marketplace.purchase(model, PRICE, b"\x07" * 32)
    block = session.w3.eth.block_number
    session.close()

    again = open_chain(data_dir, port=port)
    try:
        assert not again.deployed_now
        assert again.deployment == session.deployment
        contracts = MercatoContracts.connect(again.w3, again.deployment)
        assert again.w3.eth.block_number >= block
        assert contracts.registry.owner_of(model) == demo_accounts()[0].address
        assert contracts.token.balance_of(buyer_account.address) == DEMO_FUNDING - PRICE
        assert (
            contracts.marketplace.license(buyer_account.address, model).state
            is LicenseState.PENDING
        )
        # Logs survive too: the index rebuilds from them.
        logs = again.w3.eth.get_logs(
            {"fromBlock": again.deployment.deploy_block, "address": again.deployment.marketplace}
        )
        assert len(logs) >= 2
    finally:
        again.close()


def test_rpc_url_reuses_record_and_starts_nothing(anvil: AnvilSupervisor, tmp_path: Path) -> None:
    data_dir = tmp_path / "other-node"
    first = open_chain(data_dir, rpc_url=anvil.rpc_url)
    assert first.deployed_now and first.anvil is None
    second = open_chain(data_dir, rpc_url=anvil.rpc_url)
    assert not second.deployed_now
    assert second.deployment == first.deployment
    assert not (data_dir / "chain").exists()


def test_record_for_a_chain_without_the_contracts_is_refused(
    anvil: AnvilSupervisor, tmp_path: Path
) -> None:
    data_dir = tmp_path / "stale"
    stale = Deployment(
        31_337,
        *(["0x" + "ab" * 20] * 4),
        deploy_block=1,
        delivery_window=60,
        deployer="0x" + "cd" * 20,
    )
    stale.save(data_dir)
    with pytest.raises(DeploymentError, match="not on the chain"):
        open_chain(data_dir, rpc_url=anvil.rpc_url)


def test_unreachable_rpc_url_is_a_typed_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ChainUnavailableError) as caught:
        open_chain(tmp_path, rpc_url=url)
    assert caught.value.rpc_url == url


def test_second_anvil_on_a_taken_port_is_refused(anvil: AnvilSupervisor, tmp_path: Path) -> None:
    with pytest.raises(AnvilError, match="already in use"):
        AnvilSupervisor(tmp_path / "x", port=anvil.port).start()


def test_cut_state_dump_falls_back_to_the_last_good_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    port = free_port()
    session = open_chain(data_dir, port=port)
    session.close()
    supervisor = AnvilSupervisor(data_dir, port=port)
    supervisor.start()  # keeps a backup of the state that loaded
    supervisor.stop()
    supervisor.state_path.write_text('{"block": ')  # a dump cut mid-write

    again = open_chain(data_dir, port=port)
    try:
        assert not again.deployed_now
        assert again.w3.eth.get_code(again.deployment.marketplace)
    finally:
        again.close()


def test_node_up_command_deploys_once_and_survives_a_restart(tmp_path: Path) -> None:
    env = {**os.environ, "MERCATO_DATA_DIR": str(tmp_path / "node")}
    port = str(free_port())
    command = [
        sys.executable, "-m", "mercato.cli", "node", "up",
        "--port", port, "--gateway-port", str(free_port()),
    ]  # fmt: skip

    first = subprocess.run(
        [*command, "--setup-only"], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert "deployed now" in first.stdout
    assert "10000 MCT" not in first.stdout  # demo accounts are listed only with --demo

    # The long-running form: wait for "ready", then stop it as a service manager would.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "ready" in line:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert any("reused from the deployment" in line for line in lines)
    record = json.loads((tmp_path / "node" / "deployments" / "31337.json").read_text())
    assert record["chain_id"] == 31_337


def test_purchase_commits_to_the_listing_it_read(w3: Web3) -> None:
    deployment = deploy(
        Web3Backend(w3, dev_accounts(1)[0]), fund=[a.address for a in dev_accounts(4)]
    )
    creator, first, second = (_client(w3, deployment, i) for i in (1, 2, 3))
    day = 86_400
    model = creator.marketplace.publish(DIGESTS, PRICE, license_duration=day)
    listing = first.marketplace.listing(model)
    assert (listing.price, listing.license_duration, listing.fee_bps) == (PRICE, day, 0)
    # Read by both buyers; the first buys with a permit covering exactly the price.
    seen = second.marketplace.listing(model)
    first.marketplace.purchase_with_permit(
        model, listing.terms(), b"\x09" * 32, first.token, deadline=2**40
    )
    assert first.marketplace.license(dev_accounts(3)[2].address, model).state is (
        LicenseState.PENDING
    )
    # The owner shortens the license before the second buyer's purchase is mined.
    creator.marketplace.set_listing(model, PRICE, 60)
    second.token.approve(deployment.marketplace, PRICE)
    before = second.token.balance_of(dev_accounts(4)[3].address)
    with pytest.raises(ContractRevertError) as caught:
        second.marketplace.purchase(model, seen.terms(), b"\x0a" * 32)
    assert caught.value.reason == "marketplace: listing terms differ from the buyer's"
    assert second.token.balance_of(dev_accounts(4)[3].address) == before


def test_listing_terms_pack_the_buyers_limit() -> None:
    listing = Listing(TokenAmount(5), 60, True, 250)
    assert listing.terms() == 5 | (60 << 96) | (250 << 136)
    assert listing.terms(7) == 7 | (60 << 96) | (250 << 136)
    # A limit the price field cannot hold is the widest limit there is, not a term.
    assert listing.terms(2**256 - 1) == MAX_PRICE | (60 << 96) | (250 << 136)
    assert listing.terms(-1) == (60 << 96) | (250 << 136)
