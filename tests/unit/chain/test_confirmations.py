# SPDX-License-Identifier: AGPL-3.0-only
"""How deep an event must be before the index trusts it, by chain, when unset."""

from __future__ import annotations

from mercato.config import CHAIN_CONFIRMATIONS, UNKNOWN_CHAIN_CONFIRMATIONS, default_confirmations


def test_each_kind_of_chain_gets_its_own_depth() -> None:
    assert default_confirmations(31_337) == default_confirmations(1_337) == 0  # local
    assert default_confirmations(1) == 12  # Ethereum
    assert default_confirmations(8_453) == default_confirmations(10) == 30  # OP Stack
    assert default_confirmations(42_161) == 120  # Arbitrum One
    assert default_confirmations(137) == 64  # Polygon PoS
    assert default_confirmations(123_456_789) == UNKNOWN_CHAIN_CONFIRMATIONS == 12
    assert 31_337 not in CHAIN_CONFIRMATIONS and all(v > 0 for v in CHAIN_CONFIRMATIONS.values())
