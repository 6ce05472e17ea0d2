# SPDX-License-Identifier: AGPL-3.0-only
"""Fixtures for the contract tests: one deployment per session, one anchor per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boa
import pytest

from tests.unit.contracts.chain import BUYER_KEY, PRICE, Mercato, digests, mercato


@pytest.fixture(scope="session")
def chain() -> Mercato:
    return mercato()


@pytest.fixture(autouse=True)
def _isolate(chain: Mercato) -> Iterator[None]:
    # Everything a test does (transactions, time travel, chain id) is undone after it.
    with boa.env.anchor():
        yield


@pytest.fixture
def token(chain: Mercato) -> Any:
    return chain.token


@pytest.fixture
def registry(chain: Mercato) -> Any:
    return chain.registry


@pytest.fixture
def marketplace(chain: Mercato) -> Any:
    return chain.marketplace


@pytest.fixture
def reviews(chain: Mercato) -> Any:
    return chain.reviews


@pytest.fixture
def deployer(chain: Mercato) -> str:
    """Deploys the contracts, owns the protocol and holds the token's minter role."""
    return chain.deployer


@pytest.fixture
def alice(chain: Mercato) -> str:
    return chain.accounts[0]


@pytest.fixture
def bob(chain: Mercato) -> str:
    return chain.accounts[1]


@pytest.fixture
def carol(chain: Mercato) -> str:
    return chain.accounts[2]


@pytest.fixture
def dave(chain: Mercato) -> str:
    return chain.accounts[3]


@pytest.fixture
def signer(chain: Mercato) -> str:
    """A funded account whose private key the tests hold, to sign permits."""
    return chain.signer


@pytest.fixture
def stranger() -> str:
    """An account with no tokens and no role."""
    return str(boa.env.generate_address())


@pytest.fixture
def model(registry: Any, alice: str) -> int:
    """A model alice published directly in the registry (not listed)."""
    with boa.env.prank(alice):
        return int(registry.publish(*digests(1), [], []))


@pytest.fixture
def listed(marketplace: Any, alice: str) -> int:
    """A model alice published and listed at `PRICE`, perpetual license."""
    with boa.env.prank(alice):
        return int(marketplace.publish(*digests(2), [], [], PRICE, 0))


@pytest.fixture
def approve_all(token: Any, marketplace: Any, chain: Mercato) -> None:
    """Every funded account lets the marketplace spend all its tokens."""
    for account in (*chain.accounts, chain.signer):
        with boa.env.prank(account):
            token.approve(marketplace.address, 2**256 - 1)


@pytest.fixture
def pending(marketplace: Any, listed: int, bob: str, approve_all: None) -> int:
    """Bob's pending purchase of `listed`; returns the model id."""
    with boa.env.prank(bob):
        marketplace.purchase(listed, PRICE, BUYER_KEY)
    return listed
