# SPDX-License-Identifier: AGPL-3.0-only
"""Sign-In with Ethereum (EIP-4361), built and parsed here, verified with eth-account.

The `siwe` package does not import with current `abnf`, and the format is small, so the
message is written and read by hand, field by field, in the order the EIP fixes::

    {domain} wants you to sign in with your Ethereum account:
    {address}                                   # EIP-55 checksummed
    <blank>
    {statement}                                 # optional: line and blank line
    <blank>
    URI: {uri}
    Version: 1
    Chain ID: {chain_id}
    Nonce: {nonce}                              # >= 8 alphanumerics, issued by us
    Issued At: {RFC 3339}
    Expiration Time: {RFC 3339}                 # optional (we always set one)
    Not Before: {RFC 3339}                      # optional
    Request ID: {id}                            # optional
    Resources:                                  # optional, then "- {uri}" lines

`SiweVerifier.verify` refuses a message unless its domain is one this node answers
for, its chain is this node's chain, it is inside its validity window, its nonce was
issued here and not used before (nonces are single use, so a captured message cannot be
replayed), and the EIP-191 signature recovers to its address.

Nonces are stateless: each carries its expiry and an HMAC under a key this process
draws at start, so issuing one stores nothing and no flood of requests for nonces can
push out another client's. Only a nonce whose sign-in succeeded is remembered, until it
expires, to refuse its replay; a restart forgets those and, with its new key, refuses
every nonce issued before it.

    nonce = hex(8 random bytes) hex(expiry, 10 digits) hex(HMAC-SHA256[:16])   (58 chars)
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature, ValidationError
from eth_utils import is_checksum_address, to_checksum_address

from mercato.errors import (
    RateLimitedError,
    SiweChainError,
    SiweDomainError,
    SiweExpiredError,
    SiweMessageError,
    SiweNonceError,
    SiweSignatureError,
)

STATEMENT = "Sign in to the Mercato marketplace. This costs nothing and sends no transaction."
NONCE_TTL = 600  # seconds a nonce may wait to be used
# Used nonces remembered at most (each until it expires); past that, sign-ins wait.
MAX_USED_NONCES = 200_000
MESSAGE_LIFETIME = timedelta(minutes=10)
_NONCE = re.compile(r"^[A-Za-z0-9]{8,}$")
_HEADER = " wants you to sign in with your Ethereum account:"
_OPTIONAL_FIELDS = ("Expiration Time", "Not Before", "Request ID")


@dataclass(frozen=True)
class SiweMessage:
    """One EIP-4361 message; `text()` gives the exact bytes a wallet signs."""

    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    statement: str | None = None
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str | None = None
    version: str = "1"
    resources: tuple[str, ...] = ()

    def text(self) -> str:
        """The message as the EIP lays it out (LF line ends, no trailing newline)."""
        lines = [f"{self.domain}{_HEADER}", self.address, ""]
        if self.statement is not None:
            lines += [self.statement, ""]
        lines += [
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {_rfc3339(self.issued_at)}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {_rfc3339(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_rfc3339(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(field: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SiweMessageError(f"{field} {value!r} is not an RFC 3339 time") from exc
    if parsed.tzinfo is None:
        raise SiweMessageError(f"{field} {value!r} has no time zone")
    return parsed


def _field(lines: list[str], index: int, name: str) -> str:
    prefix = f"{name}: "
    if index >= len(lines) or not lines[index].startswith(prefix):
        raise SiweMessageError(f"line {index + 1} should be '{prefix}...'")
    return lines[index][len(prefix) :]


def parse_message(text: str) -> SiweMessage:
    """Parses an EIP-4361 message.

    Args:
        text: The signed text.

    Returns:
        The message's fields.

    Raises:
        SiweMessageError: The text does not follow EIP-4361.
    """
    lines = text.split("\n")
    if len(lines) < 8 or not lines[0].endswith(_HEADER):
        raise SiweMessageError("it does not start with '<domain> wants you to sign in...'")
    domain = lines[0][: -len(_HEADER)]
    if not domain or " " in domain or "/" in domain:
        raise SiweMessageError(f"the domain {domain!r} is not a host[:port]")
    address = lines[1]
    if not is_checksum_address(address):
        raise SiweMessageError(f"{address!r} is not an EIP-55 checksummed address")
    if lines[2] != "":
        raise SiweMessageError("a blank line must follow the address")
    i = 3
    statement = None
    if not lines[i].startswith("URI: "):
        statement = lines[i]
        if i + 1 >= len(lines) or lines[i + 1] != "":
            raise SiweMessageError("a blank line must follow the statement")
        i += 2
    uri = _field(lines, i, "URI")
    version = _field(lines, i + 1, "Version")
    if version != "1":
        raise SiweMessageError(f"version {version!r} is not 1")
    chain_text = _field(lines, i + 2, "Chain ID")
    if not chain_text.isdigit():
        raise SiweMessageError(f"the chain id {chain_text!r} is not a number")
    nonce = _field(lines, i + 3, "Nonce")
    if not _NONCE.match(nonce):
        raise SiweMessageError("the nonce must be at least 8 letters or digits")
    issued_at = _parse_time("Issued At", _field(lines, i + 4, "Issued At"))
    i += 5
    optional: dict[str, str] = {}
    for name in _OPTIONAL_FIELDS:
        if i < len(lines) and lines[i].startswith(f"{name}: "):
            optional[name] = _field(lines, i, name)
            i += 1
    resources: list[str] = []
    if i < len(lines) and lines[i] == "Resources:":
        i += 1
        while i < len(lines) and lines[i].startswith("- "):
            resources.append(lines[i][2:])
            i += 1
    if i != len(lines):
        raise SiweMessageError(f"line {i + 1} ({lines[i][:40]!r}) is not an EIP-4361 field")
    expires = optional.get("Expiration Time")
    not_before = optional.get("Not Before")
    return SiweMessage(
        domain=domain,
        address=address,
        uri=uri,
        chain_id=int(chain_text),
        nonce=nonce,
        issued_at=issued_at,
        statement=statement,
        expiration_time=_parse_time("Expiration Time", expires) if expires else None,
        not_before=_parse_time("Not Before", not_before) if not_before else None,
        request_id=optional.get("Request ID"),
        version=version,
        resources=tuple(resources),
    )


class NonceStore:
    """Issues signed, expiring nonces and accepts each once (see the module docstring)."""

    def __init__(
        self,
        ttl: int = NONCE_TTL,
        max_used: int = MAX_USED_NONCES,
        key: bytes | None = None,
    ) -> None:
        self.ttl = ttl
        self.max_used = max_used
        self._key = key or secrets.token_bytes(32)
        self._used: set[str] = set()
        self._expiries: list[tuple[int, str]] = []  # a heap, to forget used nonces in time
        self._lock = threading.Lock()

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, now: float | None = None) -> str:
        """A fresh nonce, valid for `ttl` seconds (hex, alphanumeric as EIP-4361 requires)."""
        expires = int((time.time() if now is None else now) + self.ttl)
        body = secrets.token_hex(8) + f"{expires:010x}"
        return body + self._mac(body)

    def check(self, nonce: str, now: float | None = None) -> None:
        """Checks a nonce without using it up.

        Raises:
            SiweNonceError: Not issued by this process, expired, or already used.
        """
        body, mac = nonce[:26], nonce[26:]
        if len(nonce) != 58 or not nonce.isascii() or not hmac.compare_digest(mac, self._mac(body)):
            raise SiweNonceError("the nonce was not issued by this node (or it restarted since)")
        if int(body[16:], 16) <= (time.time() if now is None else now):
            raise SiweNonceError("the nonce is too old")
        if nonce in self._used:
            raise SiweNonceError("the nonce was already used")

    def consume(self, nonce: str, now: float | None = None) -> None:
        """Checks a nonce and marks it used, at once.

        Raises:
            SiweNonceError: As `check`.
            RateLimitedError: So many sign-ins succeeded within one TTL that no more
                used nonces can be remembered; refusing is safer than forgetting one.
        """
        moment = time.time() if now is None else now
        with self._lock:
            self.check(nonce, moment)
            while self._expiries and self._expiries[0][0] <= moment:
                self._used.discard(heapq.heappop(self._expiries)[1])
            if len(self._used) >= self.max_used:
                raise RateLimitedError("sign-ins on this node", self._expiries[0][0] - moment)
            self._used.add(nonce)
            heapq.heappush(self._expiries, (int(nonce[16:26], 16), nonce))


class SiweVerifier:
    """Builds sign-in messages for this node and verifies signed ones."""

    def __init__(self, domains: set[str], chain_id: int, nonces: NonceStore | None = None):
        self.domains = domains
        self.chain_id = chain_id
        self.nonces = nonces or NonceStore()

    def prepare(self, address: str, domain: str, uri: str, now: datetime | None = None) -> str:
        """A new message for `address` to sign, with a fresh nonce and a 10-minute window.

        Raises:
            SiweMessageError: `address` is not an Ethereum address.
            SiweDomainError: `domain` is not one this node answers for.
        """
        if domain not in self.domains:
            raise SiweDomainError(f"this node does not sign in for {domain!r}")
        try:
            checksummed = to_checksum_address(address)
        except ValueError as exc:
            raise SiweMessageError(f"{address!r} is not an Ethereum address") from exc
        issued = now or datetime.now(UTC)
        return SiweMessage(
            domain=domain,
            address=checksummed,
            uri=uri,
            chain_id=self.chain_id,
            nonce=self.nonces.issue(issued.timestamp()),
            issued_at=issued,
            statement=STATEMENT,
            expiration_time=issued + MESSAGE_LIFETIME,
        ).text()

    def verify(self, text: str, signature: str, now: datetime | None = None) -> SiweMessage:
        """Checks a signed sign-in message; its nonce is used up once the signature checks.

        Args:
            text: The exact message the wallet signed.
            signature: The EIP-191 signature, 0x-hex.
            now: The current time (for tests).

        Returns:
            The verified message (its `address` is the signed-in wallet).

        Raises:
            SiweMessageError: Not an EIP-4361 message.
            SiweDomainError: Made for another site.
            SiweChainError: Made for another chain.
            SiweNonceError: The nonce is unknown, expired or used (a replay).
            SiweExpiredError: Outside its validity window.
            SiweSignatureError: The signature is not the address's.
            RateLimitedError: Too many sign-ins succeeded lately (see `NonceStore.consume`).
        """
        message = parse_message(text)
        if message.domain not in self.domains:
            raise SiweDomainError(f"the message is for {message.domain!r}, not this site")
        if message.chain_id != self.chain_id:
            raise SiweChainError(
                f"the message is for chain {message.chain_id}, this node serves {self.chain_id}"
            )
        moment = now or datetime.now(UTC)
        if message.expiration_time is not None and moment >= message.expiration_time:
            raise SiweExpiredError("the message has expired")
        if message.not_before is not None and moment < message.not_before:
            raise SiweExpiredError("the message is not valid yet")
        # Checked before the costly signature recovery; used up only after it, so
        # requests without a valid signature cannot fill the memory of used nonces.
        self.nonces.check(message.nonce, moment.timestamp())
        try:
            signer = Account.recover_message(encode_defunct(text=text), signature=signature)
        except (BadSignature, ValidationError, ValueError, TypeError) as exc:
            raise SiweSignatureError(f"the signature is malformed ({exc})") from exc
        if signer != message.address:
            raise SiweSignatureError(f"the signature is by {signer}, not {message.address}")
        self.nonces.consume(message.nonce, moment.timestamp())
        return message
