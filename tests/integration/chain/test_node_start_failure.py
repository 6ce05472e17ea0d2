# SPDX-License-Identifier: AGPL-3.0-only
"""A node that fails to start stops what it had already started: no stray Anvil."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mercato.chain.anvil import free_port
from mercato.config import Settings
from mercato.errors import GatewayStartError
from mercato.node import Node


def test_taken_gateway_port_is_a_typed_error_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        gateway_port = taken.getsockname()[1]
        anvil_port = free_port()
        node = Node(
            Settings(data_dir=tmp_path, anvil_port=anvil_port, gateway_port=gateway_port),
            accounts=[],
            try_workers=1,
        )
        with pytest.raises(GatewayStartError) as caught:
            node.start()
    assert caught.value.port == gateway_port
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", anvil_port)) != 0  # Anvil was stopped
    assert (tmp_path / "deployments" / "31337.json").exists()  # and its chain was kept
