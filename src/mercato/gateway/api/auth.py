# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/auth`: Sign-In with Ethereum. Ask for a message, sign it, get a session.

POST /v1/auth/nonce   {"address"}              -> {"message", "nonce"}
POST /v1/auth/verify  {"message", "signature"} -> {"address", "token", "expires"}
                                                  + the session cookie
GET  /v1/auth/session                          -> the signed-in wallet, or 401
POST /v1/auth/logout                           -> revokes the session, clears the cookie

Sign-ins are limited per client address (`SIGN_INS_PER_MINUTE`): each costs the node a
signature recovery and, once it succeeds, memory to remember its nonce.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from mercato.errors import RateLimitedError, SessionRequiredError
from mercato.gateway.api.schemas import ErrorOut
from mercato.gateway.dependencies import OptionalSession, State, request_token
from mercato.gateway.sessions import SESSION_COOKIE
from mercato.gateway.siwe import parse_message

router = APIRouter(
    prefix="/v1/auth",
    tags=["auth"],
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)


class NonceIn(BaseModel):
    address: str


class NonceOut(BaseModel):
    message: str
    nonce: str


class VerifyIn(BaseModel):
    message: str
    signature: str


class SessionOut(BaseModel):
    address: str
    chain_id: int
    expires: int
    token: str | None = None


@router.post("/nonce", response_model=NonceOut)
def new_message(body: NonceIn, request: Request, state: State) -> NonceOut:
    """A fresh EIP-4361 message for the wallet to sign, bound to this site and chain."""
    host = request.headers.get("host", "")
    text = state.siwe.prepare(body.address, host, f"{request.url.scheme}://{host}")
    return NonceOut(message=text, nonce=parse_message(text).nonce)


@router.post("/verify", response_model=SessionOut)
def verify(body: VerifyIn, request: Request, response: Response, state: State) -> SessionOut:
    """Checks the signed message and opens a session (cookie and bearer token)."""
    client = request.client.host if request.client else "unknown"
    wait = state.sign_in_by_address.allow(client)
    if wait:
        raise RateLimitedError("sign-ins from your address", wait)
    message = state.siwe.verify(body.message, body.signature)
    token = state.sessions.issue(message.address, message.chain_id)
    session = state.sessions.check(token)
    if session is None:  # pragma: no cover - a token just issued always checks
        raise SessionRequiredError("sign in")
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=state.sessions.lifetime,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return SessionOut(
        address=session.address, chain_id=session.chain_id, expires=session.expires, token=token
    )


@router.get("/session", response_model=SessionOut)
def current(session: OptionalSession) -> SessionOut:
    """The signed-in wallet."""
    if session is None:
        raise SessionRequiredError("see your session")
    return SessionOut(address=session.address, chain_id=session.chain_id, expires=session.expires)


@router.post("/logout", status_code=204)
def logout(request: Request, response: Response, state: State) -> Response:
    """Ends the session on this node: its token (bearer or cookie) is refused from now on."""
    token = request_token(request)
    if token:
        state.sessions.revoke(token)
    response.delete_cookie(SESSION_COOKIE)
    response.status_code = 204
    return response
