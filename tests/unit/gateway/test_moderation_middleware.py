# SPDX-License-Identifier: AGPL-3.0-only
"""Denied models and CIDs answer 410 before any route runs; everything else passes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from multiformats import CID
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mercato.gateway.moderation import ModerationMiddleware, subject_of
from mercato.moderation.lists import NodeDenylists
from mercato.moderation.policy import ModerationPolicy
from tests.event_loop import run

ARTIFACT = CID("base58btc", 0, "dag-pb", ("sha2-256", hashlib.sha256(b"artifact").digest()))
OTHER = CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(b"other").digest()))


def _served(_request: object) -> PlainTextResponse:
    return PlainTextResponse("served")


@pytest.fixture
def lists(tmp_path: Path) -> NodeDenylists:
    return NodeDenylists(tmp_path)


def _get(lists: NodeDenylists, path: str) -> httpx.Response:
    policy = ModerationPolicy(lists, models_naming=lambda cid: [5] if cid == ARTIFACT else [])
    app = Starlette(routes=[Route("/{path:path}", _served)])
    wrapped = ModerationMiddleware(app, policy)

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.get(path)

    return run(fetch())


@pytest.mark.parametrize(
    ("path", "subject"),
    [
        ("/v1/models/5", 5),
        ("/v1/models/5/versions/1", 5),
        ("/v1/models/5/try", 5),
        ("/models/5", 5),
        ("/models/5/try", 5),
        (f"/ipfs/{ARTIFACT}", ARTIFACT),
        (f"/v1/artifacts/{ARTIFACT}", ARTIFACT),
        ("/v1/models/5/reports", None),
        ("/v1/models", None),
        ("/ipfs/not-a-cid", None),
        ("/creators/0xabc", None),
    ],
)
def test_subject_of_each_route(path: str, subject: object) -> None:
    assert subject_of(path) == subject


def test_denied_model_answers_410_with_the_reason_on_api_page_and_bytes(
    lists: NodeDenylists,
) -> None:
    lists.deny("5", "licence violation")
    for path in ("/v1/models/5", "/v1/models/5/try", f"/ipfs/{ARTIFACT}?format=car"):
        answer = _get(lists, path)
        assert answer.status_code == 410, path
        assert answer.json()["error"] == "denied"
        assert "licence violation" in answer.json()["message"]
    page = _get(lists, "/models/5")
    assert page.status_code == 410
    assert "licence violation" in page.text and page.headers["content-type"].startswith("text/html")
    assert _get(lists, "/v1/models/6").text == "served"
    assert _get(lists, f"/ipfs/{OTHER}").text == "served"
    assert _get(lists, "/v1/models/5/reports").text == "served"


def test_reason_from_a_list_is_escaped_on_the_page(lists: NodeDenylists) -> None:
    lists.deny("5", "<script>alert(1)</script>")
    page = _get(lists, "/models/5")
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_an_unreadable_list_refuses_models_but_not_other_routes(lists: NodeDenylists) -> None:
    lists.deny("5")
    lists.local_path.write_text("version: 7\n---\n")  # an operator's broken edit
    refused = _get(lists, "/v1/models/6")
    assert refused.status_code == 503
    assert refused.json()["error"] == "denylist_format"
    assert _get(lists, "/creators/0xabc").text == "served"
