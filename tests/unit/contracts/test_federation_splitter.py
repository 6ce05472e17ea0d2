# SPDX-License-Identifier: AGPL-3.0-only
"""A finalized task's revenue splitter: it owns the trained model and pays its sales to
the contributors by their shares, while the parent model keeps its royalty."""

from __future__ import annotations

from typing import Any

import boa
import pytest

from mercato.chain.artifacts import load_artifact
from mercato.chain.boa_backend import BoaBackend
from tests.unit.contracts.chain import (
    BUYER_KEY,
    PRICE,
    WRAPPED_KEY,
    Mercato,
    digests,
    only_event,
    reverts,
    terms,
)
from tests.unit.contracts.federation import (
    TaskTerms,
    approve,
    bitmap,
    commit,
    create,
    federation,
    join_all,
    splitter_at,
)

ROYALTY_BPS = 1_500


@pytest.fixture
def coordinator() -> str:
    return str(boa.env.generate_address())


@pytest.fixture
def contributors(chain: Mercato) -> list[str]:
    """bob, carol and dave hold seats 0-2; the task gives them 60%, 40% and nothing."""
    return list(chain.accounts[1:4])


@pytest.fixture
def splitter(
    chain: Mercato, token: Any, listed: int, alice: str, coordinator: str, contributors: list[str]
) -> Any:
    """The splitter of a task alice ran from her model `listed`, royalty 15%."""
    fed = federation(chain)
    approve(token, fed.address, alice, *contributors)
    task_id = create(
        fed, alice, coordinator, TaskTerms(parent_model_id=listed, parent_royalty_bps=ROYALTY_BPS)
    )
    join_all(fed, task_id, contributors)
    commit(fed, task_id, coordinator, 1, bitmap(0, 1))
    with boa.env.prank(coordinator):
        return splitter_at(fed.finalize(task_id, [6_000, 4_000, 0]))


@pytest.fixture
def published(splitter: Any, coordinator: str) -> int:
    with boa.env.prank(coordinator):
        return int(splitter.publish_model(*digests(40), PRICE, 0))


def _sell(marketplace: Any, model_id: int, buyer: str, seller: str, price: int = PRICE) -> None:
    with boa.env.prank(buyer):
        marketplace.purchase(model_id, terms(price), BUYER_KEY)
    with boa.env.prank(seller):
        marketplace.deliver(model_id, buyer, 1, WRAPPED_KEY)


def test_publish_model_succeeds(
    splitter: Any, registry: Any, marketplace: Any, listed: int, coordinator: str
) -> None:
    with boa.env.prank(coordinator):
        model_id = splitter.publish_model(*digests(40), PRICE, 600)
    event = only_event(splitter, "ModelPublished")
    assert (event.task_id, event.model_id) == (splitter.task()[1], model_id)
    assert splitter.model_id() == model_id
    assert registry.ownerOf(model_id) == splitter.address
    assert registry.lineage(model_id) == ([listed], [ROYALTY_BPS])
    assert marketplace.listing(model_id) == (PRICE, 600, True, 0)
    assert marketplace.agent_of(splitter.address) == coordinator


