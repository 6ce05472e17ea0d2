# SPDX-License-Identifier: AGPL-3.0-only
"""Two replicas writing one PostgreSQL index for a moment (a leader whose session the
server ended before it noticed, see docs/replicas.md) must not apply events twice."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mercato.chain.contracts import Delivery
from mercato.index import Index, schema
from mercato.index.ingest import SyncReport

from ..index.conftest import Market
from ..index.scenario import PRICE, digests_for, dump, manifest
from .conftest import PostgresServer

pytestmark = pytest.mark.integration


def _publish(market: Market, who: int, name: str) -> int:
    d = digests_for(name)
    card = manifest(name, tags=["vision"], task="image-classification", license="MIT")
    market.metadata.add(d.manifest_cid_digest, card)
    return market.clients[who].marketplace.publish(d, PRICE)


def test_a_batch_another_writer_already_took_is_dropped(
    market: Market, postgres_server: PostgresServer
) -> None:
    model = _publish(market, 1, "alpha")
    terms = market.clients[3].marketplace.listing(model).terms()
    buyer = market.clients[3]
    buyer.marketplace.purchase_with_permit(model, terms, b"\x07" * 32, buyer.token, deadline=2**40)
    delivery = Delivery(model, market.addresses[3], 1, b"\x42" * 80)  # type: ignore[arg-type]
    market.clients[1].marketplace.deliver_many([delivery])  # a sale: counted once
    index = Index.open(postgres_server.new_database())
    old_leader, new_leader = market.indexer(index), market.indexer(index)
    old_leader.sync_once(max_batches=0)  # reads the cursor (and creates it)
    with index.engine.connect() as conn:
        first = conn.execute(select(schema.Cursor.last_block)).scalar_one() + 1
    head = int(market.w3.eth.block_number)

    new_leader.sync_once()  # takes every block while the old one is between polls
    before = dump(index.engine)
    assert index.model(model).summary.purchases == 1

    # The old leader goes on with the batch it planned from the cursor it read.
    assert old_leader._ingest_batch(first, head, SyncReport()) is None

    assert dump(index.engine) == before
    assert index.model(model).summary.purchases == 1
    index.close()
