# SPDX-License-Identifier: AGPL-3.0-only
"""Provider endpoints of a node: try-before-you-buy (health is `api/health.py`)."""

from __future__ import annotations

import math
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mercato.client.provider import ProviderService
from mercato.errors import MercatoError
from mercato.gateway.dependencies import ModelId
from mercato.gateway.errors import error_response
from mercato.gateway.ratelimit import RateLimiter

MAX_TRY_BODY = 16 * 1024 * 1024  # bytes; the runtime checks the tensors' own limits


def try_wait(by_address: RateLimiter, by_wallet: RateLimiter, client: str, wallet: str) -> float:
    """Records a try call; 0 when allowed, else seconds to wait (both limits apply)."""
    return by_address.allow(client) or (by_wallet.allow(wallet) if wallet else 0.0)


def create_provider_router(
    service: ProviderService,
    per_minute: int,
    *,
    wallet_of: Callable[[Request], str | None] | None = None,
    limiters: tuple[RateLimiter, RateLimiter] | None = None,
) -> APIRouter:
    """Routes `/v1/models/{id}/try`.

    Try calls are limited per client address and, when `wallet_of` finds a signed-in
    wallet, per wallet too; both limits apply.

    Args:
        service: Runs the try calls.
        per_minute: Calls allowed per address and per wallet in any minute.
        wallet_of: Returns the signed-in wallet of a request, if any.
        limiters: The (per address, per wallet) limiters, to share them with the web
            pages' try form; new ones by default.

    Returns:
        The router.
    """
    router = APIRouter(tags=["provider"])
    by_address, by_wallet = limiters or (RateLimiter(per_minute), RateLimiter(per_minute))

    @router.post("/v1/models/{model_id}/try", response_model=None)
    async def try_model(model_id: ModelId, request: Request) -> Response:
        """Runs the model on the inputs in the JSON body; the weights stay on this node."""
        client = request.client.host if request.client else "unknown"
        signed_in = wallet_of(request) if wallet_of else None
        # Only a signed-in wallet counts: a wallet merely named in a header would let
        # anyone use up another wallet's tries.
        wallet = (signed_in or "").lower()
        wait = try_wait(by_address, by_wallet, client, wallet)
        if wait:
            return JSONResponse(
                {"error": "rate_limited", "message": f"Too many try calls; retry in {wait:.0f} s."},
                status_code=429,
                headers={"Retry-After": str(math.ceil(wait))},
            )
        body = await request.body()
        if len(body) > MAX_TRY_BODY:
            return JSONResponse(
                {"error": "request_too_large", "message": "The try request is over 16 MiB."},
                status_code=413,
            )
        try:
            answer = await service.try_json_async(model_id, body)
        except MercatoError as exc:
            return error_response(exc)
        return Response(answer, media_type="application/json")

    return router
