# SPDX-License-Identifier: AGPL-3.0-only
"""The seller's agent: delivers content keys for the purchases of the models a node sells."""

from mercato.agent.seller import PendingOrder, SellerAgent

__all__ = ["PendingOrder", "SellerAgent"]
