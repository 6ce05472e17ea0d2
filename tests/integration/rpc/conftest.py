# SPDX-License-Identifier: AGPL-3.0-only
"""A real Anvil behind the stand-in hosted provider of `proxy.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from mercato.chain.anvil import AnvilSupervisor

from .proxy import ProviderLimits, RpcProxy


@pytest.fixture
def provider(anvil: AnvilSupervisor) -> Iterator[Callable[..., RpcProxy]]:
    """Starts stand-in providers in front of the test's Anvil (`provider(rate_429=1)`)."""
    started: list[RpcProxy] = []

    def start(**limits: float) -> RpcProxy:
        proxy = RpcProxy(anvil.rpc_url, ProviderLimits(**limits)).start()  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
