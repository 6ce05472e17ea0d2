# SPDX-License-Identifier: AGPL-3.0-only
"""The node's HTTP gateway: REST API, web pages, IPFS blocks and provider endpoints.

    /v1/...           the REST API (OpenAPI at /openapi.json, docs at /docs)
    /ipfs/{cid}       trustless-gateway blocks and CARs
    /, /models/{id}   the web marketplace (server-rendered; JavaScript only to sign)
    /static/...       the stylesheet and the wallet bundle

While the app runs it keeps the index in step with the chain (`state.IndexFollower`).
Every request body is bounded before a route reads it (`middleware.BodyLimitMiddleware`).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from mercato import __version__
from mercato.client.market import Market
from mercato.client.provider import ProviderService
from mercato.gateway.api import (
    artifacts,
    auth,
    chain,
    creators,
    earnings,
    evaluations,
    federation,
    health,
    lineage,
    models,
    orders,
    reports,
    reviews,
    uploads,
    versions,
)
from mercato.gateway.dependencies import optional_session
from mercato.gateway.errors import install_error_handlers
from mercato.gateway.ipfs import create_ipfs_router
from mercato.gateway.middleware import (
    BodyLimitMiddleware,
    SecurityHeadersMiddleware,
    default_rules,
)
from mercato.gateway.moderation import (
    ModerationMiddleware,
    SubscriptionRefresher,
    build_policy,
)
from mercato.gateway.provider import create_provider_router
from mercato.gateway.state import GatewayState, build_state
from mercato.gateway.task_pages import create_task_pages
from mercato.gateway.web import create_web_router
from mercato.index import Index
from mercato.models.runtime.limits import RuntimeLimits

STATIC_DIR = Path(__file__).with_name("static")
# Python's own default. py_ecc, which eth-account imports (through eth-keyfile), raises
# the limit to 100,000 at import; a thread's C stack overflows long before that, so a
# deeply nested JSON body would crash the whole node instead of raising RecursionError.
RECURSION_LIMIT = 1000
# The upload route's files arrive base64-encoded (4 bytes for 3) inside a little JSON.
UPLOAD_BODY = 4 * -(-uploads.MAX_UPLOAD // 3) + 256 * 1024
API_ROUTERS = (
    models.router,
    versions.router,
    lineage.router,
    reviews.router,
    evaluations.router,
    orders.router,
    creators.router,
    earnings.router,
    auth.router,
    chain.router,
    uploads.router,
    artifacts.router,
    health.router,
    reports.router,
    federation.router,
)


def create_app(
    market: Market,
    provider: ProviderService,
    *,
    index: Index | None = None,
    follow_chain: bool = True,
    domains: set[str] | None = None,
    delivery_agent: str | None = None,
    try_request_bytes: int | None = None,
) -> FastAPI:
    """Builds the node's FastAPI application (OpenAPI at /openapi.json).

    Args:
        market: A read-only market on the node's deployment.
        provider: Runs try calls for the models this node sells.
        index: The index to read; defaults to SQLite in the data directory.
        follow_chain: Keep the index in step with the chain while the app runs.
        domains: host[:port] names sign-in messages may name; defaults to the node's
            public URL and bind address.
        delivery_agent: The account the node's agent delivers keys from, offered to
            browser creators as their agent; None when the node sells nothing.
        try_request_bytes: The largest try request body: the try pool's
            `max_request_bytes` (the default limits' when not given).

    Returns:
        The app.

    Raises:
        IndexDatabaseError: The index database cannot be opened or migrated.
    """
    restore_recursion_limit()
    state = build_state(market, provider, index=index, follow_chain=follow_chain, domains=domains)
    state.delivery_agent = delivery_agent
    state.moderation = build_policy(market, state.index)
    refresher = SubscriptionRefresher(market, state.moderation.denylists)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The try pool's engine runs on this loop, next to the requests that await it.
        started_pool = await provider.start_pool()
        if state.follower is not None:
            state.follower.start()
        refresher.start()
        try:
            yield
        finally:
            refresher.stop()
            if state.follower is not None:
                state.follower.stop()
            if started_pool:
                await provider.close_pool()

    app = FastAPI(
        title="Mercato node",
        version=__version__,
        description="Search, inspect and buy AI models on a Mercato marketplace.",
        lifespan=lifespan,
    )
    app.state.gateway = state
    install_error_handlers(app)
    if try_request_bytes is None:
        try_request_bytes = RuntimeLimits().max_request_bytes
    # Innermost: a denied model is refused after the body limits, before any route.
    app.add_middleware(ModerationMiddleware, policy=state.moderation)
    app.add_middleware(
        BodyLimitMiddleware,
        rule_for=default_rules(try_bytes=try_request_bytes, upload_bytes=UPLOAD_BODY),
    )
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: refusals get the headers too
    # First: routes are matched in order, router by router, and the try route is the
    # one called at load (~0.1 ms of matching saved per call). No other route matches
    # its path (tests/integration/gateway/test_try_route.py).
    app.include_router(
        create_provider_router(
            provider,
            market.settings.try_per_minute,
            wallet_of=_session_wallet(state),
            limiters=(state.try_by_address, state.try_by_wallet),
        )
    )
    for router in API_ROUTERS:
        app.include_router(router)
    app.include_router(create_ipfs_router(market.store))
    app.include_router(create_web_router(state))
    app.include_router(create_task_pages(state))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def restore_recursion_limit() -> None:
    """Sets the interpreter's recursion limit back to `RECURSION_LIMIT` (see there).

    Called once the node's dependencies are imported; nothing Mercato runs in the node's
    process recurses deeper.
    """
    sys.setrecursionlimit(RECURSION_LIMIT)


def _session_wallet(state: GatewayState) -> Callable[[Request], str | None]:
    def wallet_of(request: Request) -> str | None:
        session = optional_session(request, state)
        return session.address if session else None

    return wallet_of
