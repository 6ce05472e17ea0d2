# SPDX-License-Identifier: AGPL-3.0-only
"""A real node (Anvil, gateway, agent, index) with the demo models, shared by the module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mercato.chain.anvil import free_port
from mercato.chain.session import demo_accounts
from mercato.config import Settings
from mercato.node import Node, seed_demo


def wait_indexed(base: str, model_ids: list[int], timeout: float = 30.0) -> None:
    """Waits until the gateway's index shows every model in `model_ids`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(httpx.get(f"{base}/v1/models/{m}").status_code == 200 for m in model_ids):
            return
        time.sleep(0.2)
    raise TimeoutError(f"models {model_ids} did not reach the index in {timeout} s")


@pytest.fixture(scope="module")
def demo_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str, list[int]]]:
    """A started node with the demo models indexed; yields (node, gateway URL, model ids)."""
    data_dir: Path = tmp_path_factory.mktemp("node")
    port = free_port()
    settings = Settings(
        data_dir=data_dir, anvil_port=free_port(), gateway_port=port, try_per_minute=1000
    )
    node = Node(settings, accounts=demo_accounts()[:2])
    node.start()
    try:
        ids = seed_demo(node, demo_accounts()[:2])
        base = f"http://127.0.0.1:{port}"
        wait_indexed(base, ids)
        yield node, base, ids
    finally:
        node.stop()
