# SPDX-License-Identifier: AGPL-3.0-only
"""When a JSON-RPC failure is worth another try, and how long to wait first.

Hosted providers rate-limit (HTTP 429, or a JSON-RPC error saying so), fail for a
moment (502, 503, 504) and drop connections. Those are retried with exponential
back-off and full jitter, so many clients that failed together do not all come back
together. Every other failure is final: retrying a refused request only spends the
provider's quota.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

# Statuses a provider answers while overloaded or restarting; the same request may pass.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# JSON-RPC error codes providers use for "slow down" (-32005 is shared with result caps,
# so its message decides; see `is_rate_limit_error`).
RATE_LIMIT_CODES = frozenset({-32005, -32029, -32090, 429})
RATE_LIMIT_WORDS = ("rate limit", "rate-limit", "too many requests", "requests per", "throttl")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    Attributes:
        attempts: Tries in all, the first included (1: never retry).
        base_delay: Seconds before the second try; doubled for each later one.
        max_delay: No wait is longer, whatever a provider's Retry-After header asks.
        sleep: How to wait (tests pass a recorder).
        rng: Where the jitter comes from.
    """

    attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first retry).

        Args:
            retry: How many retries came before this one.
            retry_after: What the provider's Retry-After header asked for, if anything.

        Returns:
            A wait in [0, max_delay]: full jitter over the exponential step, or the
            provider's own figure when it gave one (capped, so a hostile provider
            cannot park a node).
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        step = min(self.max_delay, self.base_delay * (2**retry))
        return self.rng.uniform(0, step)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed request, or None when no answer came."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def retry_after_seconds(exc: BaseException) -> float | None:
    """A Retry-After header given in seconds, if the failed answer carried one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own back-off


def is_transient_exception(exc: BaseException) -> bool:
    """Whether a request that raised `exc` may succeed when sent again.

    A refused connection is not: nothing listens there (a node that is not running),
    and waiting would only delay the sentence that says so.
    """
    if isinstance(exc, requests.HTTPError):
        return http_status(exc) in TRANSIENT_STATUSES
    if _connection_refused(exc):
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError))


def _connection_refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ConnectionRefusedError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def is_rate_limit_error(error: Any) -> bool:
    """Whether a JSON-RPC `error` object asks the client to slow down."""
    if not isinstance(error, dict):
        return False
    message = str(error.get("message", "")).lower()
    if any(word in message for word in RATE_LIMIT_WORDS):
        return True
    # -32005 without rate-limit words is a result or range cap (see mercato.chain.logs).
    return error.get("code") in RATE_LIMIT_CODES - {-32005}
