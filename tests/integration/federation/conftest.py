# SPDX-License-Identifier: AGPL-3.0-only
"""A real SuperLink on loopback for the tests over Flower processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mercato.chain.anvil import free_port
from mercato.federation.runtime import SuperLink


@pytest.fixture
def superlink(tmp_path: Path) -> Iterator[SuperLink]:
    """A started SuperLink with TLS and SuperNode authentication (its own data dir)."""
    link = SuperLink(tmp_path / "link", port=free_port())
    link.start()
    yield link
    link.stop()
