# SPDX-License-Identifier: AGPL-3.0-only
"""A per-key sliding-window rate limit (try calls per wallet and per address, sign-ins).

Keys come from requests (client addresses, wallets), so a client choosing a fresh key
per request must not grow the limiter without end: keys whose window has passed are
dropped as often as there are keys, which keeps the work per call constant on average.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class RateLimiter:
    """Allows `limit` calls per key in any `window` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._until_sweep = 1024

    def __len__(self) -> int:
        """The number of keys remembered."""
        return len(self._calls)

    def allow(self, key: str, now: float | None = None) -> float:
        """Records a call; returns 0 when allowed, else the seconds until the next one is."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            self._until_sweep -= 1
            if self._until_sweep <= 0:
                self._sweep(moment)
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= moment - self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                return calls[0] + self.window - moment
            calls.append(moment)
            return 0.0

    def _sweep(self, moment: float) -> None:
        self._calls = {
            key: calls
            for key, calls in self._calls.items()
            if calls and calls[-1] > moment - self.window
        }
        self._until_sweep = max(1024, len(self._calls))
