# SPDX-License-Identifier: AGPL-3.0-only
"""Dependencies every router shares: the gateway state and the signed-in wallet.

A session is read from `Authorization: Bearer <token>` or, for the web pages, from the
`mercato_session` cookie; either way it must be signed by this node, unexpired, not
logged out and for this node's chain.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from mercato.errors import SessionRequiredError
from mercato.gateway.sessions import SESSION_COOKIE, Session
from mercato.gateway.state import GatewayState


def get_state(request: Request) -> GatewayState:
    """The state of the app serving the request."""
    state: GatewayState = request.app.state.gateway
    return state


State = Annotated[GatewayState, Depends(get_state)]

# The index keeps ids in 64-bit SQL integers; a larger (or negative) id names nothing,
# and is refused as invalid instead of overflowing the database driver.
MAX_ID = 2**63 - 1
ModelId = Annotated[int, Path(ge=0, le=MAX_ID, description="A model's id.")]
VersionNumber = Annotated[int, Path(ge=0, le=MAX_ID, description="A version's number.")]


def request_token(request: Request) -> str:
    """The session token a request carries (bearer first, then cookie), or ''."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return token or request.cookies.get(SESSION_COOKIE, "")


def optional_session(request: Request, state: State) -> Session | None:
    """The signed-in wallet, or None."""
    token = request_token(request)
    if not token:
        return None
    session = state.sessions.check(token)
    if session is None or session.chain_id != state.chain_id:
        return None
    return session


def require_session(session: Annotated[Session | None, Depends(optional_session)]) -> Session:
    """The signed-in wallet.

    Raises:
        SessionRequiredError: No valid session came with the request.
    """
    if session is None:
        raise SessionRequiredError("do this")
    return session


OptionalSession = Annotated[Session | None, Depends(optional_session)]
RequiredSession = Annotated[Session, Depends(require_session)]
