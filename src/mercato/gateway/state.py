# SPDX-License-Identifier: AGPL-3.0-only
"""What the gateway's routers share: the market, the index, sign-in and rate limits.

The node's gateway also keeps the index in step with the chain: `IndexFollower` runs
the index's `Indexer` in a thread for as long as the app runs, reading manifests from
the node's own store or the providers recorded on-chain (`StoreMetadataSource`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mercato.client.market import Market
from mercato.client.metadata import StoreMetadataSource
from mercato.client.provider import ProviderService
from mercato.errors import IndexingError, IndexRpcError
from mercato.gateway.ratelimit import RateLimiter
from mercato.gateway.sessions import RevokedSessions, SessionSigner, load_session_key
from mercato.gateway.siwe import SiweVerifier
from mercato.index import Index, Indexer, IndexerConfig
from mercato.index.ingest import SyncReport
from mercato.moderation.policy import ModerationPolicy

log = logging.getLogger(__name__)
MAX_MANIFEST = 4 * 1024 * 1024  # bytes; manifests are a few kB
SIGN_INS_PER_MINUTE = 30  # per client address: a person signs in a few times a day
# Uploads fill this node's disk, and wallets cost nothing to make: limited per client
# address and per wallet (a creator publishes a few models an hour at most).
UPLOADS_PER_HOUR = 20


class IndexFollower:
    """Runs an `Indexer` in a daemon thread until `stop()`."""

    def __init__(self, index: Index, market: Market, poll_interval: float = 0.2) -> None:
        self.indexer = Indexer(
            index,
            market.w3,
            market.deployment,
            StoreMetadataSource(market),
            IndexerConfig(confirmations=market.settings.confirmations, poll_interval=poll_interval),
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Bumped whenever a sync changed the index, so readers can cache between changes.
        self.generation = 0
        # For the health check: the last sync's report and when it ended (Unix time).
        self.last_report: SyncReport | None = None
        self.last_sync_at: float | None = None
        self.started_at: float | None = None

    def start(self) -> None:
        """Starts following the chain (a first sync runs in the thread)."""
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name="mercato-index", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread still follows the chain (False once an error stopped it)."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        # `Indexer.run` in outline, keeping each report to know when the index changed.
        interval = self.indexer.config.poll_interval
        while not self._stop.is_set():
            try:
                report = self.indexer.sync_once()
            except IndexRpcError:
                self._stop.wait(interval)  # the chain is restarting: try again
                continue
            except IndexingError:
                log.exception("the index stopped following the chain")
                return
            self.last_report, self.last_sync_at = report, time.time()
            if report.events or report.metadata_applied or report.rolled_back_to is not None:
                self.generation += 1
            if report.indexed_to >= report.head - self.indexer.confirmations:
                self._stop.wait(interval)

    def stop(self) -> None:
        """Stops the thread and waits for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class FeeCache:
    """The protocol fee, read from the chain at most every `ttl` seconds."""

    market: Market
    ttl: float = 5.0
    _value: int = 0
    _read_at: float = field(default=-1e9)

    def fee_bps(self) -> int:
        """The marketplace's protocol fee in basis points."""
        if time.monotonic() - self._read_at > self.ttl:
            self._value = self.market.contracts.marketplace.protocol_fee_bps()
            self._read_at = time.monotonic()
        return self._value


@dataclass
class GatewayState:
    """Everything the routers of one app share (kept on `app.state.gateway`)."""

    market: Market
    provider: ProviderService
    index: Index
    siwe: SiweVerifier
    sessions: SessionSigner
    fees: FeeCache
    try_by_address: RateLimiter
    try_by_wallet: RateLimiter
    sign_in_by_address: RateLimiter = field(
        default_factory=lambda: RateLimiter(SIGN_INS_PER_MINUTE)
    )
    uploads_by_address: RateLimiter = field(
        default_factory=lambda: RateLimiter(UPLOADS_PER_HOUR, window=3600)
    )
    uploads_by_wallet: RateLimiter = field(
        default_factory=lambda: RateLimiter(UPLOADS_PER_HOUR, window=3600)
    )
    follower: IndexFollower | None = None
    # The account this node delivers keys from; creators who publish from a browser
    # name it as their agent (`set_agent`) so their sales get delivered.
    delivery_agent: str | None = None
    # What this node refuses to serve (mercato.gateway.moderation); set by create_app.
    moderation: ModerationPolicy | None = None
    detail_cache: dict[int, tuple[int, Any]] = field(default_factory=dict)

    def cached(self, key: int, build: Callable[[], Any]) -> Any:
        """`build()`, reused until the index changes (only while this app follows the chain)."""
        if self.follower is None:
            return build()
        generation = self.follower.generation
        hit = self.detail_cache.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        value = build()
        if len(self.detail_cache) > 10_000:
            self.detail_cache.clear()
        self.detail_cache[key] = (generation, value)
        return value

    @property
    def chain_id(self) -> int:
        return self.market.chain_id


def default_domains(market: Market) -> set[str]:
    """The host[:port] names this node answers sign-ins for: its public URL and its bind."""
    settings = market.settings
    domains = {
        urlsplit(settings.public_url).netloc,
        f"{settings.gateway_host}:{settings.gateway_port}",
    }
    if settings.gateway_host in ("127.0.0.1", "::1", "0.0.0.0"):
        domains.add(f"localhost:{settings.gateway_port}")
        domains.add(f"127.0.0.1:{settings.gateway_port}")
    return domains


def build_state(
    market: Market,
    provider: ProviderService,
    *,
    index: Index | None = None,
    follow_chain: bool = True,
    domains: set[str] | None = None,
) -> GatewayState:
    """Opens the index (SQLite in the data directory unless given) and builds the state.

    Raises:
        IndexDatabaseError: The index database cannot be opened or migrated.
    """
    opened = index or Index.open(data_dir=market.settings.data_dir)
    return GatewayState(
        market=market,
        provider=provider,
        index=opened,
        siwe=SiweVerifier(domains or default_domains(market), market.chain_id),
        sessions=SessionSigner(
            load_session_key(market.settings.data_dir),
            revoked=RevokedSessions(market.settings.data_dir / "gateway" / "revoked"),
        ),
        fees=FeeCache(market),
        try_by_address=RateLimiter(market.settings.try_per_minute),
        try_by_wallet=RateLimiter(market.settings.try_per_minute),
        follower=IndexFollower(opened, market) if follow_chain else None,
    )
