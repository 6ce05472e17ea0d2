# SPDX-License-Identifier: AGPL-3.0-only
"""Fixtures for the storage unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercato.storage.blockstore import Blockstore


@pytest.fixture
def store(tmp_path: Path) -> Blockstore:
    return Blockstore(tmp_path / "store")
