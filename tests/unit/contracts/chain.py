# SPDX-License-Identifier: AGPL-3.0-only
"""The deployed contracts and the helpers every contract test shares.

`mercato()` deploys once per test session with the same `deploy()` the node runs, on
titanoboa's in-process EVM; tests then run inside `boa.env.anchor()` so each starts
from that fresh deployment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import boa
import pytest
from boa.contracts.base_evm_contract import BoaError
from eth.exceptions import Revert
from eth_abi import decode
from eth_account import Account
from eth_account.messages import encode_typed_data

from mercato.chain.artifacts import load_artifact
from mercato.chain.boa_backend import BoaBackend
from mercato.chain.deployment import TOKEN_UNIT, Deployment, deploy

LOCAL_CHAIN_ID = 31_337
DELIVERY_WINDOW = 3_600
FUNDED = 10_000 * TOKEN_UNIT
PRICE = 100 * TOKEN_UNIT
# A fixed key so permits can be signed; the other accounts never sign anything.
SIGNER_KEY = bytes.fromhex("5e" * 32)
ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
BUYER_KEY = bytes(range(32))  # an X25519 public key stands in as 32 arbitrary bytes
WRAPPED_KEY = bytes(range(80))  # a sealed box of a 32-byte key is 80 bytes


@dataclass(frozen=True)
class Mercato:
    deployment: Deployment
    token: Any
    registry: Any
    marketplace: Any
    reviews: Any
    deployer: str
    accounts: tuple[str, ...]
    signer: str


@cache
def mercato() -> Mercato:
    """Deploys once; call it outside any anchor so the deployment persists."""
    boa.env.evm.patch.chain_id = LOCAL_CHAIN_ID
    accounts = tuple(str(boa.env.generate_address()) for _ in range(5))
    signer = Account.from_key(SIGNER_KEY).address
    deployment = deploy(BoaBackend(), fund=[*accounts, signer], delivery_window=DELIVERY_WINDOW)
    return Mercato(
        deployment=deployment,
        token=BoaBackend.at(load_artifact("token"), deployment.token),
        registry=BoaBackend.at(load_artifact("model_registry"), deployment.model_registry),
        marketplace=BoaBackend.at(load_artifact("marketplace"), deployment.marketplace),
        reviews=BoaBackend.at(load_artifact("reviews"), deployment.reviews),
        deployer=deployment.deployer,
        accounts=accounts,
        signer=signer,
    )


def terms(max_price: int, duration: int = 0, fee_bps: int = 0) -> int:
    """The `terms` word of a purchase: what the buyer pays at most and the listing it saw."""
    return max_price | (duration << 96) | (fee_bps << 136)


def digests(seed: int) -> tuple[bytes, bytes, bytes]:
    """Three distinct, non-zero 32-byte digests of one version."""
    return tuple(((3 * seed + i + 1) << 8).to_bytes(32, "big") for i in range(3))  # type: ignore[return-value]


@contextlib.contextmanager
def reverts(reason: str) -> Iterator[None]:
    """Expects the call inside to revert with exactly `reason` as its Error(string).

    Stricter than `boa.reverts`, which for ABI-only contracts accepts any text that
    contains the expected one.
    """
    with pytest.raises(BoaError) as info:
        yield
    assert revert_reason(bytes(info.value.call_trace.output)) == reason


@contextlib.contextmanager
def constructor_reverts(reason: str) -> Iterator[None]:
    """Expects a contract creation inside to revert with exactly `reason`."""
    with pytest.raises(Revert) as info:
        yield
    assert revert_reason(bytes(info.value.args[0])) == reason


def revert_reason(output: bytes) -> str:
    assert output[:4] == ERROR_SELECTOR, f"reverted without a reason string: {output.hex()}"
    (reason,) = decode(["string"], output[4:])
    return str(reason)


@contextlib.contextmanager
def reverts_without_reason() -> Iterator[None]:
    """Expects the call inside to revert with empty return data."""
    with pytest.raises(BoaError) as info:
        yield
    assert bytes(info.value.call_trace.output) == b""


def events(contract: Any, name: str) -> list[Any]:
    """The `name` events of `contract`'s last call (logs of every contract it reached).

    boa remembers only the last call on each handle, views included: read the events
    right after the transaction, before calling a view on the same handle.
    """
    return [e for e in contract.get_logs() if type(e).__name__ == name]


def only_event(contract: Any, name: str) -> Any:
    found = events(contract, name)
    assert len(found) == 1, f"expected one {name} event, got {found}"
    return found[0]


def permit_message(
    token: Any, owner: str, spender: str, value: int, nonce: int, deadline: int
) -> Any:
    return encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": "Mercato Token",
                "version": "1",
                "chainId": LOCAL_CHAIN_ID,
                "verifyingContract": str(token.address),
            },
            "message": {
                "owner": owner,
                "spender": spender,
                "value": value,
                "nonce": nonce,
                "deadline": deadline,
            },
        }
    )


def sign_permit(
    token: Any, spender: str, value: int, deadline: int, key: bytes = SIGNER_KEY
) -> tuple[int, bytes, bytes]:
    """An EIP-2612 permit signed by `key` on its current nonce: (v, r, s)."""
    owner = Account.from_key(key).address
    message = permit_message(token, owner, spender, value, token.nonces(owner), deadline)
    signed = Account.sign_message(message, key)
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")
