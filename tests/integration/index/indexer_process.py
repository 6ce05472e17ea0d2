# SPDX-License-Identifier: AGPL-3.0-only
"""Runs an indexer in its own process, so a test can kill it with SIGKILL mid-batch.

python -m tests.integration.index.indexer_process RPC_URL DB_URL DEPLOYMENT.json MANIFESTS.json
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from web3 import Web3

from mercato.chain.deployment import Deployment
from mercato.index import DictMetadataSource, Index, Indexer, IndexerConfig


def main(rpc_url: str, db_url: str, deployment_file: str, manifests_file: str) -> None:
    deployment = Deployment(**json.loads(Path(deployment_file).read_text()))
    manifests = {
        bytes.fromhex(k): v for k, v in json.loads(Path(manifests_file).read_text()).items()
    }
    index = Index.open(db_url)
    # One block per batch: many small transactions, so a kill lands between or inside them.
    config = IndexerConfig(batch_blocks=1, poll_interval=0.05)
    indexer = Indexer(
        index, Web3(Web3.HTTPProvider(rpc_url)), deployment, DictMetadataSource(manifests), config
    )
    indexer.run(threading.Event())


if __name__ == "__main__":
    main(*sys.argv[1:5])
