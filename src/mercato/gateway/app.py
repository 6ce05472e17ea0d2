# SPDX-License-Identifier: AGPL-3.0-only
"""The node's HTTP gateway: IPFS trustless-gateway blocks and provider endpoints."""

from __future__ import annotations

from fastapi import FastAPI

from mercato import __version__
from mercato.client.market import Market
from mercato.client.provider import ProviderService
from mercato.gateway.ipfs import create_ipfs_router
from mercato.gateway.provider import create_provider_router


def create_app(market: Market, provider: ProviderService) -> FastAPI:
    """Builds the node's FastAPI application (OpenAPI at /openapi.json)."""
    app = FastAPI(title="Mercato node", version=__version__)
    app.include_router(create_ipfs_router(market.store))
    app.include_router(create_provider_router(provider, market.settings.try_per_minute))
    return app
