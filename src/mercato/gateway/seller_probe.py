# SPDX-License-Identifier: AGPL-3.0-only
"""Is the seller's node online? A bounded, cached check of a provider URL's health.

A model page tells a buyer whether the node that must deliver their key answers right
now. The URL is whatever the model's owner recorded on-chain, so it is treated as
hostile: only http(s) without credentials, through the node's `FetchPolicy` (no
private or loopback addresses outside a local chain or the settings' allow-list, the
checked address pinned for the connection, no redirects, no proxies), `/v1/health`
only, no body read, a hard deadline for the whole check (name resolution included),
and one check per URL per `ttl` seconds however many pages ask.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from enum import StrEnum
from urllib.parse import urlsplit

import httpx

from mercato.errors import UnsafeURLError
from mercato.storage.remote import FetchPolicy


class Reachability(StrEnum):
    """What the last check of a provider URL found."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNCHECKED = "unchecked"  # no URL, or one this node refuses to contact


class SellerProbe:
    """Checks provider URLs, at most once per `ttl` seconds each, within `deadline` seconds.

    Args:
        policy: Where this node may connect (`mercato.client.fetching.fetch_policy`).
        deadline: Seconds a page waits for a check; a slower node counts as offline.
        ttl: Seconds a result is reused.
        max_entries: Results kept; the cache is emptied when it grows past this.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        deadline: float = 1.5,
        ttl: float = 30.0,
        max_entries: int = 1_000,
    ) -> None:
        self.policy = policy
        self.deadline = deadline
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, Reachability]] = {}
        self._lock = threading.Lock()
        # Few workers: a flood of pages naming slow hosts waits, it does not multiply.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mercato-probe")

    def check(self, url: str | None) -> Reachability:
        """Whether the node at `url` answers its health check now (cached).

        Args:
            url: A provider base URL as recorded on-chain, or None.

        Returns:
            ONLINE, OFFLINE, or UNCHECKED for a missing or refused URL.
        """
        target = self._health_url(url)
        if target is None:
            return Reachability.UNCHECKED
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(target)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        future = self._pool.submit(self._probe, target)
        try:
            result = future.result(timeout=self.deadline)
        except FutureTimeout:
            result = Reachability.OFFLINE
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[target] = (time.monotonic(), result)
        return result

    def _health_url(self, url: str | None) -> str | None:
        if not url:
            return None
        try:
            parts = urlsplit(url.strip())
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        if parts.username or parts.password:
            return None
        target = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/v1/health"
        try:
            self.policy.check_url(target)
        except UnsafeURLError:
            return None
        return target

    def _probe(self, target: str) -> Reachability:
        try:
            with (
                self.policy.client(httpx.Timeout(self.deadline)) as client,
                client.stream("GET", target) as response,
            ):
                # Only the status line counts: the body is never read.
                return Reachability.ONLINE if response.status_code == 200 else Reachability.OFFLINE
        except UnsafeURLError:
            return Reachability.UNCHECKED  # resolves to an address this node must not reach
        except (httpx.HTTPError, OSError, ValueError):
            return Reachability.OFFLINE

    def close(self) -> None:
        """Stops the worker threads (checks in flight are abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
