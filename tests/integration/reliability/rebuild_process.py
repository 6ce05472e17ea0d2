# SPDX-License-Identifier: AGPL-3.0-only
"""Runs `rebuild_index` in its own process and SIGKILLs it in the middle of ingestion.

python -m tests.integration.reliability.rebuild_process RPC_URL DB_URL DEPLOYMENT.json

The metadata source kills the process the first time the scratch index asks it for a
manifest: the scratch index then holds part of the chain, and the swap never happened.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from web3 import Web3

from mercato.chain.deployment import Deployment
from mercato.index import Index
from mercato.index.rebuild import rebuild_index


class KillOnFirstManifest:
    def manifest(self, digest: bytes) -> Mapping[str, Any] | None:
        os.kill(os.getpid(), signal.SIGKILL)
        return None


def main(rpc_url: str, db_url: str, deployment_file: str) -> None:
    deployment = Deployment(**json.loads(Path(deployment_file).read_text()))
    index = Index.open(db_url)
    rebuild_index(index, Web3(Web3.HTTPProvider(rpc_url)), deployment, KillOnFirstManifest())


if __name__ == "__main__":
    main(*sys.argv[1:4])
