# SPDX-License-Identifier: AGPL-3.0-only
"""Block timestamps in the index: recorded with the events, undone by a reorg, and an
index built before they existed is rebuilt so every block gets one."""

from __future__ import annotations

from sqlalchemy import select

from mercato.index import Index
from mercato.index import schema as s
from mercato.index.db import downgrade, migrate
from tests.integration.index.conftest import Market
from tests.integration.index.scenario import digests_for, manifest


def _publish(market: Market, who: int, name: str) -> int:
    d = digests_for(name)
    market.metadata.add(
        d.manifest_cid_digest, manifest(name, tags=[name], task="tabular", license="MIT")
    )
    return market.clients[who].marketplace.publish(d, 0)


def _rpc(market: Market, method: str, *params: object) -> object:
    return market.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def test_each_event_block_gets_the_chain_timestamp(market: Market, index_url: str) -> None:
    first = _publish(market, 1, "alpha")
    _rpc(market, "evm_increaseTime", 86_400)  # a day later
    second = _publish(market, 2, "bravo")
    index = Index.open(index_url)
    market.indexer(index).sync_once()

    blocks = [index.model(m).versions[0].block_number for m in (first, second)]
    times = index.block_times([*blocks, 10**9])  # a block with no event is left out
    assert set(times) == set(blocks)
    for number in blocks:
        assert times[number] == market.w3.eth.get_block(number)["timestamp"]
    assert times[blocks[1]] - times[blocks[0]] >= 86_400


def test_a_reorg_removes_the_abandoned_blocks_times(market: Market, index_url: str) -> None:
    _publish(market, 1, "alpha")
    index = Index.open(index_url)
    indexer = market.indexer(index)
    indexer.sync_once()
    snapshot = _rpc(market, "evm_snapshot")
    bravo = _publish(market, 2, "bravo")
    indexer.sync_once()
    abandoned = index.model(bravo).versions[0].block_number
    old_time = index.block_times([abandoned])[abandoned]

    assert _rpc(market, "evm_revert", snapshot) is True
    _rpc(market, "evm_increaseTime", 3_600)
    _rpc(market, "anvil_mine", hex(3))  # the same height on the new branch, an hour on
    indexer.sync_once()

    assert index.block_times([abandoned]) == {}
    assert old_time != market.w3.eth.get_block(abandoned)["timestamp"]


def test_an_index_from_before_block_times_is_rebuilt(market: Market, index_url: str) -> None:
    alpha = _publish(market, 1, "alpha")
    index = Index.open(index_url)
    market.indexer(index).sync_once()
    downgrade(index.engine, "0001")  # what an index written before block times holds
    assert index.model(alpha).summary.name == "alpha"

    migrate(index.engine)  # to 0002: the cursor goes back, so events are read again
    with index.engine.connect() as conn:
        cursor = conn.execute(select(s.Cursor)).one()
        assert cursor.last_block == cursor.start_block
    market.indexer(index).sync_once()
    block = index.model(alpha).versions[0].block_number
    assert index.block_times([block]) == {block: market.w3.eth.get_block(block)["timestamp"]}
