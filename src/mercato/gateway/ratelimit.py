# SPDX-License-Identifier: AGPL-3.0-only
"""A per-key sliding-window rate limit, for try calls (per wallet and per address)."""

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

    def allow(self, key: str, now: float | None = None) -> float:
        """Records a call; returns 0 when allowed, else the seconds until the next one is."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= moment - self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                return calls[0] + self.window - moment
            calls.append(moment)
            return 0.0
