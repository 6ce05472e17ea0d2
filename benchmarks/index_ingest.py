# SPDX-License-Identifier: AGPL-3.0-only
"""Index ingestion speed from a local Anvil, and the lag from publish to searchable.

1. Starts Anvil, deploys Mercato, publishes `--models` models (each with a manifest in
   an in-memory metadata source), then emits evaluation events in bulk through a small
   helper contract compiled here with Vyper (a development dependency): one transaction
   calls `reviews.attest` thousands of times, so 100,000 events take seconds to make
   instead of an hour of one-transaction-per-event.
2. Builds a fresh SQLite index (and a PostgreSQL one with --postgres-url) from the
   chain and prints events/s. Goal: >= 10,000 events/s.
3. Runs the indexer in a thread, publishes models one at a time and measures the time
   from sending the transaction to the model appearing in search. Goal: <= 1 s.

Usage: python benchmarks/index_ingest.py [--events 100000] [--models 200] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import threading
import time
from pathlib import Path

import vyper
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.contracts import MercatoContracts, VersionDigests
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.index import DictMetadataSource, Index, Indexer, IndexerConfig, SearchQuery

ATTESTER = """
#pragma version 0.4.3
interface IReviews:
    def attest(
        model_id: uint256, version: uint256, dataset: bytes32, metric: bytes32, score: int256
    ): nonpayable

@external
def attest_many(reviews: address, model_id: uint256, count: uint256):
    for i: uint256 in range(count, bound=10_000):
        extcall IReviews(reviews).attest(model_id, 1, keccak256(convert(i, bytes32)), \
            0x6163637572616379000000000000000000000000000000000000000000000000, convert(i, int256))
"""
PER_TX = 2_500


def _digests(name: str) -> VersionDigests:
    return VersionDigests(*(hashlib.sha256(f"{k}/{name}".encode()).digest() for k in "apm"))


def _manifest(name: str, i: int) -> dict[str, object]:
    tags = ["vision", "nlp", "audio", "tabular"]
    card = {"license": "MIT", "tags": [tags[i % 4]], "pipeline_tag": "image-classification"}
    return {"manifest_version": 1, "name": name, "card": card}


def _publish(client: MercatoContracts, source: DictMetadataSource, name: str, i: int) -> int:
    digests = _digests(name)
    source.add(digests.manifest_cid_digest, _manifest(name, i))
    return client.marketplace.publish(digests, i % 3 * 10**18)


def _populate(
    w3: Web3, deployment: Deployment, source: DictMetadataSource, args: argparse.Namespace
) -> None:
    creator = dev_accounts(2)[1]
    client = MercatoContracts.connect(w3, deployment, Web3Backend(w3, creator))
    for i in range(args.models):
        _publish(client, source, f"bench-model-{i}", i)
    compiled = vyper.compile_code(ATTESTER, output_formats=["abi", "bytecode"])
    backend = Web3Backend(w3, creator)
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    receipt = backend.send(factory.constructor().build_transaction({"from": creator.address}))
    attester = w3.eth.contract(address=receipt["contractAddress"], abi=compiled["abi"])
    remaining = args.events - args.models * 3  # a publish emits Transfer, VersionAdded, Listed
    while remaining > 0:
        count = min(PER_TX, remaining)
        tx = attester.functions.attest_many(deployment.reviews, 1, count).build_transaction(
            {"from": creator.address, "gas": 29_000_000}
        )
        backend.send(tx)
        remaining -= count


def _ingest(url: str, w3: Web3, deployment: Deployment, source: DictMetadataSource) -> Index:
    index = Index.open(url)
    indexer = Indexer(index, w3, deployment, source, IndexerConfig())
    started = time.perf_counter()
    report = indexer.sync_once()
    elapsed = time.perf_counter() - started
    rate = report.events / elapsed
    print(
        f"  {url.split(':')[0]:<22} {report.events:>8} events in {elapsed:6.2f} s = "
        f"{rate:>8.0f} events/s "
        f"({rate / 10_000:.2f}x the 10,000 events/s goal)"
    )
    return index


def _lag(
    index: Index, w3: Web3, deployment: Deployment, source: DictMetadataSource, rounds: int
) -> None:
    stop = threading.Event()
    indexer = Indexer(index, w3, deployment, source, IndexerConfig(poll_interval=0.05))
    thread = threading.Thread(target=indexer.run, args=(stop,), daemon=True)
    thread.start()
    client = MercatoContracts.connect(w3, deployment, Web3Backend(w3, dev_accounts(3)[2]))
    lags = []
    try:
        for i in range(rounds):
            name = f"lag-probe-{i}"
            started = time.perf_counter()
            _publish(client, source, name, i)
            while not index.search(SearchQuery(text=name)).items:
                time.sleep(0.005)
            lags.append(time.perf_counter() - started)
    finally:
        stop.set()
        thread.join()
    print(
        f"  publish -> searchable: median {statistics.median(lags) * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms over {rounds} publishes (goal <= 1000 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--lag-rounds", type=int, default=10)
    parser.add_argument("--postgres-url", help="also ingest into this (empty) PostgreSQL database")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        AnvilSupervisor(Path(tmp) / "node", port=free_port()) as anvil,
    ):
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 120}))
        deployment = deploy(
            Web3Backend(w3, dev_accounts(1)[0]), fund=[a.address for a in dev_accounts(4)]
        )
        source = DictMetadataSource()
        started = time.perf_counter()
        _populate(w3, deployment, source, args)
        print(
            f"generated ~{args.events} events in {time.perf_counter() - started:.1f} s "
            f"(head block {w3.eth.block_number})"
        )
        print("ingest (fresh index, from the deploy block to the head):")
        index = _ingest(f"sqlite:///{Path(tmp) / 'index.sqlite'}", w3, deployment, source)
        if args.postgres_url:
            _ingest(args.postgres_url, w3, deployment, source).close()
        _lag(index, w3, deployment, source, args.lag_rounds)
        index.close()


if __name__ == "__main__":
    main()
