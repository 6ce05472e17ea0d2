# SPDX-License-Identifier: AGPL-3.0-only
"""A demo node (real Anvil, store and gateway) for the NFT tests, as the gateway tests start it."""

from tests.integration.gateway.conftest import demo_node

__all__ = ["demo_node"]
