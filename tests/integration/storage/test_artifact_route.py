# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/artifacts/{cid}` on a real node: the URL it fetches from is never taken from the
request, and it fetches nothing that no model version names."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from mercato.node import Node
from mercato.storage.cids import parse_cid
from tests.integration.gateway.conftest import demo_node  # noqa: F401 - a fixture

from .helpers import serve

pytestmark = pytest.mark.integration

NAMED_BY_NO_VERSION = "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB"


def test_the_artifact_route_never_fetches_from_a_url_in_the_request(
    demo_node: tuple[Node, str, list[int]],  # noqa: F811 - the imported fixture
) -> None:
    node, base, ids = demo_node
    market = node.market
    assert market is not None
    hits: list[str] = []
    app = FastAPI()

    @app.get("/{path:path}")
    def anything(path: str, request: Request) -> Response:
        hits.append(request.url.path)
        return Response(b"attacker's bytes")

    with serve(app) as hostile:
        for cid in (
            NAMED_BY_NO_VERSION,
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        ):
            answer = httpx.get(f"{base}/v1/artifacts/{cid}", params={"provider": hostile})
            assert answer.status_code == 404
            assert answer.json()["error"] == "block_not_found"
        # A version's artifact is served from the node's own store, whatever is asked.
        artifact = market.models.version(ids[0]).artifact_cid
        served = httpx.get(f"{base}/v1/artifacts/{artifact}", params={"provider": hostile})
        assert served.status_code == 200
    assert hits == []
    assert not market.store.is_pinned(parse_cid(NAMED_BY_NO_VERSION))
