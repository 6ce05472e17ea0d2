# SPDX-License-Identifier: AGPL-3.0-only
"""Try calls judged once per block on a real node (Anvil, ONNX Runtime, uvicorn): a
call at a block already seen makes no RPC round trip, and a model whose owner changed
is refused from the first call after the node looks for the next block.

RPC round trips are counted by a web3 middleware on the provider's own connection:
nothing is answered for the chain, the requests still go to Anvil.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3
from web3.middleware import Web3Middleware
from web3.types import RPCEndpoint

from mercato.chain.session import demo_accounts
from mercato.client import Market
from mercato.client.chain_cache import HEAD_MAX_AGE
from mercato.client.provider import ProviderService
from mercato.errors import ContentKeyNotBoundError
from mercato.models.runtime import TryPool
from mercato.models.samples import build_samples
from mercato.node import Node
from tests.event_loop import run as run_to_completion

IRIS_REQUEST = json.dumps(
    {"inputs": {"X": {"dtype": "float32", "data": [[5.1, 3.5, 1.4, 0.2]]}}}
).encode()
# The demo models (mercato.node.DEMO_MODELS): 1 iris-logreg by the first creator,
# 4 iris-logreg-tuned by the second; both paid, both served with their owner's key.
IRIS, IRIS_TUNED = 1, 4
STRANGER = demo_accounts()[5]


def counted(market: Market) -> list[str]:
    """The JSON-RPC methods `market` sends from now on, in order."""
    methods: list[str] = []

    class Counting(Web3Middleware):
        def wrap_make_request(self, make_request: Callable[..., Any]) -> Callable[..., Any]:
            def count(method: RPCEndpoint, params: Any) -> Any:
                methods.append(str(method))
                return make_request(method, params)

            return count

    market.w3.middleware_onion.add(Counting, name="count")
    return methods


def provider_market(node: Node) -> Market:
    """A market of its own on the node's data directory (so its RPCs can be counted)."""
    assert node.market is not None
    return Market(node.market.settings, deployment=node.market.deployment)


def test_a_try_call_at_a_block_already_seen_makes_no_rpc_round_trip(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    node, _base, _ids = demo_node
    market = provider_market(node)
    creators = [a.address for a in demo_accounts()[:2]]
    # A head that stays fresh for the whole test: what is counted is what the cache
    # saves, whatever the machine's speed.
    service = ProviderService(market, TryPool(workers=1), accounts=creators, head_max_age=3600)
    rpcs = counted(market)

    async def two_tries() -> tuple[bytes, bytes, list[str]]:
        await service.start_pool()
        try:
            first = await service.try_json_async(IRIS_TUNED, IRIS_REQUEST)
            before = list(rpcs)
            second = await service.try_json_async(IRIS_TUNED, IRIS_REQUEST)
            return first, second, before
        finally:
            await service.close_pool()

    first, second, after_first = run_to_completion(two_tries())

    assert "eth_call" in after_first  # the first call read owner and version
    assert rpcs == after_first  # the second one read nothing
    assert json.loads(first)["outputs"] == json.loads(second)["outputs"]
    assert json.loads(second)["outputs"]["label"]["data"] == [0]


def test_a_refused_model_is_refused_again_without_asking_the_chain(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    node, _base, _ids = demo_node
    market = provider_market(node)
    # A node selling only for the second creator: the first creator's iris is not its own.
    service = ProviderService(
        market, TryPool(workers=1), accounts=[demo_accounts()[1].address], head_max_age=3600
    )
    rpcs = counted(market)
    with pytest.raises(ContentKeyNotBoundError):
        service.package_for(IRIS)
    seen = len(rpcs)
    for _ in range(3):
        with pytest.raises(ContentKeyNotBoundError) as refused:
            service.package_for(IRIS)
    assert (refused.value.model_id, refused.value.owner) == (IRIS, demo_accounts()[0].address)
    assert seen > 0 and len(rpcs) == seen


def test_a_transferred_model_is_refused_from_the_first_try_after_the_next_block(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    node, base, _ids = demo_node
    owner = demo_accounts()[0]
    url = f"{base}/v1/models/{IRIS}/try"
    headers = {"Content-Type": "application/json"}
    for _ in range(2):  # the second one from what the node read for the first
        answer = httpx.post(url, content=IRIS_REQUEST, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text

    seller = node.account_market(owner)
    seller.contracts.registry.transfer_from(owner.address, STRANGER.address, IRIS)
    assert seller.contracts.registry.owner_of(IRIS) == STRANGER.address
    w3: Web3 = seller.w3
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    # The node looks for a new block at most this far apart: the next call must see it.
    time.sleep(HEAD_MAX_AGE)

    refused = httpx.post(url, content=IRIS_REQUEST, headers=headers, timeout=30)
    assert refused.status_code == 404
    assert refused.json()["error"] == "content_key_not_bound"
    assert STRANGER.address in refused.json()["message"]


def test_a_new_version_and_an_agent_change_are_seen_at_the_next_block(
    demo_node: tuple[Node, str, list[int]], tmp_path: Path
) -> None:
    node, _base, _ids = demo_node
    assert node.market is not None
    creator, node_account = demo_accounts()[6], demo_accounts()[0]
    # The creator stores through the node's data directory and names the node's account.
    market = Market(node.market.settings, account=creator, deployment=node.market.deployment)
    samples = build_samples(tmp_path / "samples", names=["iris-logreg", "iris-logreg-tuned"])
    model = int(market.models.publish(samples["iris-logreg"].root, price=10**18).model_id)
    market.contracts.marketplace.set_agent(node_account.address)
    # The head is read on every call here, so each call sees the block the transaction
    # before it made; what is read for the model is still kept for that block.
    service = ProviderService(
        provider_market(node), TryPool(workers=1), accounts=[node_account.address], head_max_age=0
    )

    assert service.package_for(model).root.name == f"1-{creator.address}"
    market.models.add_version(model, samples["iris-logreg-tuned"].root)
    assert service.package_for(model).root.name == f"2-{creator.address}"
    market.contracts.marketplace.set_agent(STRANGER.address)
    with pytest.raises(ContentKeyNotBoundError) as refused:
        service.package_for(model)
    assert (refused.value.model_id, refused.value.version) == (model, 2)
