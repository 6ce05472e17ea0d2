# SPDX-License-Identifier: AGPL-3.0-only
"""Ingestion on a real Anvil into SQLite and PostgreSQL: every event kind, checked
against what the contracts themselves report."""

from __future__ import annotations

from mercato.chain.contracts import Delivery
from mercato.chain.deployment import TOKEN_UNIT
from mercato.index import Index, SearchQuery, Sort
from tests.integration.index.conftest import Market
from tests.integration.index.scenario import PRICE, digests_for, dump, manifest


def _publish(market: Market, who: int, name: str, price: int, **kwargs: object) -> int:
    d = digests_for(name)
    market.metadata.add(
        d.manifest_cid_digest,
        manifest(
            name,
            tags=["vision", name],
            task="image-classification",
            license="MIT",
            text=f"A {name} model for testing.",
        ),
    )
    return market.clients[who].marketplace.publish(d, price, **kwargs)  # type: ignore[arg-type]


def test_full_marketplace_history_is_indexed(market: Market, index_url: str) -> None:
    c, a = market.clients, market.addresses
    c[0].marketplace.set_protocol_fee(200)  # 2 %, in force for listings from now on
    parent = _publish(market, 1, "alpha-base", PRICE)
    child = _publish(market, 2, "beta-tuned", PRICE, parents=[parent], royalty_bps=[1_000])
    free = _publish(market, 1, "gamma-free", 0)
    c[2].registry.set_provider("http://provider.example:8000")
    c[2].marketplace.set_agent(a[5])
    terms = c[3].marketplace.listing(child).terms()  # the price and the 2 % fee it was listed with
    c[3].marketplace.purchase_with_permit(child, terms, b"\x07" * 32, c[3].token, deadline=2**40)
    c[4].marketplace.purchase_with_permit(child, terms, b"\x08" * 32, c[4].token, deadline=2**40)
    c[5].marketplace.deliver_many(
        [Delivery(child, a[3], 1, b"\x42" * 80), Delivery(child, a[4], 1, b"\x43" * 80)]  # type: ignore[arg-type]
    )
    c[3].marketplace.purchase(free, c[3].marketplace.listing(free).terms(), b"\x00" * 32)
    c[3].reviews.review(child, 4, b"\x01" * 32)
    c[4].reviews.review(child, 1, b"\x02" * 32)
    c[4].reviews.review(child, 5, b"\x03" * 32)  # an update replaces the earlier rating
    c[5].reviews.attest(child, 1, b"\x09" * 32, "accuracy", 930_000)
    c[2].registry.add_version(child, digests_for("beta-tuned", 2))
    c[2].registry.deprecate_version(child, 1)
    c[2].marketplace.withdraw()

    index = Index.open(index_url)
    report = market.indexer(index).sync_once()
    assert report.events > 20 and report.indexed_to == market.w3.eth.block_number

    detail = index.model(child)
    assert detail.summary.name == "beta-tuned" and detail.summary.creator == a[2]
    assert detail.summary.purchases == 2 and detail.summary.rating == 4.5
    assert detail.summary.price == PRICE and detail.summary.license == "MIT"
    # Version 2's manifest never arrived: metadata comes from version 1, and 2 is held.
    assert detail.metadata_version == 1 and detail.summary.latest_version == 2
    assert [(v.version, v.deprecated, v.metadata_arrived) for v in detail.versions] == [
        (1, True, True),
        (2, False, False),
    ]
    assert detail.provider_url == "http://provider.example:8000"
    assert detail.manifest is not None and detail.manifest["future_field"] == {"x": 1}
    assert index.lineage(child).parents == [(parent, 1_000)]
    assert index.lineage(parent).children == [child]
    assert [(r.reviewer, r.rating, r.edits) for r in index.reviews(child)] == [
        (a[4], 5, 1),
        (a[3], 4, 0),
    ]
    [evaluation] = index.evaluations(child)
    assert (evaluation.metric, evaluation.score, evaluation.author) == ("accuracy", 930_000, a[5])
    assert [(o.model_id, o.state) for o in index.orders(a[3])] == [
        (free, "delivered"),
        (child, "delivered"),
    ]
    assert index.creator(a[2]).agent == a[5]

    # Earnings match the contract's own credits, for every account that was paid.
    for account in (a[0], a[1], a[2]):
        earned = index.earnings(account)
        assert earned.balance == c[0].marketplace.credits(account), account
    assert index.earnings(a[1]).credited == 2 * PRICE // 10  # royalties from two sales
    assert {cr.role for cr in index.earnings(a[0]).credits} == {"fee"}

    page = index.search(SearchQuery(text="tuned"))
    assert [m.model_id for m in page.items] == [child]
    assert [m.model_id for m in index.search(SearchQuery(free_only=True)).items] == [free]
    assert [m.model_id for m in index.search(SearchQuery(derived_from=parent)).items] == [child]
    assert index.search(SearchQuery(sort=Sort.MOST_BOUGHT)).items[0].model_id == child

    # A second sync with nothing new changes nothing.
    before = dump(index.engine)
    assert market.indexer(index).sync_once().events == 0
    assert dump(index.engine) == before
    assert before["models"] and TOKEN_UNIT


def test_metadata_is_held_until_it_arrives(market: Market, index_url: str) -> None:
    d = digests_for("late-model")
    model = market.clients[1].marketplace.publish(d, 0)
    index = Index.open(index_url)
    indexer = market.indexer(index)
    indexer.sync_once()
    assert not index.model(model).searchable
    assert index.search(SearchQuery(text="late")).items == []

    market.metadata.add(
        d.manifest_cid_digest,
        manifest("late-model", tags=["nlp"], task="translation", license="Apache-2.0"),
    )
    report = indexer.sync_once()
    assert report.metadata_applied == 1
    assert [
        m.model_id for m in index.search(SearchQuery(text="late", task="translation")).items
    ] == [model]


def test_confirmation_depth_leaves_recent_blocks_alone(market: Market, index_url: str) -> None:
    _publish(market, 1, "deep-model", 0)
    market.w3.provider.make_request("anvil_mine", [3])  # type: ignore[arg-type]
    recent = _publish(market, 1, "fresh-model", 0)
    index = Index.open(index_url)
    report = market.indexer(index, confirmations=2).sync_once()
    assert report.indexed_to == market.w3.eth.block_number - 2
    assert [m.name for m in index.search(SearchQuery()).items] == ["deep-model"]
    market.w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
    market.indexer(index, confirmations=2).sync_once()
    assert index.model(recent).summary.name == "fresh-model"
