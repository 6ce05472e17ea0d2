# SPDX-License-Identifier: AGPL-3.0-only
"""The try route on a real node (Anvil, index, ONNX Runtime, uvicorn): matched before
every other route without shadowing one, and still behind moderation, whose verdicts
the gateway keeps between requests (`mercato.gateway.moderation.ModelVerdicts`)."""

from __future__ import annotations

import json

import httpx
from starlette.routing import Match

from mercato.client.provider import ProviderService
from mercato.gateway.app import create_app
from mercato.models.runtime import TryPool
from mercato.moderation.lists import NodeDenylists
from mercato.node import Node

IRIS_REQUEST = json.dumps(
    {"inputs": {"X": {"dtype": "float32", "data": [[5.1, 3.5, 1.4, 0.2]]}}}
).encode()
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def test_the_try_route_comes_first_and_shadows_no_other_route(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    node, _base, _ids = demo_node
    assert node.market is not None
    app = create_app(node.market, ProviderService(node.market, TryPool(workers=1)))
    routes = app.router.routes
    path = "/v1/models/7/try"
    full = [
        i
        for i, route in enumerate(routes)
        if route.matches({"type": "http", "path": path, "method": "POST", "root_path": ""})[0]
        == Match.FULL
    ]
    assert len(full) == 1
    # Before every route but FastAPI's own documentation pages.
    assert all(
        getattr(route, "path", "").startswith(("/docs", "/redoc", "/openapi"))
        for route in routes[: full[0]]
    )
    # No other route answers any method on the try path: moving it first changed nothing.
    for i, route in enumerate(routes):
        if i == full[0]:
            continue
        for method in METHODS:
            scope = {"type": "http", "path": path, "method": method, "root_path": ""}
            assert route.matches(scope)[0] == Match.NONE, (route, method)


def test_a_denied_model_is_refused_on_try_from_the_next_call_and_served_after_allow(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    node, base, ids = demo_node
    iris = ids[0]
    url = f"{base}/v1/models/{iris}/try"
    headers = {"Content-Type": "application/json"}
    lists = NodeDenylists(node.settings.data_dir)  # the files the node's gateway reads
    with httpx.Client(timeout=30) as client:
        for _ in range(3):  # the verdict is kept after the first
            assert client.post(url, content=IRIS_REQUEST, headers=headers).status_code == 200
        lists.deny(str(iris), "takedown notice")
        try:
            refused = client.post(url, content=IRIS_REQUEST, headers=headers)
            assert refused.status_code == 410
            assert refused.json()["error"] == "denied"
            assert "takedown notice" in refused.json()["message"]
        finally:
            lists.allow(str(iris))
        served = client.post(url, content=IRIS_REQUEST, headers=headers)
        assert served.status_code == 200, served.text
        assert json.loads(served.content)["outputs"]["label"]["data"] == [0]
