# SPDX-License-Identifier: AGPL-3.0-only
"""`free_port` hands out ports a server can still bind a few seconds later: below the
kernel's ephemeral range (where outgoing connections take their local ports), and never
the same one twice in a process (a node's Anvil and gateway are set up together)."""

from __future__ import annotations

import socket

import pytest

from mercato.chain import anvil
from mercato.chain.anvil import _ephemeral_range, free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    low, high = _ephemeral_range()
    assert 0 < low <= high
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(10_000 <= port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # still free: nothing kept it


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as other:  # another program's server, not one of ours
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            spare = probe.getsockname()[1]
        candidates = iter([taken, spare])
        monkeypatch.setattr(anvil.random, "randrange", lambda *_: next(candidates))
        assert free_port() == spare
