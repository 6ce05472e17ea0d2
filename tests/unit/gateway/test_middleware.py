# SPDX-License-Identifier: AGPL-3.0-only
"""Request bodies are bounded and shape-checked before any route reads them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.errors import RequestTooDeepError, RequestTooManyValuesError
from mercato.gateway.middleware import (
    MAX_JSON_DEPTH,
    BodyLimitMiddleware,
    BodyRule,
    JsonShapeScanner,
    default_rules,
)
from tests.event_loop import run as run_to_completion

# --- the scanner ------------------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _deepest(data: bytes, chunks: list[int]) -> int:
    """The smallest max_depth the scanner accepts `data` under, fed in pieces."""
    low, high = 0, 64
    while low < high:
        middle = (low + high) // 2
        scanner = JsonShapeScanner(max_depth=middle)
        try:
            start = 0
            for size in [*chunks, len(data)]:
                scanner.feed(data[start : start + size])
                start += size
        except RequestTooDeepError:
            low = middle + 1
        else:
            high = middle
    return low


# Strings full of what a naive scanner would miscount: brackets, quotes, backslashes.
_TRICKY_TEXT = st.text(alphabet='[]{}"\\,ab\u00e9', max_size=12)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TRICKY_TEXT, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, chunks=st.lists(st.integers(min_value=0, max_value=7), max_size=30))
def test_scanner_depth_is_the_parsed_depth_however_the_bytes_are_split(
    value: Any, chunks: list[int]
) -> None:
    data = json.dumps(value, ensure_ascii=False).encode()
    assert _deepest(data, chunks) == _depth(value)


def test_escaped_quote_split_across_chunks_does_not_end_the_string() -> None:
    data = b'["a\\\\\\"[[[[", [1]]'  # the string holds \\ then \" then four brackets
    assert json.loads(data)[1] == [1]
    scanner = JsonShapeScanner(max_depth=2)
    for i in range(len(data)):
        scanner.feed(data[i : i + 1])
    assert scanner.depth == 0


def test_nesting_past_the_limit_is_refused_without_parsing() -> None:
    scanner = JsonShapeScanner()
    with pytest.raises(RequestTooDeepError) as caught:
        scanner.feed(b"[" * (MAX_JSON_DEPTH + 1))
    assert caught.value.code == "request_too_deep" and caught.value.max_depth == MAX_JSON_DEPTH


def test_values_past_the_limit_are_refused() -> None:
    scanner = JsonShapeScanner(max_values=10)
    scanner.feed(b'{"a": [1, 2, 3], "b": "x,y,z,,,,,,,,,"}')  # commas in strings do not count
    with pytest.raises(RequestTooManyValuesError) as caught:
        scanner.feed(b"[" + b"0," * 10 + b"0]")
    assert caught.value.max_values == 10


def _verdict(data: bytes, chunks: list[int], max_depth: int, max_values: int, last: bool) -> str:
    """What the scanner says of `data` fed in pieces, the final one marked `last`."""
    scanner = JsonShapeScanner(max_depth=max_depth, max_values=max_values)
    pieces, start = [], 0
    for size in chunks:
        pieces.append(data[start : start + size])
        start += size
    pieces.append(data[start:])
    try:
        for i, piece in enumerate(pieces):
            scanner.feed(piece, last=last and i == len(pieces) - 1)
    except RequestTooDeepError:
        return "deep"
    except RequestTooManyValuesError:
        return "many"
    return "ok"


@settings(max_examples=300, deadline=None)
@given(
    value=_JSON,
    chunks=st.lists(st.integers(min_value=0, max_value=7), max_size=5),
    max_depth=st.integers(min_value=0, max_value=6),
    max_values=st.integers(min_value=0, max_value=40),
)
def test_a_last_piece_skipped_by_its_byte_counts_gets_the_full_scans_verdict(
    value: Any, chunks: list[int], max_depth: int, max_values: int
) -> None:
    # The shortcut for the final piece (a try call's whole body, usually) only skips a
    # scan whose outcome cannot be a refusal: the verdicts never differ.
    data = json.dumps(value, ensure_ascii=False).encode()
    full = _verdict(data, chunks, max_depth, max_values, last=False)
    assert _verdict(data, chunks, max_depth, max_values, last=True) == full


def test_a_small_last_piece_is_not_followed_but_a_deep_one_is() -> None:
    small = JsonShapeScanner(max_values=None)
    small.feed(b'{"inputs": {"X": [[5.1, "]["]]}}', last=True)
    assert small.values == 0  # not followed: its 5 brackets cannot pass 100 levels
    with pytest.raises(RequestTooDeepError):
        JsonShapeScanner().feed(b"[" * (MAX_JSON_DEPTH + 1), last=True)
    with pytest.raises(RequestTooManyValuesError):
        JsonShapeScanner(max_values=10).feed(b"[" + b"0," * 10 + b"0]", last=True)


# --- the middleware ---------------------------------------------------------------------


class _Client:
    """Drives one ASGI request by hand and records how many body bytes were taken."""

    def __init__(self, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
        self.chunks = chunks
        self.headers = headers
        self.taken = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self.chunks:
            return {"type": "http.disconnect"}
        chunk = self.chunks.pop(0)
        self.taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def run(self, middleware: BodyLimitMiddleware, path: str) -> tuple[int, dict[str, Any]]:
        scope = {"type": "http", "method": "POST", "path": path, "headers": self.headers}
        run_to_completion(middleware(scope, self.receive, self.send))  # type: ignore[arg-type]
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        return start["status"], json.loads(body)


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    """A route that reads the whole body and answers with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps({"size": size}).encode()})


