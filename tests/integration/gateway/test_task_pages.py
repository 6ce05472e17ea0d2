# SPDX-License-Identifier: AGPL-3.0-only
"""The demo node's federated tasks through the API and the web pages: a real node
(Anvil, gateway, agent, index) seeded by `seed_demo` and `seed_demo_federation`, which
trains the finished task for real in the node's process (see `mercato.demo_federation`)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import onnx
import pytest

from mercato.chain.anvil import free_port
from mercato.chain.session import demo_accounts
from mercato.config import Settings
from mercato.node import Node, seed_demo, seed_demo_federation
from tests.integration.gateway.conftest import wait_indexed

pytestmark = pytest.mark.integration
TOKEN = 10**18


@pytest.fixture(scope="module")
def federated_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str]]:
    """A started demo node with the demo models and tasks; yields (node, gateway URL)."""
    port = free_port()
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("node"), anvil_port=free_port(), gateway_port=port
    )
    sellers = demo_accounts()[:2]
    node = Node(settings, accounts=sellers)
    node.start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_indexed(base, seed_demo(node, sellers))
        seed_demo_federation(node, sellers)
        yield node, base
    finally:
        node.stop()


def _tasks(base: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        items: list[dict[str, Any]] = httpx.get(f"{base}/v1/tasks").json()["items"]
        done = [t for t in items if t["status"] == "finalized"]
        joined = [t for t in items if t["status"] == "open" and t["participants"] == 1]
        # The open task's join is a later block than its creation: wait for it too.
        if (
            len(items) == 2
            and done
            and joined
            and httpx.get(f"{base}/v1/tasks/{done[0]['task_id']}").json()["result_model_id"]
        ):
            return items
        assert time.monotonic() < deadline, f"the demo tasks never reached the index: {items}"
        time.sleep(0.2)


def test_demo_seeds_a_finished_and_an_open_task(federated_node: tuple[Node, str]) -> None:
    node, base = federated_node
    by_name = {t["name"]: t for t in _tasks(base)}
    finished = httpx.get(f"{base}/v1/tasks/{by_name['digits-federated']['task_id']}").json()
    assert finished["status"] == "finalized" and finished["reward"] == str(60 * TOKEN)
    assert [p["seat"] for p in finished["participant_list"]] == [0, 1, 2, 3]
    assert sum(p["share_bps"] for p in finished["participant_list"]) == 10_000
    metrics = [r["metric"] for r in finished["round_list"]]
    assert len(metrics) == 3 and all(0.5 < m <= 1 for m in metrics)  # measured, not made up
    claimed = [int(p["claimed"]) > 0 for p in finished["participant_list"]]
    assert claimed == [True, True, False, False]
    model = httpx.get(f"{base}/v1/models/{finished['result_model_id']}").json()
    assert model["owner"] == finished["splitter"] and model["price"] == str(2 * TOKEN)
    # The node's agent delivers the result's keys: the splitter named its coordinator.
    assert node.market is not None
    assert (
        node.market.contracts.marketplace.agent_of(finished["splitter"]) == finished["coordinator"]
    )

    opened = httpx.get(f"{base}/v1/tasks/{by_name['iris-more-flowers']['task_id']}").json()
    assert opened["status"] == "open" and opened["participants"] == 1
    assert opened["join_command"].startswith(f"mercato fl join {opened['task_id']} --data")
    assert opened["spec"]["input"]["feature_names"][0] == "sepal_length"

    page = httpx.get(f"{base}/tasks/{finished['task_id']}").text
    assert page.count("<circle") == 3 and f'href="/models/{finished["result_model_id"]}"' in page
    # Each round's model is shown by a CID the node serves, whose bytes are the ONNX model
    # whose sha256 the chain committed for that round.
    shown = re.findall(r'<code title="(b[a-z2-7]+)">', page)
    digests = {r["model_digest"] for r in finished["round_list"]}
    assert len(shown) == 3
    for cid in shown:
        served = httpx.get(f"{base}/ipfs/{cid}")
        assert served.status_code == 200
        assert hashlib.sha256(served.content).hexdigest() in digests
        assert onnx.load_model_from_string(served.content).graph.node
    assert "mercato fl join" in httpx.get(f"{base}/tasks/{opened['task_id']}").text
    listing = httpx.get(f"{base}/tasks").text
    assert "digits-federated" in listing and "iris-more-flowers" in listing
