# SPDX-License-Identifier: AGPL-3.0-only
"""JSON error answers with stable codes: `{"error": code, "message": sentence}`."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from mercato import errors

# Most specific first.
_STATUS: tuple[tuple[type[errors.MercatoError], int], ...] = (
    (errors.ModelNotFoundError, 404),
    (errors.ContentKeyMissingError, 404),
    (errors.InferenceInputError, 422),
    (errors.InferenceTimeoutError, 504),
    (errors.InferenceMemoryError, 507),
    (errors.LicenseRequiredError, 403),
    (errors.InferenceError, 500),
    (errors.MercatoError, 400),
)


def error_response(exc: errors.MercatoError) -> JSONResponse:
    """The JSON answer for an error Mercato raised on purpose."""
    status = next(code for kind, code in _STATUS if isinstance(exc, kind))
    return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=status)