def test_publish_model_by_someone_else(splitter: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("revenue_splitter: caller is not the coordinator"):
        splitter.publish_model(*digests(40), PRICE, 0)


def test_publish_model_twice(splitter: Any, published: int, coordinator: str) -> None:
    with boa.env.prank(coordinator), reverts("revenue_splitter: model already published"):
        splitter.publish_model(*digests(41), PRICE, 0)


def test_publish_model_without_a_parent(
    chain: Mercato, token: Any, registry: Any, alice: str, coordinator: str, contributors: list[str]
) -> None:
    fed = federation(chain)
    approve(token, fed.address, alice, *contributors)
    task_id = create(fed, alice, coordinator)
    join_all(fed, task_id, contributors[:2])
    commit(fed, task_id, coordinator, 1, bitmap(0))
    with boa.env.prank(coordinator):
        splitter = splitter_at(fed.finalize(task_id, [10_000, 0]))
        model_id = splitter.publish_model(*digests(42), 0, 0)
    assert registry.lineage(model_id) == ([], [])


def test_initialize_twice(splitter: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("revenue_splitter: already initialized"):
        splitter.initialize(99)


def test_the_implementation_cannot_be_initialized(chain: Mercato, alice: str) -> None:
    assert chain.deployment.revenue_splitter is not None
    implementation = BoaBackend.at(
        load_artifact("revenue_splitter"), chain.deployment.revenue_splitter
    )
    with boa.env.prank(alice), reverts("revenue_splitter: already initialized"):
        implementation.initialize(1)


def test_set_provider_succeeds(
    splitter: Any, registry: Any, published: int, coordinator: str, alice: str
) -> None:
    with boa.env.prank(coordinator):
        splitter.set_provider("https://node.example")
    assert registry.provider_of(published) == "https://node.example"
    with boa.env.prank(alice), reverts("revenue_splitter: caller is not the coordinator"):
        splitter.set_provider("https://elsewhere.example")


def test_sales_are_released_pro_rata_and_the_parent_keeps_its_royalty(
    splitter: Any,
    published: int,
    token: Any,
    marketplace: Any,
    approve_all: None,
    alice: str,
    coordinator: str,
    contributors: list[str],
    signer: str,
) -> None:
    """The coordinator delivers as the splitter's agent; the sale's credit, less the
    parent's royalty, is split 60/40; the contributor without a share gets nothing."""
    bob, carol, dave = contributors
    _sell(marketplace, published, signer, coordinator)
    royalty = PRICE * ROYALTY_BPS // 10_000
    assert marketplace.credits(alice) == royalty
    assert marketplace.credits(splitter.address) == PRICE - royalty
    # The marketplace keeps one base unit of a withdrawn credit (see `withdraw`).
    revenue = PRICE - royalty - 1
    assert splitter.releasable(bob) == revenue * 6 // 10
    before = token.balanceOf(bob)
    with boa.env.prank(dave):  # anyone may release; the tokens go to the contributor
        assert splitter.release(bob) == revenue * 6 // 10
    released = only_event(splitter, "Released")
    assert (released.account, released.amount) == (bob, revenue * 6 // 10)
    assert token.balanceOf(bob) == before + revenue * 6 // 10
    assert splitter.release(carol) == revenue * 4 // 10
    with reverts("revenue_splitter: nothing to release"):
        splitter.release(bob)
    with reverts("revenue_splitter: nothing to release"):
        splitter.release(dave)
    assert splitter.releasable(dave) == 0


def test_release_catches_up_after_later_sales(
    splitter: Any,
    token: Any,
    marketplace: Any,
    approve_all: None,
    coordinator: str,
    contributors: list[str],
    chain: Mercato,
) -> None:
    """Rounding holds back under one base unit per contributor, and only until the next
    sale: after every sale and release, what stays is bounded and nothing is overpaid."""
    bob, carol, _ = contributors
    odd_price = 1_001
    with boa.env.prank(coordinator):
        published = splitter.publish_model(*digests(40), odd_price, 0)
    received = 0
    for buyer in (chain.accounts[0], chain.accounts[4], chain.signer):
        _sell(marketplace, published, buyer, coordinator, odd_price)
        royalty = odd_price * ROYALTY_BPS // 10_000
        received += odd_price - royalty
        for account in (bob, carol):
            if splitter.releasable(account):
                splitter.release(account)
    paid = splitter.released(bob) + splitter.released(carol)
    assert splitter.total_released() == paid
    held = token.balanceOf(splitter.address) + marketplace.credits(splitter.address)
    assert paid + held == received
    assert held <= 2 + 1  # one unit per contributor at most, plus the marketplace's unit
    assert splitter.released(bob) == (received - 1) * 6 // 10
