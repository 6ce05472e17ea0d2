# SPDX-License-Identifier: AGPL-3.0-only
"""A purchase commits to the licence terms its buyer read, on a real node (Anvil, store,
agent): terms the owner switched are refused before anything is paid, and the order
then says which terms were bought."""

from __future__ import annotations

import pytest

from mercato.chain.contracts import LicenseState
from mercato.chain.session import demo_accounts
from mercato.client import Market
from mercato.client.license_terms import terms_digest
from mercato.errors import LicenseTermsChangedError
from mercato.node import Node


def test_buy_commits_to_the_terms_read_and_the_order_shows_them(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    node, _base, ids = demo_node
    assert node.market is not None
    buyer = demo_accounts()[6]
    market = Market(node.market.settings, account=buyer, deployment=node.market.deployment)
    model = ids[0]
    read = market.orders.terms(model)
    assert read is not None
    digest = terms_digest(read)
    info = market.models.show(model)
    owner = node.account_market(next(a for a in node.accounts if a.address == info.owner))
    listing = info.listing

    # Same price and duration, other licence: the buyer's purchase must not go through.
    owner.contracts.marketplace.set_listing(
        model, listing.price, listing.license_duration, True, b"\x42" * 32
    )
    with pytest.raises(LicenseTermsChangedError) as refused:
        market.orders.buy(model, terms=read)
    assert refused.value.terms_digest == digest
    assert market.orders.status(model).state is LicenseState.NONE

    owner.contracts.marketplace.set_listing(
        model, listing.price, listing.license_duration, True, digest
    )
    order = market.orders.buy(model, terms=read)
    assert order.state in (LicenseState.PENDING, LicenseState.DELIVERED)
    assert market.orders.terms_bought(model) == digest
    assert [o.terms_digest for o in market.orders.list() if o.model_id == model] == [digest]
