# SPDX-License-Identifier: AGPL-3.0-only
"""The marketplace index: contract events turned into SQL, and search over it.

The chain is the source of truth; this is a cache of its events that can always be
deleted and rebuilt. `Indexer` writes (following the chain, surviving reorgs and
restarts); `Index` reads (search, model pages, orders, earnings).
"""

from mercato.index.ingest import Indexer, IndexerConfig, SyncReport
from mercato.index.metadata import DictMetadataSource, MetadataSource, ModelMetadata
from mercato.index.search import ModelSummary, SearchPage, SearchQuery, Sort
from mercato.index.store import (
    CreatorInfo,
    CreditInfo,
    Earnings,
    EvaluationInfo,
    Index,
    LineageInfo,
    ModelDetail,
    OrderInfo,
    ReviewInfo,
    VersionInfo,
)

__all__ = [
    "CreatorInfo",
    "CreditInfo",
    "DictMetadataSource",
    "Earnings",
    "EvaluationInfo",
    "Index",
    "Indexer",
    "IndexerConfig",
    "LineageInfo",
    "MetadataSource",
    "ModelDetail",
    "ModelMetadata",
    "ModelSummary",
    "OrderInfo",
    "ReviewInfo",
    "SearchPage",
    "SearchQuery",
    "Sort",
    "SyncReport",
    "VersionInfo",
]
