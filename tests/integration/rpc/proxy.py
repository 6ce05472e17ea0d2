# SPDX-License-Identifier: AGPL-3.0-only
"""A stand-in for a hosted JSON-RPC provider, in front of a real Anvil.

Hosted providers cannot be reached from the test machine, so this small HTTP server
plays one: it caps `eth_getLogs` ranges and result counts (answering the way Infura,
Alchemy and others word it, or with HTTP 413), answers HTTP 429 and 503 at random from
a seeded generator, drops connections without an answer, and passes everything else
to Anvil untouched. Injected failures never come more than `max_streak` times in a
row, as a provider's hiccups end too, so clients with a retry budget finish; a test
of that budget sets the rates to 1.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

# Methods whose answer may be lost without harm; a dropped send is not simulated, since
# whether it reached the chain is then unknowable to the test as well.
_READS_PREFIX = ("eth_get", "eth_call", "eth_blockNumber", "eth_chainId", "eth_estimateGas")


@dataclass
class ProviderLimits:
    """What the stand-in provider enforces and injects."""

    max_range: int = 100
    max_results: int = 8
    rate_429: float = 0.1
    rate_503: float = 0.03
    rate_drop: float = 0.03
    max_streak: int = 3
    seed: int = 7
    # Forward these methods, then drop the connection instead of answering, this many
    # times: the request took effect but the client never heard.
    lose_answers_of: tuple[str, ...] = ()
    lose_answers: int = 0


@dataclass
class RpcProxy:
    """The running stand-in: its URL, and counts of what it did (`stats`)."""

    upstream: str
    limits: ProviderLimits
    stats: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _streak: int = 0
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.limits.seed)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RpcProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, payload, headers = proxy.handle(body)
                if status == 0:  # drop the connection without an answer
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- behaviour -----------------------------------------------------------------

    def _inject(self, method: str) -> tuple[int, bytes, dict[str, str]] | None:
        with self._lock:
            if self._streak >= self.limits.max_streak:
                self._streak = 0
                return None
            roll = self._rng.random()
            limits = self.limits
            if roll < limits.rate_429:
                kind = "429"
            elif roll < limits.rate_429 + limits.rate_503:
                kind = "503"
            elif roll < limits.rate_429 + limits.rate_503 + limits.rate_drop and method.startswith(
                _READS_PREFIX
            ):
                kind = "drop"
            else:
                self._streak = 0
                return None
            self._streak += 1
            self.stats[kind] += 1
        if kind == "429":
            return 429, b'{"error": "Too Many Requests"}', {"Retry-After": "0"}
        if kind == "503":
            return 503, b"Service Unavailable", {}
        return 0, b"", {}

    def handle(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        request = json.loads(body)
        method = request.get("method", "") if isinstance(request, dict) else "batch"
        self.stats[method] += 1
        injected = self._inject(method)
        if injected is not None:
            return injected
        if method == "eth_getLogs":
            refused = self._refuse_logs(request)
            if refused is not None:
                return refused
        answer = requests.post(
            self.upstream, data=body, timeout=60, headers={"Content-Type": "application/json"}
        )
        if method in self.limits.lose_answers_of and self.stats["lost"] < self.limits.lose_answers:
            self.stats["lost"] += 1
            return 0, b"", {}
        return answer.status_code, answer.content, {}

    def _block(self, tag: Any) -> int:
        if isinstance(tag, str) and tag.startswith("0x"):
            return int(tag, 16)
        if tag == "earliest":
            return 0
        head = requests.post(
            self.upstream,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            timeout=60,
        ).json()["result"]
        return int(head, 16)

    def _refuse_logs(self, request: dict[str, Any]) -> tuple[int, bytes, dict[str, str]] | None:
        query = request["params"][0]
        first = self._block(query.get("fromBlock", "latest"))
        last = self._block(query.get("toBlock", "latest"))
        rid = request.get("id")
        if last - first + 1 > self.limits.max_range:
            self.stats["range_refused"] += 1
            # Providers word it differently; rotate through the common shapes.
            style = self.stats["range_refused"] % 3
            if style == 0:
                return 413, b"Request Entity Too Large", {}
            message = (
                f"block range is too wide (maximum {self.limits.max_range})"
                if style == 1
                else f"eth_getLogs is limited to a {self.limits.max_range} range"
            )
            return 200, _error(rid, -32602, message), {}
        answer = requests.post(self.upstream, json=request, timeout=60).json()
        if len(answer.get("result") or []) > self.limits.max_results:
            self.stats["results_refused"] += 1
            message = f"query returned more than {self.limits.max_results} results"
            return 200, _error(rid, -32005, message), {}
        return 200, json.dumps(answer).encode(), {}


def _error(rid: Any, code: int, message: str) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}
    ).encode()
