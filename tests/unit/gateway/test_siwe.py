# SPDX-License-Identifier: AGPL-3.0-only
"""Sign-In with Ethereum: message format, and every way a sign-in is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from mercato.errors import (
    SiweChainError,
    SiweDomainError,
    SiweExpiredError,
    SiweMessageError,
    SiweNonceError,
    SiweSignatureError,
)
from mercato.gateway.sessions import SessionSigner
from mercato.gateway.siwe import SiweMessage, SiweVerifier, parse_message

ALICE = Account.from_key("0x" + "11" * 32)
MALLORY = Account.from_key("0x" + "22" * 32)
DOMAIN = "market.example:8700"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def sign(text: str, account: object = ALICE) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()  # type: ignore[attr-defined]


@pytest.fixture
def verifier() -> SiweVerifier:
    return SiweVerifier({DOMAIN}, chain_id=31337)


def test_message_matches_eip4361_layout() -> None:
    message = SiweMessage(
        domain="example.com",
        address=ALICE.address,
        uri="https://example.com/login",
        chain_id=1,
        nonce="32891756",
        issued_at=datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC),
        statement="I accept the ExampleOrg Terms of Service: https://example.com/tos",
        resources=("ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",),
    )
    assert message.text() == (
        "example.com wants you to sign in with your Ethereum account:\n"
        f"{ALICE.address}\n\n"
        "I accept the ExampleOrg Terms of Service: https://example.com/tos\n\n"
        "URI: https://example.com/login\nVersion: 1\nChain ID: 1\nNonce: 32891756\n"
        "Issued At: 2021-09-30T16:25:24Z\nResources:\n"
        "- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/"
    )
    assert parse_message(message.text()) == message


def test_message_without_statement_round_trips() -> None:
    message = SiweMessage(DOMAIN, ALICE.address, "http://x", 5, "abcdefgh12", NOW)
    assert "\n\n\nURI:" not in message.text()
    assert parse_message(message.text()) == message


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.replace(" wants you", " would like you"),
        lambda t: t.replace(ALICE.address, ALICE.address.lower()),  # not EIP-55
        lambda t: t.replace("Version: 1", "Version: 2"),
        lambda t: t + "\nSomething: else",
        lambda t: t.replace("Chain ID: 31337", "Chain ID: one"),
    ],
)
def test_malformed_messages_are_refused(verifier: SiweVerifier, damage: object) -> None:
    text = damage(verifier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW))  # type: ignore[operator]
    with pytest.raises(SiweMessageError):
        verifier.verify(text, sign(text), now=NOW)


def test_a_good_sign_in_succeeds_once(verifier: SiweVerifier) -> None:
    text = verifier.prepare(ALICE.address, DOMAIN, f"http://{DOMAIN}", now=NOW)
    assert verifier.verify(text, sign(text), now=NOW).address == ALICE.address
    with pytest.raises(SiweNonceError):  # the same signed message again: a replay
        verifier.verify(text, sign(text), now=NOW)


def test_expired_message_is_refused(verifier: SiweVerifier) -> None:
    text = verifier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW)
    with pytest.raises(SiweExpiredError):
        verifier.verify(text, sign(text), now=NOW + timedelta(minutes=11))


def test_not_yet_valid_message_is_refused(verifier: SiweVerifier) -> None:
    nonce = verifier.nonces.issue()
    text = SiweMessage(
        DOMAIN, ALICE.address, "http://x", 31337, nonce, NOW, not_before=NOW + timedelta(hours=1)
    ).text()
    with pytest.raises(SiweExpiredError):
        verifier.verify(text, sign(text), now=NOW)


def test_wrong_domain_is_refused(verifier: SiweVerifier) -> None:
    nonce = verifier.nonces.issue()
    text = SiweMessage("evil.example", ALICE.address, "http://evil", 31337, nonce, NOW).text()
    with pytest.raises(SiweDomainError):
        verifier.verify(text, sign(text), now=NOW)
    with pytest.raises(SiweDomainError):
        verifier.prepare(ALICE.address, "evil.example", "http://evil")


def test_wrong_chain_is_refused(verifier: SiweVerifier) -> None:
    nonce = verifier.nonces.issue()
    text = SiweMessage(DOMAIN, ALICE.address, "http://x", 1, nonce, NOW).text()
    with pytest.raises(SiweChainError):
        verifier.verify(text, sign(text), now=NOW)


def test_unknown_nonce_is_refused(verifier: SiweVerifier) -> None:
    text = SiweMessage(DOMAIN, ALICE.address, "http://x", 31337, "madeup123", NOW).text()
    with pytest.raises(SiweNonceError):
        verifier.verify(text, sign(text), now=NOW)


def test_signature_by_another_wallet_is_refused(verifier: SiweVerifier) -> None:
    text = verifier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW)
    with pytest.raises(SiweSignatureError):
        verifier.verify(text, sign(text, MALLORY), now=NOW)
    text = verifier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW)
    with pytest.raises(SiweSignatureError):
        verifier.verify(text, "0x1234", now=NOW)


def test_session_tokens_check_and_expire() -> None:
    signer = SessionSigner(b"k" * 32, lifetime=60)
    token = signer.issue(ALICE.address, 31337, now=1000)
    assert signer.check(token, now=1010) is not None
    assert signer.check(token, now=1061) is None  # expired
    body, mac = token.split(".")
    assert signer.check(body + "x." + mac, now=1010) is None  # altered
    assert SessionSigner(b"o" * 32).check(token, now=1010) is None  # another node's key


def test_try_limits_apply_per_address_and_per_wallet() -> None:
    from mercato.gateway.provider import try_wait
    from mercato.gateway.ratelimit import RateLimiter

    by_address, by_wallet = RateLimiter(2), RateLimiter(1)
    assert try_wait(by_address, by_wallet, "10.0.0.1", "0xabc") == 0
    assert try_wait(by_address, by_wallet, "10.0.0.2", "0xabc") > 0  # same wallet elsewhere
    assert try_wait(by_address, by_wallet, "10.0.0.1", "0xdef") == 0
    assert try_wait(by_address, by_wallet, "10.0.0.1", "0x123") > 0  # address used up


# --- nonces: a flood never pushes out an honest client's -------------------------------


def test_a_nonce_flood_does_not_evict_an_honest_sign_in(verifier: SiweVerifier) -> None:
    honest = verifier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW)
    # More nonces than the old store held (100,000), all asked for by one client.
    for _ in range(100_001):
        verifier.prepare(MALLORY.address, DOMAIN, "http://x", now=NOW)
    assert verifier.verify(honest, sign(honest), now=NOW).address == ALICE.address


def test_a_nonce_from_another_node_or_before_a_restart_is_refused() -> None:
    earlier = SiweVerifier({DOMAIN}, chain_id=31337)  # the process before a restart
    text = earlier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW)
    with pytest.raises(SiweNonceError, match="not issued by this node"):
        SiweVerifier({DOMAIN}, chain_id=31337).verify(text, sign(text), now=NOW)


def test_a_nonce_is_used_up_only_by_a_valid_signature(verifier: SiweVerifier) -> None:
    text = verifier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW)
    for _ in range(3):  # bad signatures neither use the nonce nor fill memory
        with pytest.raises(SiweSignatureError):
            verifier.verify(text, sign(text, MALLORY), now=NOW)
    assert verifier.verify(text, sign(text), now=NOW).address == ALICE.address


def test_when_used_nonces_fill_their_memory_sign_ins_wait_instead_of_forgetting() -> None:
    from mercato.errors import RateLimitedError
    from mercato.gateway.siwe import NonceStore

    verifier = SiweVerifier({DOMAIN}, chain_id=31337, nonces=NonceStore(max_used=2))
    for _ in range(2):
        text = verifier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW)
        verifier.verify(text, sign(text), now=NOW)
    text = verifier.prepare(ALICE.address, DOMAIN, "http://x", now=NOW)
    with pytest.raises(RateLimitedError) as caught:
        verifier.verify(text, sign(text), now=NOW)
    assert caught.value.code == "rate_limited" and caught.value.retry_after > 0
    # Once the remembered nonces expire, sign-ins go through again.
    later = NOW + timedelta(minutes=11)
    text = verifier.prepare(ALICE.address, DOMAIN, "http://x", now=later)
    assert verifier.verify(text, sign(text), now=later).address == ALICE.address


# --- sessions: logging out revokes the token ------------------------------------------


def test_a_revoked_token_is_refused_also_after_a_restart(tmp_path: Path) -> None:
    from mercato.gateway.sessions import RevokedSessions

    revoked = tmp_path / "revoked"
    signer = SessionSigner(b"k" * 32, lifetime=3600, revoked=RevokedSessions(revoked))
    token = signer.issue(ALICE.address, 31337)
    other = signer.issue(ALICE.address, 31337)  # another device's session
    assert signer.revoke(token) is not None
    assert signer.check(token) is None
    assert signer.check(other) is not None
    restarted = SessionSigner(b"k" * 32, lifetime=3600, revoked=RevokedSessions(revoked))
    assert restarted.check(token) is None
    assert restarted.check(other) is not None


def test_a_token_without_a_session_id_is_refused() -> None:
    import base64
    import hashlib
    import hmac
    import json

    key = b"k" * 32
    body = (
        base64.urlsafe_b64encode(json.dumps({"a": ALICE.address, "c": 31337, "e": 2000}).encode())
        .decode()
        .rstrip("=")
    )
    mac = base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest())
    legacy = f"{body}.{mac.decode().rstrip('=')}"  # the old format could not be revoked
    assert SessionSigner(key).check(legacy, now=1000) is None


def test_rate_limiter_forgets_idle_keys() -> None:
    from mercato.gateway.ratelimit import RateLimiter

    limiter = RateLimiter(1, window=60)
    for i in range(5000):  # a fresh key per call, as a spoofed header would give
        limiter.allow(f"key-{i}", now=float(i) / 1000)
    for i in range(5000):
        limiter.allow(f"later-{i}", now=1000.0 + i / 1000)
    assert len(limiter) <= 5000 + 1024
