# SPDX-License-Identifier: AGPL-3.0-only
"""The seller's agent on a real Anvil when the chain misbehaves: reorgs that remove a
delivery, a chain that goes away and comes back, a delivery stuck in the mempool, and
an agent restarted while its delivery is still unmined."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3 import Web3

from mercato.agent import SellerAgent
from mercato.chain.contracts import LicenseState
from mercato.client import Market
from mercato.errors import ChainUnavailableError

from .conftest import TOKEN, Chain

PRICE = 5 * TOKEN


def _rpc(chain: Chain, method: str, *params: Any) -> Any:
    response = chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def _sale(chain: Chain, tmp_path: Path) -> tuple[LocalAccount, Path, int, Market]:
    """A model published from the node's data directory, and one pending purchase."""
    seller, buyer = chain.accounts[1], chain.accounts[3]
    node_dir = tmp_path / "node"
    model = int(
        chain.market(node_dir, seller)
        .models.publish(chain.packages["iris-logreg"].root, price=PRICE)
        .model_id
    )
    buyer_market = chain.market(tmp_path / "buyer", buyer)
    buyer_market.orders.buy(model)
    assert buyer_market.orders.status(model).state is LicenseState.PENDING
    return seller, node_dir, model, buyer_market


def _deliveries(market: Market, model: int) -> int:
    return len(market.logs(market.contracts.marketplace, "Delivered", model_id=model))


