# SPDX-License-Identifier: AGPL-3.0-only
"""Sessions after sign-in: an HMAC-signed token, sent as a cookie or a bearer token.

    token = base64url(JSON {"a": address, "c": chain id, "e": expiry}) "." base64url(HMAC)

The token says which wallet signed in, for which chain, until when; nothing else is
kept on the server, so any worker can check it. The HMAC key is random per node and
kept in the data directory, so sessions survive a restart:

    <data dir>/gateway/
    └── session.key     32 random bytes, mode 0600
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SESSION_COOKIE = "mercato_session"
SESSION_LIFETIME = 24 * 3600  # seconds


@dataclass(frozen=True)
class Session:
    """A signed-in wallet."""

    address: str
    chain_id: int
    expires: int  # unix time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_session_key(data_dir: Path) -> bytes:
    """The node's session HMAC key, created on first use (see the module docstring)."""
    path = data_dir / "gateway" / "session.key"
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


class SessionSigner:
    """Issues and checks session tokens with one HMAC key."""

    def __init__(self, key: bytes, lifetime: int = SESSION_LIFETIME) -> None:
        self._key = key
        self.lifetime = lifetime

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, address: str, chain_id: int, now: float | None = None) -> str:
        """A token for `address` on `chain_id`, valid for `lifetime` seconds."""
        expires = int((time.time() if now is None else now) + self.lifetime)
        payload = json.dumps({"a": address, "c": chain_id, "e": expires}, separators=(",", ":"))
        body = _b64(payload.encode())
        return f"{body}.{self._mac(body)}"

    def check(self, token: str, now: float | None = None) -> Session | None:
        """The session a token stands for, or None when it is forged, damaged or expired."""
        body, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(str(data["a"]), int(data["c"]), int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session
