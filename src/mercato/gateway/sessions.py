# SPDX-License-Identifier: AGPL-3.0-only
"""Sessions after sign-in: an HMAC-signed token, sent as a cookie or a bearer token.

    token = base64url(JSON {"a": address, "c": chain id, "e": expiry, "s": session id})
            "." base64url(HMAC)

The token says which wallet signed in, for which chain, until when. The HMAC key is
random per node and kept in the data directory, so sessions survive a restart. Logging
out revokes the token on the server: its session id is remembered until the token
would have expired anyway, also across restarts:

    <data dir>/gateway/
    ├── session.key     32 random bytes, mode 0600
    └── revoked         one "<session id> <expiry>" line per logged-out session
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mercato.errors import RateLimitedError

SESSION_COOKIE = "mercato_session"
SESSION_LIFETIME = 24 * 3600  # seconds
# Logged-out sessions remembered at most (each until its token expires).
MAX_REVOKED = 200_000


@dataclass(frozen=True)
class Session:
    """A signed-in wallet."""

    address: str
    chain_id: int
    expires: int  # unix time
    session_id: str = ""


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


class RevokedSessions:
    """Session ids logged out before their tokens expired (see the module docstring).

    Args:
        path: The file that keeps them across restarts; None keeps them in memory only.
        capacity: Most ids remembered at once.
    """

    def __init__(self, path: Path | None = None, capacity: int = MAX_REVOKED) -> None:
        self.path = path
        self.capacity = capacity
        self._expiry: dict[str, int] = {}
        self._lock = threading.Lock()
        if path is not None and path.exists():
            now = time.time()
            for line in path.read_text(errors="replace").splitlines():
                session_id, _, expires = line.partition(" ")
                if expires.isdigit() and int(expires) > now:
                    self._expiry[session_id] = int(expires)
            self._rewrite()  # drops what expired while the node was down

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._expiry

    def revoke(self, session_id: str, expires: int, now: float | None = None) -> None:
        """Refuses the session from now until `expires`.

        Raises:
            RateLimitedError: `capacity` sessions were logged out within one token
                lifetime; forgetting one would bring it back, so the logout is refused.
        """
        moment = time.time() if now is None else now
        with self._lock:
            if len(self._expiry) >= self.capacity:
                self._expiry = {k: e for k, e in self._expiry.items() if e > moment}
                self._rewrite()
            if len(self._expiry) >= self.capacity:
                raise RateLimitedError("logouts on this node", min(self._expiry.values()) - moment)
            self._expiry[session_id] = expires
            if self.path is not None:
                with self.path.open("a") as log:
                    log.write(f"{session_id} {expires}\n")
                    log.flush()
                    os.fsync(log.fileno())

    def _rewrite(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{k} {e}\n" for k, e in self._expiry.items()))
        os.replace(tmp, self.path)


class SessionSigner:
    """Issues and checks session tokens with one HMAC key."""

    def __init__(
        self,
        key: bytes,
        lifetime: int = SESSION_LIFETIME,
        revoked: RevokedSessions | None = None,
    ) -> None:
        self._key = key
        self.lifetime = lifetime
        self.revoked = revoked if revoked is not None else RevokedSessions()

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, address: str, chain_id: int, now: float | None = None) -> str:
        """A token for `address` on `chain_id`, valid for `lifetime` seconds."""
        expires = int((time.time() if now is None else now) + self.lifetime)
        payload = json.dumps(
            {"a": address, "c": chain_id, "e": expires, "s": secrets.token_urlsafe(16)},
            separators=(",", ":"),
        )
        body = _b64(payload.encode())
        return f"{body}.{self._mac(body)}"

    def check(self, token: str, now: float | None = None) -> Session | None:
        """The session a token stands for, or None when it is forged, damaged, expired
        or logged out."""
        body, _, mac = token.partition(".")
        if not mac or not token.isascii() or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            session = Session(str(data["a"]), int(data["c"]), int(data["e"]), str(data["s"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        if session.session_id in self.revoked:
            return None
        return session

    def revoke(self, token: str, now: float | None = None) -> Session | None:
        """Logs a token's session out on this node for good.

        Returns:
            The session ended, or None when the token was not a live session.

        Raises:
            RateLimitedError: As `RevokedSessions.revoke`.
        """
        session = self.check(token, now)
        if session is not None:
            self.revoked.revoke(session.session_id, session.expires, now)
        return session
