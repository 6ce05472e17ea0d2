# SPDX-License-Identifier: AGPL-3.0-only
"""Provider endpoints of a node: try-before-you-buy and health."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mercato.client.provider import ProviderService
from mercato.errors import MercatoError
from mercato.gateway.errors import error_response
from mercato.gateway.ratelimit import RateLimiter

MAX_TRY_BODY = 16 * 1024 * 1024  # bytes; the runtime checks the tensors' own limits


def create_provider_router(service: ProviderService, per_minute: int) -> APIRouter:
    """Routes `/v1/models/{id}/try` and `/v1/health`.

    Try calls are limited per client address and, when the caller names one in the
    `X-Mercato-Account` header, per wallet.
    """
    router = APIRouter(tags=["provider"])
    by_address = RateLimiter(per_minute)
    by_wallet = RateLimiter(per_minute)

    @router.get("/v1/health")
    def health() -> dict[str, str]:
        """Liveness of the provider."""
        return {"status": "ok"}

    @router.post("/v1/models/{model_id}/try", response_model=None)
    async def try_model(model_id: int, request: Request) -> Response:
        """Runs the model on the inputs in the JSON body; the weights stay on this node."""
        client = request.client.host if request.client else "unknown"
        wallet = request.headers.get("x-mercato-account", "").lower()
        wait = by_address.allow(client) or (by_wallet.allow(wallet) if wallet else 0.0)
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
            answer = await run_in_threadpool(service.try_json, model_id, body)
        except MercatoError as exc:
            return error_response(exc)
        return Response(answer, media_type="application/json")

    return router
