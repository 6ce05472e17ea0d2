# SPDX-License-Identifier: AGPL-3.0-only
"""The health answer's parts: the chain check (against a real HTTP server on loopback
standing in for a JSON-RPC endpoint) and the agent's states."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mercato.agent.seller import AgentStatus
from mercato.gateway.api.health import ChainProbe, Health, NodeParts, _agent


class _Endpoint(BaseHTTPRequestHandler):
    calls = 0
    status = 200

    def do_POST(self) -> None:
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": "0x2a"}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, type[_Endpoint]]]:
    handler = type("Handler", (_Endpoint,), {"calls": 0, "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3/secret-api-key", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_flood_of_health_probes_is_one_chain_call(
    endpoint: tuple[str, type[_Endpoint]],
) -> None:
    url, handler = endpoint
    probe = ChainProbe()
    answers = [probe.check(url) for _ in range(50)]
    assert answers[0] == ({"status": Health.OK, "head": 42}, 42)
    assert all(answer == answers[0] for answer in answers)
    assert handler.calls == 1


def test_a_failing_chain_is_down_and_its_url_is_not_shown(
    endpoint: tuple[str, type[_Endpoint]],
) -> None:
    url, handler = endpoint
    handler.status = 500
    part, head = ChainProbe().check(url)
    assert (part["status"], head) == (Health.DOWN, None)
    assert "secret" not in json.dumps(part)


def _parts(status: AgentStatus | None, sells: bool = True) -> NodeParts:
    return NodeParts(agent=lambda: status, sells=sells, try_pool=lambda: True)


def test_the_agent_part_says_what_the_agent_does() -> None:
    assert _agent(_parts(None, sells=False), leading=True)["status"] == Health.OK
    # Built but not looping yet: starting, not down.
    assert _agent(_parts(AgentStatus()), leading=True)["status"] == Health.OK
    working = AgentStatus(running=True, last_round_at=1.0, pending=3)
    part = _agent(_parts(working), leading=True)
    assert (part["status"], part["pending"]) == (Health.OK, 3)
    failing = AgentStatus(
        running=True,
        failures=3,
        last_error="http://rpc/v3/secret-key did not answer",
        last_error_code="chain_unavailable",
    )
    part = _agent(_parts(failing), leading=True)
    assert (part["status"], part["last_error_code"]) == (Health.DEGRADED, "chain_unavailable")
    assert "secret" not in json.dumps(part)
    stopped = AgentStatus(running=False, last_round_at=1.0)
    assert _agent(_parts(stopped), leading=True)["status"] == Health.DOWN
    # A replica that does not lead runs no agent: the leader's does the work.
    assert _agent(_parts(None), leading=False)["status"] == Health.STANDBY
