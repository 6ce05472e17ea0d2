# SPDX-License-Identifier: AGPL-3.0-only
"""Error answers: typed JSON for every failure, and nothing of a bug's internals."""

from __future__ import annotations

import json
import sys

import httpx
import pytest
from fastapi import FastAPI

from mercato.gateway.app import RECURSION_LIMIT, restore_recursion_limit
from mercato.gateway.errors import install_error_handlers
from tests.event_loop import run as run_to_completion


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/deep")
    def deep() -> None:
        raise RecursionError("maximum recursion depth exceeded")

    @app.get("/bug")
    def bug() -> None:
        raise KeyError("/secret/path/in/the/node")

    return app


def _get(path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.get(path)

    return run_to_completion(call())


def test_a_recursion_error_is_a_typed_400() -> None:
    answer = _get("/deep")
    assert (answer.status_code, answer.json()["error"]) == (400, "request_too_deep")


def test_a_bug_answers_500_without_its_internals() -> None:
    answer = _get("/bug")
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal_error"
    assert "secret" not in answer.text and "Traceback" not in answer.text


def test_the_recursion_limit_py_ecc_raises_is_restored() -> None:
    import py_ecc  # noqa: F401 - imported by eth-account; raises the limit at import

    before = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(100_000)  # what py_ecc sets (it ran when first imported)
        restore_recursion_limit()
        assert sys.getrecursionlimit() == RECURSION_LIMIT
        # Deep JSON now raises RecursionError instead of overflowing the C stack.
        with pytest.raises(RecursionError):
            json.loads("[" * 100_000)
    finally:
        sys.setrecursionlimit(before)
