# SPDX-License-Identifier: AGPL-3.0-only
"""Manifests for the index, fetched by CID and verified block by block.

The chain keeps only each manifest's digest; the bytes live in stores. This source
looks in the node's own store first, then asks the provider of each model whose
versions name that manifest: the URL the model's *current owner* recorded, never one
set by a previous owner or anyone else, under the node's fetch policy and capped at a
manifest's size (see `mercato.client.fetching`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mercato.client.artifacts import cid_from_digest
from mercato.client.fetching import (
    MANIFEST_FETCH_LIMIT,
    MANIFEST_SECONDS,
    MANIFEST_TIMEOUT,
    MAX_MANIFEST,
    fetch_policy,
    owner_provider_urls,
    read_manifest,
    version_directory,
)
from mercato.errors import StorageError
from mercato.storage.backends import GatewayBackend

if TYPE_CHECKING:
    from mercato.client.market import Market

log = logging.getLogger(__name__)

__all__ = ["MAX_MANIFEST", "StoreMetadataSource"]


class StoreMetadataSource:
    """A `mercato.index.MetadataSource` over the local store and the models' providers."""

    def __init__(self, market: Market) -> None:
        self._market = market

    def manifest(self, digest: bytes) -> Mapping[str, Any] | None:
        cid = cid_from_digest(digest)
        store = self._market.store
        if not store.is_pinned(cid):
            policy = fetch_policy(self._market)
            for url in self.provider_urls(digest):
                try:
                    with policy.client(MANIFEST_TIMEOUT) as client:
                        backend = GatewayBackend(url, policy=policy, client=client)
                        backend.fetch_car(
                            cid, store, max_bytes=MANIFEST_FETCH_LIMIT, max_seconds=MANIFEST_SECONDS
                        )
                    break
                except StorageError as exc:
                    log.debug("manifest %s not fetched from %s: %s", cid, url, exc)
            else:
                return None  # not available yet: the index holds the version until it is
        # Present but unreadable: indexed as invalid ({}) rather than held forever.
        document = read_manifest(store, cid)
        if document is None:
            log.warning("manifest %s is unreadable, too large or not a JSON object", cid)
            return {}
        return document

    def provider_urls(self, digest: bytes) -> list[str]:
        """Where to ask for a manifest: for each model whose versions name it, the URL
        its current owner recorded.

        Args:
            digest: The manifest's sha256 digest, as `VersionAdded` carries it.

        Returns:
            Distinct non-empty URLs, in model id order.
        """
        refs = version_directory(self._market).for_manifest(bytes(digest))
        return owner_provider_urls(self._market, refs)
