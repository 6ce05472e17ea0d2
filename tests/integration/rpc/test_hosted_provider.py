# SPDX-License-Identifier: AGPL-3.0-only
"""The index, `Market.logs` and `show` through a stand-in for a hosted RPC provider.

`proxy.RpcProxy` stands in for a hosted provider (none is reachable from here): it caps
`eth_getLogs` at 100 blocks and 8 results, answers 429 and 503 and drops connections at
random (seeded), in front of a real Anvil. Whatever it refuses, the results must equal
those read from Anvil directly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from web3 import Web3
from web3.types import RPCEndpoint

from mercato.chain.anvil import AnvilSupervisor, dev_accounts
from mercato.chain.contracts import MercatoContracts
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.logs import LogFetcher
from mercato.chain.retry import RetryPolicy
from mercato.chain.web3_backend import Web3Backend, connect
from mercato.client import Market
from mercato.config import Settings
from mercato.errors import LogQueryError, RpcRetryExhaustedError
from mercato.index import DictMetadataSource, Index, Indexer, IndexerConfig
from tests.integration.index.scenario import PRICE, digests_for, dump, manifest

from .proxy import RpcProxy

MODELS = 14


def _history(w3: Web3) -> tuple[Deployment, DictMetadataSource, list[int]]:
    """Deploys and publishes MODELS models spread over ~1,500 blocks (a few per range)."""
    accounts = dev_accounts(3)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    creators = [MercatoContracts.connect(w3, deployment, Web3Backend(w3, a)) for a in accounts]
    metadata = DictMetadataSource()
    models: list[int] = []
    for n in range(MODELS):
        name = f"model-{n}"
        d = digests_for(name)
        metadata.add(
            d.manifest_cid_digest,
            manifest(name, tags=["t"], task="image-classification", license="MIT"),
        )
        models.append(creators[1 + n % 2].marketplace.publish(d, PRICE if n % 3 else 0))
        creators[1 + n % 2].registry.add_version(models[-1], digests_for(name, 2))
        if n % 4 == 0:
            w3.provider.make_request("anvil_mine", [hex(250)])  # type: ignore[arg-type]
    return deployment, metadata, models


def test_index_through_a_capped_flaky_provider_matches_direct_anvil(
    anvil: AnvilSupervisor, w3: Web3, tmp_path: Path, provider: Callable[..., RpcProxy]
) -> None:
    deployment, metadata, _ = _history(w3)
    proxy = provider()
    direct = Index.open(f"sqlite:///{tmp_path / 'direct.sqlite'}")
    hosted = Index.open(f"sqlite:///{tmp_path / 'hosted.sqlite'}")
    Indexer(direct, w3, deployment, metadata).sync_once()
    report = Indexer(hosted, connect(proxy.url), deployment, metadata).sync_once()

    assert report.indexed_to == w3.eth.block_number
    assert dump(hosted.engine) == dump(direct.engine)
    assert len(dump(hosted.engine)["models"]) == MODELS
    # The provider's limits and failures were really met on the way.
    assert proxy.stats["range_refused"] and proxy.stats["results_refused"]
    assert proxy.stats["429"] and proxy.stats["drop"]


def test_index_resumes_after_its_last_committed_batch(
    anvil: AnvilSupervisor, w3: Web3, tmp_path: Path, provider: Callable[..., RpcProxy]
) -> None:
    deployment, metadata, _ = _history(w3)
    hosted = Index.open(f"sqlite:///{tmp_path / 'hosted.sqlite'}")
    capped = provider(rate_429=0, rate_503=0, rate_drop=0)
    config = IndexerConfig(batch_blocks=300)
    indexer = Indexer(hosted, connect(capped.url), deployment, metadata, config)
    first = indexer.sync_once(max_batches=2)
    assert 0 < first.indexed_to < w3.eth.block_number
    # Restarted on another connection: it picks up after the last committed batch.
    again = Indexer(hosted, connect(capped.url), deployment, metadata, config).sync_once()
    assert again.indexed_to == w3.eth.block_number
    direct = Index.open(f"sqlite:///{tmp_path / 'direct.sqlite'}")
    Indexer(direct, w3, deployment, metadata).sync_once()
    assert dump(hosted.engine) == dump(direct.engine)


def test_market_logs_and_show_through_the_provider(
    anvil: AnvilSupervisor, w3: Web3, tmp_path: Path, provider: Callable[..., RpcProxy]
) -> None:
    deployment, _, models = _history(w3)
    proxy = provider()
    market = Market(Settings(data_dir=tmp_path, rpc_url=proxy.url), deployment=deployment)
    registry = MercatoContracts.connect(w3, deployment, None).registry.contract  # direct
    everything = registry.events.VersionAdded.get_logs(from_block=deployment.deploy_block)
    assert len(everything) == 2 * MODELS

    found = market.logs(market.contracts.registry, "VersionAdded")
    assert [(e["blockNumber"], e["logIndex"]) for e in found] == [
        (e["blockNumber"], e["logIndex"]) for e in everything
    ]
    assert [dict(e["args"]) for e in found] == [dict(e["args"]) for e in everything]
    one = market.logs(market.contracts.registry, "VersionAdded", model_id=models[5])
    assert [int(e["args"]["version"]) for e in one] == [1, 2]
    shown = market.models.show(models[-1])
    assert [v.version for v in shown.versions] == [1, 2]
    assert proxy.stats["range_refused"] and proxy.stats["429"]


def test_a_provider_that_keeps_refusing_ends_in_a_typed_error(
    anvil: AnvilSupervisor, provider: Callable[..., RpcProxy]
) -> None:
    always = provider(rate_429=1.0, max_streak=10**9)
    waits: list[float] = []
    policy = RetryPolicy(attempts=3, sleep=waits.append)
    fetcher = LogFetcher(connect(always.url, retry=policy), retry=policy)
    with pytest.raises(RpcRetryExhaustedError) as caught:
        fetcher.get({}, 0, 10)
    assert caught.value.attempts == 3 and "HTTP 429" in caught.value.detail
    assert always.stats["eth_getLogs"] == 3 and len(waits) == 2
    assert all(0 <= wait <= policy.max_delay for wait in waits)
    with pytest.raises(RpcRetryExhaustedError):
        connect(always.url, retry=policy).eth.block_number  # noqa: B018


def test_a_block_whose_logs_exceed_the_cap_is_a_typed_error(
    anvil: AnvilSupervisor, w3: Web3, provider: Callable[..., RpcProxy]
) -> None:
    deployment, _, _ = _history(w3)
    strict = provider(max_results=0, rate_429=0, rate_503=0, rate_drop=0)
    fetcher = LogFetcher(connect(strict.url), max_range=64)
    with pytest.raises(LogQueryError) as caught:
        fetcher.get(
            {"address": [deployment.model_registry]}, deployment.deploy_block, w3.eth.block_number
        )
    assert caught.value.from_block == caught.value.to_block  # split down to one block first
    assert "more than 0 results" in caught.value.detail


def test_the_range_shrinks_to_the_providers_cap_and_grows_back_when_it_lifts(
    anvil: AnvilSupervisor, w3: Web3, provider: Callable[..., RpcProxy]
) -> None:
    deployment, _, _ = _history(w3)
    capped = provider(max_results=10**6, rate_429=0, rate_503=0, rate_drop=0)
    fetcher = LogFetcher(connect(capped.url), max_range=800)
    query = {"address": [deployment.model_registry]}
    head = int(w3.eth.block_number)
    first = fetcher.get(query, 0, head)
    assert fetcher.span <= 100 and capped.stats["range_refused"]
    capped.limits.max_range = 10**6  # the provider lifts its cap (a plan upgrade)
    again = fetcher.get(query, 0, head)
    assert 100 < fetcher.span < 800  # doubled after each run of answered ranges
    fetcher.get(query, 0, head)
    assert fetcher.span == 800
    direct = w3.provider.make_request(
        RPCEndpoint("eth_getLogs"), [{**query, "fromBlock": "0x0", "toBlock": hex(head)}]
    )["result"]
    assert again == first == direct and len(first) >= 2 * MODELS


def test_a_transaction_whose_answer_was_lost_is_not_sent_as_a_failure(
    anvil: AnvilSupervisor, w3: Web3, provider: Callable[..., RpcProxy]
) -> None:
    lossy = provider(
        rate_429=0, rate_503=0, rate_drop=0,
        lose_answers_of=("eth_sendRawTransaction",), lose_answers=1,
    )  # fmt: skip
    sender, receiver = dev_accounts(2)
    before = w3.eth.get_balance(receiver.address)
    receipt = Web3Backend(connect(lossy.url), sender).send_ether(receiver.address, 12345)
    assert lossy.stats["lost"] == 1 and receipt["status"] == 1
    assert w3.eth.get_balance(receiver.address) == before + 12345  # sent once, not twice
