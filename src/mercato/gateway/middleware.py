# SPDX-License-Identifier: AGPL-3.0-only
"""Request bodies are bounded before any route reads them.

`BodyLimitMiddleware` sits outside every route. It refuses a body over its route's
byte limit from the `Content-Length` header alone, or, when the body is streamed
without one (chunked), as soon as the bytes received pass the limit; a refused body is
never read to its end. On the JSON API (`/v1/...`) it also refuses, before any parser
sees them, bodies nested deeper than `MAX_JSON_DEPTH` or holding more values than
their route can use: Python's JSON parser recurses once per nesting level, and a
parsed value costs tens of times its bytes in memory. Answers are the gateway's
JSON errors: 413 `request_too_large`, 400 `request_too_deep` or `request_too_many_values`.

Bodies held at once, by all requests together, stay under `MAX_BUFFERED` bytes, so
many large uploads sent at the same time cannot exhaust the node's memory either: a
request that would pass it gets 503 `gateway_busy` with `Retry-After`. A body must
keep arriving (`BODY_IDLE_TIMEOUT` between pieces) and be complete within
`BODY_TIMEOUT`, or it gets 408 `request_timeout`: a client trickling bytes cannot hold
a connection and its share of the budget for ever.

`SecurityHeadersMiddleware` adds the headers that keep browsers from framing the
node's pages (clickjacking a buy button), sniffing types or leaking URLs in Referer.

A body that passes is handed to the route as it arrived (one message), so routes read
it as usual.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.errors import (
    GatewayBusyError,
    RequestBodyError,
    RequestTimeoutError,
    RequestTooDeepError,
    RequestTooLargeError,
    RequestTooManyValuesError,
)
from mercato.gateway.errors import error_response

# Deeper than any JSON this API takes: a try call's tensor of numpy's largest rank (64)
# nests 67 deep in its request; far below the depth where the parser would recurse
# towards the interpreter's limit.
MAX_JSON_DEPTH = 100
JSON_API_BODY = 64 * 1024  # bytes: sign-in messages and other small JSON bodies
FORM_BODY = 64 * 1024  # bytes: the web pages' forms (a try form holds a few numbers)
JSON_API_VALUES = 4096  # values (arrays, objects and comma-separated items) in one body
MAX_BUFFERED = 256 * 1024 * 1024  # bytes of request bodies held at once, all requests
BUSY_RETRY_AFTER = 5.0  # seconds a client refused for MAX_BUFFERED is told to wait
BODY_IDLE_TIMEOUT = 30.0  # seconds between two pieces of a body
BODY_TIMEOUT = 300.0  # seconds for a whole body (16 MiB at ~75 kB/s)

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))
_COMMA = ord(",")


@dataclass(frozen=True)
class BodyRule:
    """What one route accepts as a request body.

    Attributes:
        max_bytes: The largest body, in bytes.
        json: Scan the body as JSON (nesting depth and value count) before the route.
        max_values: Most arrays, objects and comma-separated items in the body; None
            for no limit beyond the byte limit.
    """

    max_bytes: int
    json: bool = True
    max_values: int | None = JSON_API_VALUES


RuleFor = Callable[[str, str], BodyRule]


class JsonShapeScanner:
    """Follows JSON's structure through a byte stream, chunk by chunk, without parsing it.

    Counts `[`/`{` (one level deeper) and `]`/`}` outside strings, where a string is
    what lies between unescaped quotes, and the values opened or separated by commas.
    Where a body is not valid JSON the count may differ from a parser's, but only from
    the first invalid byte on, and a parser stops there.
    """

    def __init__(self, max_depth: int = MAX_JSON_DEPTH, max_values: int | None = None) -> None:
        self.max_depth = max_depth
        self.max_values = max_values
        self.depth = 0
        self.values = 0
        self._in_string = False
        self._odd_backslashes = False  # the bytes so far end in an odd run of backslashes

    def feed(self, chunk: bytes, *, last: bool = False) -> None:
        """Scans the next bytes of the body.

        Args:
            chunk: The bytes.
            last: No bytes follow. Then, when the chunk's brackets and commas, counted
                in and out of strings alike, cannot pass the limits, the structure is
                not followed (a few byte counts, where following it costs tens of
                microseconds even for a small body); the scanner's state is left as it
                was.

        Raises:
            RequestTooDeepError: Arrays and objects nest deeper than `max_depth`.
            RequestTooManyValuesError: The body holds more than `max_values` values.
        """
        if not chunk:
            return
        if last and self._cannot_pass(chunk):
            return
        data = np.frombuffer(chunk, dtype=np.uint8)
        # Vectorised, because a Python loop over every byte of a 30 MB body would hold
        # the event loop for seconds.
        escaped = self._escaped(data)
        quotes = (data == _QUOTE) & ~escaped
        quotes_before = np.cumsum(quotes, dtype=np.int64) - quotes
        inside = ((quotes_before + self._in_string) & 1).astype(bool)
        self._in_string = bool((int(quotes_before[-1]) + int(quotes[-1]) + self._in_string) & 1)
        outside = ~inside & ~quotes
        opens = np.isin(data, _OPEN) & outside
        closes = np.isin(data, _CLOSE) & outside
        steps = opens.astype(np.int64) - closes
        levels = np.cumsum(steps) + self.depth
        deepest = int(levels.max())
        if deepest > self.max_depth:
            raise RequestTooDeepError(self.max_depth)
        self.depth = int(levels[-1])
        self.values += int(opens.sum()) + int(((data == _COMMA) & outside).sum())
        if self.max_values is not None and self.values > self.max_values:
            raise RequestTooManyValuesError(self.max_values)

    def _cannot_pass(self, chunk: bytes) -> bool:
        """Whether no reading of `chunk` passes a limit: every `[` and `{` opens a level
        (depth grows by at most their number) and every one and every comma is a value,
        which bounds what the full scan counts."""
        opens = chunk.count(b"[") + chunk.count(b"{")
        if self.depth + opens > self.max_depth:
            return False
        if self.max_values is None:
            return True
        return self.values + opens + chunk.count(b",") <= self.max_values

    def _escaped(self, data: np.ndarray) -> np.ndarray:
        """Where a byte follows an odd run of backslashes (a JSON escape), this chunk's
        run continuing the previous chunk's."""
        backslash = data == _BACKSLASH
        escaped = np.zeros(len(data), dtype=bool)
        if not backslash.any():
            escaped[0] = self._odd_backslashes
            self._odd_backslashes = False
            return escaped
        positions = np.arange(len(data), dtype=np.int64)
        last_other = np.maximum.accumulate(np.where(backslash, -1, positions))
        run = positions - last_other  # backslashes ending here (0 on other bytes)
        # A run that starts the chunk continues the previous chunk's.
        run = run + ((last_other < 0) & self._odd_backslashes)
        odd = (run & 1).astype(bool)
        escaped[0] = self._odd_backslashes
        escaped[1:] = odd[:-1]
        self._odd_backslashes = bool(odd[-1])
        return escaped


