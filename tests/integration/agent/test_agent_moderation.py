# SPDX-License-Identifier: AGPL-3.0-only
"""The seller's agent never delivers a model its node denies (it declines the order: the
buyer is refunded at once), and delivers nothing while the node's lists cannot be read;
every other order goes on."""

from __future__ import annotations

from pathlib import Path

from mercato.agent import SellerAgent
from mercato.chain.contracts import LicenseState
from mercato.moderation.lists import NodeDenylists
from mercato.moderation.policy import ModerationPolicy

from .conftest import Chain
from .test_seller_agent import PRICE, _buy, _publish


def test_a_denied_model_is_not_delivered_and_the_others_are(chain: Chain, tmp_path: Path) -> None:
    seller = chain.accounts[1]
    node_dir = tmp_path / "node"
    denied, allowed = _publish(chain, node_dir, seller), _publish(chain, node_dir, seller)
    buyer = chain.accounts[5]
    buying = _buy(chain, buyer, denied, tmp_path)
    _buy(chain, buyer, allowed, tmp_path)
    balance = buying.contracts.token.balance_of(buyer.address)
    lists = NodeDenylists(node_dir)
    lists.deny(str(denied), "malware")
    agent = SellerAgent(
        [chain.market(node_dir, seller)], node_dir, moderation=ModerationPolicy(lists)
    )

    report = agent.deliver_round()

    assert [o.model_id for o in report.delivered] == [allowed]
    assert [o.model_id for o in report.declined] == [denied]
    assert report.skipped == []
    assert buying.orders.status(denied).state is LicenseState.REFUNDED
    assert buying.contracts.token.balance_of(buyer.address) == balance + PRICE
    # Declined once: the next round has nothing left to do.
    again = agent.deliver_round()
    assert (again.delivered, again.declined, again.skipped) == ([], [], [])


def test_unreadable_lists_hold_back_deliveries(chain: Chain, tmp_path: Path) -> None:
    seller = chain.accounts[1]
    node_dir = tmp_path / "node"
    model = _publish(chain, node_dir, seller)
    buying = _buy(chain, chain.accounts[6], model, tmp_path)
    lists = NodeDenylists(node_dir)
    lists.root.mkdir(parents=True)
    lists.local_path.write_text("version: 3\n---\n")  # an operator's broken edit
    agent = SellerAgent(
        [chain.market(node_dir, seller)], node_dir, moderation=ModerationPolicy(lists)
    )

    report = agent.deliver_round()

    assert report.delivered == []
    assert [why for _, why in report.skipped] == ["denylist_format"]
    assert buying.orders.status(model).state is LicenseState.PENDING