def _until(condition: Any, what: str, limit: float = 120.0) -> None:
    """Waits for `condition()` (a generous bound, only so a broken agent fails the test
    instead of hanging it; nothing is asserted about how long it took)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_a_delivery_removed_by_a_reorg_is_delivered_again_exactly_once(
    chain: Chain, tmp_path: Path
) -> None:
    seller, node_dir, model, buyer_market = _sale(chain, tmp_path)
    _rpc(chain, "anvil_mine", hex(20))  # the purchase is well below the reorg
    before_delivery = _rpc(chain, "evm_snapshot")
    agent = SellerAgent([chain.market(node_dir, seller)], node_dir, receipt_wait=10)
    assert [o.model_id for o in agent.deliver_round().delivered] == [model]
    for _ in range(3):
        _rpc(chain, "evm_mine")
    assert agent.deliver_round().delivered == []  # the agent has seen the heads above it
    assert buyer_market.orders.status(model).state is LicenseState.DELIVERED

    # A competing branch from before the delivery, longer than the one the agent saw.
    assert _rpc(chain, "evm_revert", before_delivery) is True
    for _ in range(5):
        _rpc(chain, "evm_mine")
    assert buyer_market.orders.status(model).state is LicenseState.PENDING
    assert _deliveries(buyer_market, model) == 0

    delivered = []
    for _ in range(3):
        delivered += agent.deliver_round().delivered
    assert [o.model_id for o in delivered] == [model]
    assert agent.status().reorgs == 1
    assert buyer_market.orders.status(model).state is LicenseState.DELIVERED
    assert _deliveries(buyer_market, model) == 1
    # Nothing more is sent while it stays delivered.
    nonce = chain.w3.eth.get_transaction_count(seller.address, "pending")
    assert agent.deliver_round().delivered == []
    assert chain.w3.eth.get_transaction_count(seller.address, "pending") == nonce


def test_a_depth_one_reorg_that_drops_the_delivery_block_is_delivered_again(
    chain: Chain, tmp_path: Path
) -> None:
    seller, node_dir, model, buyer_market = _sale(chain, tmp_path)
    _rpc(chain, "anvil_mine", hex(20))  # the purchase is well below the reorg
    # Bumps at once, so a delivery the reorg put back into the mempool gets mined.
    agent = SellerAgent([chain.market(node_dir, seller)], node_dir, bump_after=0, receipt_wait=10)
    assert len(agent.deliver_round().delivered) == 1
    agent.deliver_round()  # reads the head that holds the delivery
    assert buyer_market.orders.status(model).state is LicenseState.DELIVERED

    _rpc(chain, "anvil_reorg", 1, [])
    assert buyer_market.orders.status(model).state is LicenseState.PENDING

    for _ in range(5):
        agent.deliver_round()
        if buyer_market.orders.status(model).state is LicenseState.DELIVERED:
            break
    assert buyer_market.orders.status(model).state is LicenseState.DELIVERED
    assert _deliveries(buyer_market, model) == 1
    assert agent.status().reorgs == 1


def test_the_agent_survives_the_chain_going_away_reports_it_and_resumes(
    chain: Chain, tmp_path: Path
) -> None:
    seller, node_dir, model, buyer_market = _sale(chain, tmp_path)
    agent = SellerAgent([chain.market(node_dir, seller)], node_dir, receipt_wait=10)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: agent.run(stop, poll=0.05), daemon=True)
    thread.start()
    try:
        _until(lambda: agent.status().last_round_at is not None, "a first round")
        _until(
            lambda: buyer_market.orders.status(model).state is LicenseState.DELIVERED,
            "the first delivery",
        )
        chain.anvil.stop()  # saves its state, then the port is closed
        _until(lambda: agent.status().last_error is not None, "the error reported")
        down = agent.status()
        assert thread.is_alive() and down.running
        assert down.failures >= 1
        # The chain's unavailability (after the provider's own retries, if it has them).
        assert down.last_error_code in {ChainUnavailableError.code, "rpc_retries_exhausted"}
        assert str(chain.anvil.port) in (down.last_error or "")

        chain.anvil.start()  # the same port, the same chain
        buyer = chain.accounts[4]
        second = chain.market(tmp_path / "buyer2", buyer)
        second.orders.buy(model)
        _until(
            lambda: second.orders.status(model).state is LicenseState.DELIVERED,
            "the delivery after the chain came back",
        )
        _until(lambda: agent.status().failures == 0, "a successful round")
        assert thread.is_alive()
        up = agent.status()
        assert up.last_error is None and up.last_error_code is None and up.pending == 0
        assert up.last_round_at is not None and up.last_round_at > (down.last_error_at or 0)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and agent.status().running is False
    assert _deliveries(buyer_market, model) == 2  # one per buyer


def test_a_stuck_delivery_is_replaced_with_higher_fees_and_delivered_once(
    chain: Chain, tmp_path: Path
) -> None:
    seller, node_dir, model, buyer_market = _sale(chain, tmp_path)
    _rpc(chain, "evm_setAutomine", False)
    agent = SellerAgent([chain.market(node_dir, seller)], node_dir, bump_after=0, receipt_wait=0.2)
    outbox = agent.outboxes[seller.address]
    assert agent.deliver_round().delivered == []  # sent, not mined
    (entry,) = outbox.entries.values()
    first_fee = entry.max_fee
    # Fees jump past what the delivery offered: the next block leaves it out.
    _rpc(chain, "anvil_setNextBlockBaseFeePerGas", hex(first_fee * 4))
    _rpc(chain, "evm_mine")
    assert buyer_market.orders.status(model).state is LicenseState.PENDING
    assert agent.status().unmined == 1

    assert agent.deliver_round().delivered == []  # stuck: signed again, same nonce
    assert len(entry.hashes) == 2 and entry.max_fee > first_fee * 4
    _rpc(chain, "evm_mine")

    report = agent.deliver_round()
    assert [o.model_id for o in report.delivered] == [model]
    mined = chain.w3.eth.get_transaction(HexStr(entry.hashes[-1]))
    assert mined["blockNumber"] is not None and mined["nonce"] == entry.nonce
    assert int(mined["maxFeePerGas"]) == entry.max_fee
    assert _deliveries(buyer_market, model) == 1
    assert agent.deliver_round().delivered == [] and agent.status().unmined == 0


def test_fee_bumps_stop_at_the_operators_cap_and_the_delivery_waits_for_fees_to_fall(
    chain: Chain, tmp_path: Path
) -> None:
    seller, node_dir, model, buyer_market = _sale(chain, tmp_path)
    _rpc(chain, "evm_setAutomine", False)
    market = chain.market(node_dir, seller)
    first_fee = int(chain.w3.eth.max_priority_fee) + 2 * int(
        chain.w3.eth.get_block("latest")["baseFeePerGas"]
    )
    cap_gwei = first_fee * 2 / 10**9
    market.settings = market.settings.model_copy(update={"agent_max_fee_gwei": cap_gwei})
    agent = SellerAgent([market], node_dir, bump_after=0, receipt_wait=0.2)
    outbox = agent.outboxes[seller.address]
    agent.deliver_round()
    (entry,) = outbox.entries.values()
    cap = outbox.max_fee_cap
    assert cap == int(cap_gwei * 10**9)
    # A spammer drives the base fee far past the cap: replacements stop at the cap.
    _rpc(chain, "anvil_setNextBlockBaseFeePerGas", hex(first_fee * 8))
    _rpc(chain, "evm_mine")
    for _ in range(4):
        agent.deliver_round()
    assert entry.max_fee == cap and entry.priority_fee <= cap
    assert len(entry.hashes) == 2  # one replacement at the cap, then no more
    assert buyer_market.orders.status(model).state is LicenseState.PENDING
    # Fees fall back: the capped variant (which Anvil dropped from its pool while it was
    # below the base fee) is sent again and mined, once.
    _rpc(chain, "anvil_setNextBlockBaseFeePerGas", hex(1))
    _rpc(chain, "evm_mine")
    agent.deliver_round()
    _rpc(chain, "evm_mine")
    assert [o.model_id for o in agent.deliver_round().delivered] == [model]
    assert int(chain.w3.eth.get_transaction(HexStr(entry.hashes[-1]))["maxFeePerGas"]) <= cap
    assert _deliveries(buyer_market, model) == 1


def test_when_the_original_wins_the_race_with_its_replacement_nothing_is_sent_again(
    chain: Chain, tmp_path: Path
) -> None:
    seller, node_dir, model, buyer_market = _sale(chain, tmp_path)
    _rpc(chain, "evm_setAutomine", False)
    agent = SellerAgent([chain.market(node_dir, seller)], node_dir, bump_after=0, receipt_wait=0.2)
    outbox = agent.outboxes[seller.address]
    agent.deliver_round()
    (entry,) = outbox.entries.values()
    original = chain.w3.eth.get_transaction(HexStr(entry.hashes[0]))
    agent.deliver_round()  # replaced
    assert len(entry.hashes) == 2
    # Another node's mempool still had the original, and it is the one mined.
    _rpc(chain, "anvil_dropTransaction", entry.hashes[-1])
    _rpc(chain, "eth_sendRawTransaction", Web3.to_hex(_raw(original, seller)))
    _rpc(chain, "evm_mine")

    assert [o.model_id for o in agent.deliver_round().delivered] == [model]
    assert agent.deliver_round().delivered == []
    assert _deliveries(buyer_market, model) == 1
    assert chain.w3.eth.get_transaction_count(seller.address, "pending") == entry.nonce + 1


def _raw(tx: Any, account: LocalAccount) -> bytes:
    """The original's signed bytes again (signing is deterministic)."""
    fields = {
        "type": 2,
        "chainId": int(tx["chainId"]),
        "nonce": int(tx["nonce"]),
        "to": tx["to"],
        "data": Web3.to_hex(tx["input"]),
        "gas": int(tx["gas"]),
        "value": 0,
        "maxFeePerGas": int(tx["maxFeePerGas"]),
        "maxPriorityFeePerGas": int(tx["maxPriorityFeePerGas"]),
    }
    signed = account.sign_transaction(fields)
    assert signed.hash == tx["hash"]
    return bytes(signed.raw_transaction)


def test_an_agent_restarted_with_its_delivery_in_the_mempool_sends_no_second_one(
    chain: Chain, tmp_path: Path
) -> None:
    seller, node_dir, model, buyer_market = _sale(chain, tmp_path)
    _rpc(chain, "evm_setAutomine", False)
    first = SellerAgent([chain.market(node_dir, seller)], node_dir, receipt_wait=0.2)
    assert first.deliver_round().delivered == []
    mined = chain.w3.eth.get_transaction_count(seller.address, "latest")
    assert chain.w3.eth.get_transaction_count(seller.address, "pending") == mined + 1

    # The node restarts (the first agent is gone, as after SIGKILL) before it is mined.
    restarted = SellerAgent([chain.market(node_dir, seller)], node_dir, receipt_wait=0.2)
    assert restarted.deliver_round().delivered == []
    assert chain.w3.eth.get_transaction_count(seller.address, "pending") == mined + 1
    assert restarted.status().unmined == 1 and restarted.status().pending == 1

    _rpc(chain, "evm_mine")
    assert [o.model_id for o in restarted.deliver_round().delivered] == [model]
    assert _deliveries(buyer_market, model) == 1
    assert chain.w3.eth.get_transaction_count(seller.address, "pending") == mined + 1