_TRY_ROUTE = re.compile(r"^/v1/models/[^/]+/try$")


def default_rules(*, try_bytes: int, upload_bytes: int) -> RuleFor:
    """The gateway's body rules, per route.

    Args:
        try_bytes: The try route's limit: the try pool's limit on one raw request.
        upload_bytes: The upload route's limit (its files, base64, plus the JSON around).

    Returns:
        A function of (method, path) giving the route's rule.
    """
    upload = BodyRule(upload_bytes, max_values=JSON_API_VALUES)
    # A try request is tensors of numbers: as many values as the pool lets in.
    try_call = BodyRule(try_bytes, max_values=None)
    json_api = BodyRule(JSON_API_BODY)
    form = BodyRule(FORM_BODY, json=False)

    def rule_for(method: str, path: str) -> BodyRule:
        del method  # a body is bounded whatever the method
        if path == "/v1/uploads":
            return upload
        if _TRY_ROUTE.match(path):
            return try_call
        if path.startswith("/v1/"):
            return json_api
        return form

    return rule_for


class BodyLimitMiddleware:
    """Reads and checks each request body under its route's rule before the route runs.

    Args:
        app: The application to protect.
        rule_for: Gives the rule of a (method, path).
        max_buffered: Bytes of bodies held at once by all requests together (a body is
            held from its first byte until its request is answered).
        idle_timeout: Seconds a body may pause between two pieces.
        total_timeout: Seconds a whole body may take.
    """

    def __init__(
        self,
        app: ASGIApp,
        rule_for: RuleFor,
        max_buffered: int = MAX_BUFFERED,
        idle_timeout: float = BODY_IDLE_TIMEOUT,
        total_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.app = app
        self.rule_for = rule_for
        self.max_buffered = max_buffered
        self.idle_timeout = idle_timeout
        self.total_timeout = total_timeout
        self.buffered = 0  # one event loop runs every request: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.rule_for(scope["method"], scope["path"])
        held = [0]  # bytes of this request counted in `buffered`
        try:
            try:
                body = await self._read(scope, receive, rule, held)
            except (RequestBodyError, GatewayBusyError) as exc:
                response = error_response(exc)
                # The rest of the body is never read, so the connection cannot be reused.
                response.headers["Connection"] = "close"
                await response(scope, receive, send)
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.buffered -= held[0]

    async def _read(self, scope: Scope, receive: Receive, rule: BodyRule, held: list[int]) -> bytes:
        declared = _content_length(scope)
        if declared is not None and declared > rule.max_bytes:
            raise RequestTooLargeError(rule.max_bytes, declared)
        scanner = JsonShapeScanner(max_values=rule.max_values) if rule.json else None
        parts: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.total_timeout
        while True:
            wait = min(self.idle_timeout, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0))
            except TimeoutError as exc:
                raise RequestTimeoutError(min(self.idle_timeout, self.total_timeout)) from exc
            if message["type"] != "http.request":
                break  # the client went away; the route sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > rule.max_bytes:
                raise RequestTooLargeError(rule.max_bytes, None)
            if self.buffered + len(chunk) > self.max_buffered:
                raise GatewayBusyError("large requests at once", BUSY_RETRY_AFTER)
            self.buffered += len(chunk)
            held[0] += len(chunk)
            last = not message.get("more_body", False)
            if scanner is not None:
                scanner.feed(chunk, last=last)
            parts.append(chunk)
            if last:
                break
        return b"".join(parts)


_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds `_SECURITY_HEADERS` to every answer that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses such a request before it gets here
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out `body` once, then waits on the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
