# SPDX-License-Identifier: AGPL-3.0-only
"""The Mercato SDK: one entry point, `Market`, with sub-APIs for models, orders, reviews
and the wallet. See `mercato.client.market` for an example."""

from mercato.client.market import Market
from mercato.client.models import ModelInfo, PublishedVersion, VersionInfo
from mercato.client.orders import Order
from mercato.client.reviews import Evaluation, History, Review

__all__ = [
    "Evaluation",
    "History",
    "Market",
    "ModelInfo",
    "Order",
    "PublishedVersion",
    "Review",
    "VersionInfo",
]
