# SPDX-License-Identifier: AGPL-3.0-only
"""Fixtures for the wallet unit tests.

Most tests use PBKDF2 with a handful of iterations so that they run in milliseconds;
the tests that are about the KDF itself use scrypt with geth's default cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from mercato.wallet import PasswordSource, Wallet

DATA = Path(__file__).parent / "data"
FAST_KDF: dict[str, Any] = {"kdf": "pbkdf2", "iterations": 2}
PASSWORD = "correct horse battery staple"
# Hardhat/Anvil's first dev key: public test material, never a real secret.
KNOWN_KEY_HEX = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KNOWN_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.fixture
def vectors() -> dict[str, Any]:
    """The Web3 Secret Storage spec's test vectors (password "testpassword")."""
    return json.loads((DATA / "web3_secret_storage_v3_vectors.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture
def wallet(tmp_path: Path) -> Wallet:
    """An empty wallet that writes cheap PBKDF2 keystores."""
    return Wallet(tmp_path / "keystore", **FAST_KDF)


@pytest.fixture
def no_tty_source() -> PasswordSource:
    """A source with nothing to offer: no file, no variable, no terminal."""

    def refuse(_: str) -> str:
        raise AssertionError("the prompt must not be used without a terminal")

    return PasswordSource(environ={}, prompt=refuse, is_interactive=lambda: False)


@pytest.fixture
def write_keystore(tmp_path: Path) -> Callable[[dict[str, Any], str], Path]:
    """Writes a keystore JSON object to a file outside the wallet."""

    def write(data: dict[str, Any], name: str = "export.json") -> Path:
        path = tmp_path / "outside" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(data))
        return path

    return write


@pytest.fixture
def eth_account_keystore() -> Iterator[Callable[[str], dict[str, Any]]]:
    """Makes a keystore of the known key with eth-account's own `Account.encrypt`."""

    def make(kdf: str) -> dict[str, Any]:
        # Cheap but real parameters: the scrypt cost itself is covered in test_wallet.py.
        iterations = 2 if kdf == "pbkdf2" else 2**14
        return Account.encrypt(KNOWN_KEY_HEX, PASSWORD, kdf=kdf, iterations=iterations)  # type: ignore[arg-type]

    yield make
