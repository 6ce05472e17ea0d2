# SPDX-License-Identifier: AGPL-3.0-only
"""Health of a node, part by part, for load balancers, probes and buyers' pages.

    GET /v1/health/live   200 {"status": "ok"} while the process serves (liveness)
    GET /v1/health        200 ok|degraded, 503 down (readiness), with each part:

    {"status": "ok" | "degraded" | "down",
     "leader": true,                                  (on a node: see mercato.leader)
     "parts": {
       "chain":    {"status": ..., "head": 1234} | {"status": "down", "error": "..."},
       "index":    {"status": ..., "following": true, "indexed_to": 1230, "lag_blocks": 4},
       "agent":    {"status": ..., "running": true, "pending": 0, "last_round_age_s": 1.2, ...},
       "try_pool": {"status": ..., "running": true}}}

A part is `down` when it cannot work at all (the chain does not answer, the index
follower or the agent stopped, the try workers are gone), `degraded` when it works
behind (the index many blocks behind, the agent's rounds failing). Any part down makes
the answer 503, so a balancer sends buyers elsewhere and a seller's page shows its node
offline (`seller_probe.py` and `provider_reachable` read only the status code). A
replica that does not lead runs no follower or agent: those parts say `standby`, which
counts as ok.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mercato.agent.seller import AgentStatus
from mercato.gateway.state import GatewayState

router = APIRouter(tags=["health"])
CHAIN_TIMEOUT = 2.0  # seconds; a probe must answer faster than a balancer gives up
CHAIN_TTL = 1.0  # seconds a chain check is reused
# Blocks the index may trail the chain (past its confirmations) before it is "degraded".
INDEX_LAG_LIMIT = 32
# Seconds without a finished sync, or before the first one, before the index is "degraded".
INDEX_STALL = 60.0
# Agent rounds failed in a row before it is "degraded" (one failure is a blip).
AGENT_FAILURES = 3


class Health(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    STANDBY = "standby"  # a replica that does not lead: the leader runs this part


@dataclass
class NodeParts:
    """What only a node knows: its agent and its try pool (kept on `app.state.health`).

    Args:
        agent: The agent's status now; None when the node sells nothing or, on a
            replica that does not lead, runs no agent.
        sells: Whether the node has accounts to deliver for.
        try_pool: Whether the try workers run.
    """

    agent: Callable[[], AgentStatus | None]
    sells: bool
    try_pool: Callable[[], bool]


@router.get("/v1/health/live")
def live() -> dict[str, str]:
    """Liveness: answers 200 as long as the process serves requests."""
    return {"status": "ok"}


@router.get("/v1/health", response_model=None)
def health(request: Request) -> JSONResponse:
    """Readiness: each part's state; 503 when any part is down."""
    state: GatewayState = request.app.state.gateway
    leadership = getattr(request.app.state, "leadership", None)
    leading = leadership is None or bool(leadership.is_leader)
    chain, head = _probe.check(state.market.rpc_url)
    parts: dict[str, dict[str, Any]] = {"chain": chain, "index": _index(state, head, leading)}
    node: NodeParts | None = getattr(request.app.state, "health", None)
    if node is not None:
        parts["agent"] = _agent(node, leading)
        parts["try_pool"] = (
            {"status": Health.OK, "running": True}
            if node.try_pool()
            else {"status": Health.DOWN, "running": False}
        )
    statuses = {part["status"] for part in parts.values()}
    overall = (
        Health.DOWN
        if Health.DOWN in statuses
        else Health.DEGRADED
        if Health.DEGRADED in statuses
        else Health.OK
    )
    body: dict[str, Any] = {"status": overall, "parts": parts}
    if leadership is not None:
        body["leader"] = leading
    return JSONResponse(body, status_code=503 if overall is Health.DOWN else 200)


class ChainProbe:
    """One eth_blockNumber per `CHAIN_TTL` seconds however often health is asked: a flood
    of probes must not become a flood of RPC calls (a hosted provider counts them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, str, dict[str, Any], int | None] | None = None

    def check(self, url: str) -> tuple[dict[str, Any], int | None]:
        """The chain part of the health answer for the JSON-RPC endpoint `url`, and its
        head block (None when it does not answer)."""
        with self._lock:  # callers wait for the check in flight instead of adding one
            last = self._last
            if last is not None and last[1] == url and time.monotonic() - last[0] < CHAIN_TTL:
                return last[2], last[3]
            part, head = _chain(url)
            self._last = (time.monotonic(), url, part, head)
            return part, head


_probe = ChainProbe()


def _chain(url: str) -> tuple[dict[str, Any], int | None]:
    # A plain request with a short timeout: the market's provider retries with back-off,
    # which a probe cannot wait for.
    try:
        answer = requests.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            timeout=CHAIN_TIMEOUT,
        )
        answer.raise_for_status()
        head = int(answer.json()["result"], 16)
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        error = f"The chain does not answer: {type(exc).__name__}."
        return {"status": Health.DOWN, "error": error}, None
    return {"status": Health.OK, "head": head}, head


def _index(state: GatewayState, head: int | None, leading: bool) -> dict[str, Any]:
    follower = state.follower
    if follower is None:
        return {"status": Health.OK if leading else Health.STANDBY, "following": False}
    if not follower.alive:
        return {
            "status": Health.DOWN,
            "following": False,
            "error": "The index stopped following the chain; see the node's log.",
        }
    now = time.time()
    report, synced_at = follower.last_report, follower.last_sync_at
    answer: dict[str, Any] = {"status": Health.OK, "following": True}
    if report is None or synced_at is None:
        waited = now - (follower.started_at or now)
        answer.update(syncing=True, status=Health.DEGRADED if waited > INDEX_STALL else Health.OK)
        return answer
    answer["indexed_to"] = report.indexed_to
    answer["last_sync_age_s"] = round(now - synced_at, 1)
    if head is not None:
        lag = max(0, head - report.indexed_to)
        answer["lag_blocks"] = lag
        if lag > follower.indexer.confirmations + INDEX_LAG_LIMIT:
            answer["status"] = Health.DEGRADED
    if now - synced_at > INDEX_STALL:
        answer["status"] = Health.DEGRADED
    return answer


def _agent(node: NodeParts, leading: bool) -> dict[str, Any]:
    if not node.sells:
        return {"status": Health.OK, "selling": False}
    status = node.agent()
    if not leading:
        return {"status": Health.STANDBY, "selling": True, "running": False}
    if status is None or (
        not status.running and status.last_round_at is None and not status.failures
    ):
        return {"status": Health.OK, "selling": True, "running": False, "starting": True}
    if not status.running:
        return {
            "status": Health.DOWN,
            "selling": True,
            "running": False,
            "error": "The seller's agent is not running; purchases wait for their keys.",
        }
    answer: dict[str, Any] = {
        "status": Health.DEGRADED if status.failures >= AGENT_FAILURES else Health.OK,
        "selling": True,
        "running": True,
        "pending": status.pending,
        "unmined": status.unmined,
        "failures": status.failures,
        "last_round_age_s": (
            None if status.last_round_at is None else round(time.time() - status.last_round_at, 1)
        ),
    }
    # Only the error's stable code: its text stays in the log, as it may name the RPC URL
    # (where hosted providers put API keys).
    if status.last_error_code:
        answer["last_error_code"] = status.last_error_code
    return answer
