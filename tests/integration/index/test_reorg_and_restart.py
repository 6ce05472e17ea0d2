# SPDX-License-Identifier: AGPL-3.0-only
"""The index survives reorgs (Anvil snapshot/revert), kills and deletion: in every case
it ends with exactly the content a fresh build from the chain gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import select

from mercato.chain.anvil import AnvilSupervisor
from mercato.index import Index, SearchQuery
from mercato.index import schema as s
from tests.integration.index.conftest import Market
from tests.integration.index.scenario import PRICE, digests_for, dump, manifest


def _publish(market: Market, who: int, name: str, price: int = 0) -> int:
    d = digests_for(name)
    market.metadata.add(
        d.manifest_cid_digest, manifest(name, tags=[name], task="text-generation", license="MIT")
    )
    return market.clients[who].marketplace.publish(d, price)


def _rpc(market: Market, method: str, *params: object) -> object:
    return market.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def _fresh_dump(market: Market, url: str) -> dict[str, list[tuple[object, ...]]]:
    index = Index.open(url)
    market.indexer(index).sync_once()
    content = dump(index.engine)
    index.close()
    return content


def test_snapshot_revert_reorg_rolls_back_to_the_fork(
    market: Market, index_url: str, tmp_path: Path, fresh_url: Callable[[str], str]
) -> None:
    c, a = market.clients, market.addresses
    alpha = _publish(market, 1, "alpha", PRICE)
    index = Index.open(index_url)
    indexer = market.indexer(index)
    indexer.sync_once()
    fork_block = market.w3.eth.block_number
    snapshot = _rpc(market, "evm_snapshot")

    bravo = _publish(market, 2, "bravo")
    c[3].marketplace.purchase_with_permit(alpha, PRICE, b"\x05" * 32, c[3].token, deadline=2**40)
    c[1].marketplace.deliver(alpha, a[3], 1, b"\x01" * 80)
    c[3].reviews.review(alpha, 5, b"\x00" * 32)
    indexer.sync_once()
    assert index.model(bravo).summary.name == "bravo"
    assert index.model(alpha).summary.purchases == 1 and index.earnings(a[1]).credited == PRICE

    assert _rpc(market, "evm_revert", snapshot) is True
    charlie = _publish(market, 4, "charlie")  # takes bravo's id on the new branch
    _rpc(market, "anvil_mine", hex(5))  # the new branch is longer than the old one
    report = indexer.sync_once()

    assert report.rolled_back_to == fork_block
    assert charlie == bravo and index.model(charlie).summary.name == "charlie"
    assert index.search(SearchQuery(text="bravo")).items == []
    assert index.orders(a[3]) == [] and index.earnings(a[1]).credited == 0
    summary = index.model(alpha).summary
    assert (summary.purchases, summary.rating_count) == (0, 0)
    assert dump(index.engine) == _fresh_dump(market, fresh_url(index_url))


def test_delete_and_rebuild_gives_the_same_content(
    market: Market, index_url: str, fresh_url: Callable[[str], str]
) -> None:
    c, a = market.clients, market.addresses
    index = Index.open(index_url)
    indexer = market.indexer(index, batch_blocks=1)
    parent = _publish(market, 1, "root-model", PRICE)
    indexer.sync_once()
    child = c[2].marketplace.publish(
        digests_for("leaf"), PRICE, parents=[parent], royalty_bps=[500]
    )
    c[3].marketplace.purchase_with_permit(child, PRICE, b"\x05" * 32, c[3].token, deadline=2**40)
    indexer.sync_once()
    market.metadata.add(
        digests_for("leaf").manifest_cid_digest, manifest("leaf", tags=[], task="x", license="MIT")
    )
    c[2].marketplace.deliver(child, a[3], 1, b"\x01" * 80)
    c[1].registry.transfer_from(a[1], a[4], parent)
    c[3].reviews.attest(child, 1, b"\x02" * 32, "f1", -5)
    indexer.sync_once()
    incremental = dump(index.engine)
    assert len(incremental["credits"]) == 2 and incremental["pending_metadata"] == []

    index.close()
    if index_url.startswith("sqlite"):
        os.remove(index_url.removeprefix("sqlite:///"))  # really delete it
    assert _fresh_dump(market, fresh_url(index_url)) == incremental


def test_resumes_after_a_kill(
    market: Market, anvil: AnvilSupervisor, index_url: str, tmp_path: Path
) -> None:
    for i in range(8):
        _publish(market, 1 + i % 4, f"model-{i}")
        _rpc(market, "anvil_mine", hex(40))
    head = market.w3.eth.block_number
    deployment_file, manifests_file = tmp_path / "deployment.json", tmp_path / "manifests.json"
    deployment_file.write_text(json.dumps(asdict(market.deployment)))
    manifests_file.write_text(
        json.dumps({k.hex(): v for k, v in market.metadata.manifests.items()})
    )
    command = [sys.executable, "-m", "tests.integration.index.indexer_process",
               anvil.rpc_url, index_url, str(deployment_file), str(manifests_file)]  # fmt: skip
    process = subprocess.Popen(command, cwd=Path(__file__).parents[3])
    index = Index.open(index_url)
    deadline = time.monotonic() + 60
    try:
        while (index.status()[0] or 0) < market.deployment.deploy_block + 100:
            assert process.poll() is None and time.monotonic() < deadline, (
                "indexer did not progress"
            )
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = index.status()[0]
    assert killed_at is not None and killed_at < head, "the kill came too late to test anything"
    with index.engine.connect() as conn:
        assert conn.execute(select(s.Cursor.last_block)).scalar() == killed_at

    report = market.indexer(index).sync_once()
    assert report.indexed_to == head
    assert report.events < 40  # it resumed: it did not start over
    assert len(index.search(SearchQuery(limit=20)).items) == 8
