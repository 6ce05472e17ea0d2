# SPDX-License-Identifier: AGPL-3.0-only
"""Shared fixtures of the integration tier: real processes (Anvil) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, free_port


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[AnvilSupervisor]:
    """A fresh Anvil with its state in a temporary data directory."""
    supervisor = AnvilSupervisor(tmp_path / "node", port=free_port())
    supervisor.start()
    yield supervisor
    supervisor.stop()


@pytest.fixture
def w3(anvil: AnvilSupervisor) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url))
