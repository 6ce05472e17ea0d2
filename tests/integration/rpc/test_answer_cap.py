# SPDX-License-Identifier: AGPL-3.0-only
"""RPC answers are read up to a byte cap: a provider cannot fill the node's memory, and
honest log queries shrink their range until the answer fits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from web3 import Web3
from web3.types import RPCEndpoint

from mercato.chain.anvil import AnvilSupervisor
from mercato.chain.logs import LogFetcher
from mercato.chain.retry import RetryPolicy
from mercato.chain.web3_backend import RetryingHTTPProvider
from mercato.errors import RpcAnswerTooLargeError

from .test_hosted_provider import MODELS, _history

CAP = 2 * 1024 * 1024


class EndlessProvider:
    """A hostile JSON-RPC endpoint that streams an answer without end, or declares one of a
    terabyte. Stands in for a malicious provider (none is reachable from here)."""

    def __init__(self, *, declare_length: bool) -> None:
        self.sent = 0
        declare = declare_length
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if declare:
                    self.send_header("Content-Length", str(10**12))
                self.send_header("Connection", "close")
                self.end_headers()
                piece = b'{"jsonrpc":"2.0","id":0,"result":"' + b"0" * (1024 * 1024)
                try:
                    while provider.sent < 512 * 1024 * 1024:
                        self.wfile.write(piece)
                        provider.sent += len(piece)
                except OSError:
                    pass  # the client stopped reading and closed the connection

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=[True, False], ids=["declared-length", "endless-stream"])
def endless(request: pytest.FixtureRequest) -> Iterator[EndlessProvider]:
    provider = EndlessProvider(declare_length=request.param)
    yield provider
    provider.stop()


def test_an_answer_over_the_cap_is_refused_without_reading_it_all(
    endless: EndlessProvider,
) -> None:
    w3 = Web3(
        RetryingHTTPProvider(endless.url, retry=RetryPolicy(attempts=1), max_answer_bytes=CAP)
    )
    with pytest.raises(RpcAnswerTooLargeError) as caught:
        w3.eth.block_number  # noqa: B018 - the call is the test
    assert caught.value.limit == CAP and "eth_blockNumber" in str(caught.value)
    # The node stopped reading near the cap (plus what socket buffers held).
    assert endless.sent < CAP + 32 * 1024 * 1024


def test_log_ranges_shrink_until_their_answer_fits_the_cap(
    anvil: AnvilSupervisor, w3: Web3
) -> None:
    deployment, _, _ = _history(w3)
    query = {"address": [deployment.model_registry]}
    head = int(w3.eth.block_number)
    direct = w3.provider.make_request(
        RPCEndpoint("eth_getLogs"), [{**query, "fromBlock": "0x0", "toBlock": hex(head)}]
    )["result"]
    small = Web3(RetryingHTTPProvider(anvil.rpc_url, max_answer_bytes=8 * 1024))
    fetcher = LogFetcher(small, max_range=5_000)
    assert fetcher.get(query, 0, head) == direct and len(direct) >= 2 * MODELS
    assert fetcher.span < 5_000  # it had to ask for smaller ranges