def _middleware(limit: int = 1000) -> BodyLimitMiddleware:
    return BodyLimitMiddleware(_echo, lambda _method, _path: BodyRule(limit))


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    client = _Client([b"x" * 2000], [(b"content-length", b"2000")])
    status, body = client.run(_middleware(), "/v1/auth/nonce")
    assert (status, body["error"]) == (413, "request_too_large")
    assert client.taken == 0


def test_a_streamed_body_is_refused_once_past_the_limit() -> None:
    # Chunked: no Content-Length; 100 chunks of 100 bytes would be 10,000 bytes.
    client = _Client([b" " * 100 for _ in range(100)], [])
    status, body = client.run(_middleware(), "/v1/auth/nonce")
    assert (status, body["error"]) == (413, "request_too_large")
    assert client.taken == 1100  # stopped at the first chunk past 1,000 bytes
    start = next(m for m in client.sent if m["type"] == "http.response.start")
    assert (b"connection", b"close") in start["headers"]


def test_a_deep_body_is_refused_before_the_route() -> None:
    client = _Client([b"[" * 50_000, b"]" * 50_000], [])
    status, body = client.run(_middleware(limit=1_000_000), "/v1/auth/nonce")
    assert (status, body["error"]) == (400, "request_too_deep")


def test_a_body_within_the_rule_reaches_the_route_whole() -> None:
    client = _Client([b'{"a": ', b"[1, 2]}"], [])
    status, body = client.run(_middleware(), "/v1/auth/nonce")
    assert (status, body) == (200, {"size": 13})


def test_routes_get_their_own_limits() -> None:
    rule_for = default_rules(try_bytes=5_000_000, upload_bytes=7_000_000)
    assert rule_for("POST", "/v1/models/4/try").max_bytes == 5_000_000
    assert rule_for("POST", "/v1/models/4/try").max_values is None
    assert rule_for("POST", "/v1/uploads").max_bytes == 7_000_000
    assert rule_for("POST", "/v1/auth/verify").max_bytes == 64 * 1024
    assert not rule_for("POST", "/models/4/try").json  # the web form is not JSON


def test_bodies_held_at_once_stay_under_the_budget() -> None:
    release = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await release.wait()  # holds its body, as an upload being stored does
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = BodyLimitMiddleware(slow, lambda _m, _p: BodyRule(1000), max_buffered=1500)

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        first, second, third = (_Client([b" " * 800], []) for _ in range(3))
        scope = {"type": "http", "method": "POST", "path": "/v1/uploads", "headers": []}
        held = asyncio.create_task(middleware(scope, first.receive, first.send))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the first request now holds 800 of the 1,500 bytes
        await middleware(scope, second.receive, second.send)  # type: ignore[arg-type]
        release.set()
        await held
        await middleware(scope, third.receive, third.send)  # type: ignore[arg-type]
        return [_answer(c) for c in (first, second, third)]

    first, second, third = run_to_completion(scenario())
    assert first[0] == 200 and third[0] == 200  # the budget is given back
    assert (second[0], second[1]["error"]) == (503, "gateway_busy")
    assert middleware.buffered == 0


def _answer(client: _Client) -> tuple[int, dict[str, Any]]:
    start = next(m for m in client.sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in client.sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


def test_a_body_that_stops_arriving_is_refused() -> None:
    async def trickle() -> dict[str, Any]:
        if not hasattr(trickle, "sent"):
            trickle.sent = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"[", "more_body": True}
        await asyncio.Event().wait()  # a slow-loris client: the rest never comes
        raise AssertionError("unreachable")

    client = _Client([], [])
    middleware = BodyLimitMiddleware(
        _echo, lambda _m, _p: BodyRule(1000), idle_timeout=0.01, total_timeout=0.02
    )
    scope = {"type": "http", "method": "POST", "path": "/v1/auth/nonce", "headers": []}
    run_to_completion(middleware(scope, trickle, client.send))  # type: ignore[arg-type]
    status, body = _answer(client)
    assert (status, body["error"]) == (408, "request_timeout")
    assert middleware.buffered == 0
