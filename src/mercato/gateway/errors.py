# SPDX-License-Identifier: AGPL-3.0-only
"""JSON error answers with stable codes: `{"error": code, "message": sentence}`.

Every error the gateway answers with has this shape: Mercato's own errors carry their
class's `code`; request validation becomes `invalid_request`; other HTTP errors
become `http_<status>` (`http_404`, ...); a bug becomes `internal_error`, its traceback
in the node's log and never in the answer.
"""

from __future__ import annotations

import math
import sys

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mercato import errors

# Most specific first.
_STATUS: tuple[tuple[type[errors.MercatoError], int], ...] = (
    (errors.DeniedError, 410),
    (errors.ModelNotFoundError, 404),
    (errors.IndexedModelNotFoundError, 404),
    (errors.IndexedTaskNotFoundError, 404),
    (errors.VersionNotFoundError, 404),
    (errors.ContentKeyMissingError, 404),
    (errors.BlockNotFoundError, 404),
    (errors.InvalidSearchQueryError, 422),
    (errors.InferenceInputError, 422),
    (errors.ModelPackageError, 422),
    (errors.UploadPathError, 400),
    (errors.UploadError, 422),
    (errors.RequestTooLargeError, 413),
    (errors.RequestTimeoutError, 408),
    (errors.RequestBodyError, 400),
    (errors.GatewayBusyError, 503),
    (errors.RateLimitedError, 429),
    (errors.InferenceTimeoutError, 504),
    (errors.InferenceMemoryError, 507),
    (errors.SessionRequiredError, 401),
    (errors.SiweError, 401),
    (errors.LicenseRequiredError, 403),
    (errors.InferenceError, 500),
    (errors.ChainUnavailableError, 503),
    (errors.IndexingError, 503),
    (errors.MercatoError, 400),
)


def status_for(exc: errors.MercatoError) -> int:
    """The HTTP status that answers `exc`."""
    return next(code for kind, code in _STATUS if isinstance(exc, kind))


def error_response(exc: errors.MercatoError) -> JSONResponse:
    """The JSON answer for an error Mercato raised on purpose."""
    headers = None
    if isinstance(exc, errors.RateLimitedError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse(
        {"error": exc.code, "message": str(exc)}, status_code=status_for(exc), headers=headers
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for problem in exc.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "The request is invalid: " + "; ".join(parts) + "."


def install_error_handlers(app: FastAPI) -> None:
    """Makes every error of `app` a JSON body with a stable code."""

    @app.exception_handler(errors.MercatoError)
    async def _mercato(_request: Request, exc: errors.MercatoError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": "invalid_request", "message": _validation_message(exc)}, status_code=422
        )

    @app.exception_handler(RecursionError)
    async def _too_deep(_request: Request, exc: RecursionError) -> JSONResponse:
        # The body limits keep JSON shallow; anything else nested this deep is refused too.
        return error_response(errors.RequestTooDeepError(sys.getrecursionlimit()))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, _exc: Exception) -> JSONResponse:
        # A bug: the server logs its traceback; the client gets none of it.
        return JSONResponse(
            {
                "error": "internal_error",
                "message": "The node failed to answer this request; its log says why.",
            },
            status_code=500,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": f"http_{exc.status_code}", "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
