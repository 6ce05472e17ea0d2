# SPDX-License-Identifier: AGPL-3.0-only
"""Manifests for the index, fetched by CID and verified block by block.

The chain keeps only each manifest's digest; the bytes live in stores. This source
looks in the node's own store first, then asks the providers creators recorded
on-chain (any of them may hold the manifest), keeping what it fetched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mercato.client.artifacts import cid_from_digest
from mercato.errors import StorageError
from mercato.storage.backends import GatewayBackend
from mercato.storage.exporter import iter_file

if TYPE_CHECKING:
    from mercato.client.market import Market

log = logging.getLogger(__name__)
MAX_MANIFEST = 4 * 1024 * 1024  # bytes; a manifest lists files, it does not hold them
PROVIDERS_REFRESH = 5.0  # seconds between re-reads of the providers recorded on-chain


class StoreMetadataSource:
    """A `mercato.index.MetadataSource` over the local store and on-chain providers."""

    def __init__(self, market: Market) -> None:
        self._market = market
        self._providers: list[str] = []
        self._providers_read = float("-inf")

    def manifest(self, digest: bytes) -> Mapping[str, Any] | None:
        cid = cid_from_digest(digest)
        store = self._market.store
        if not store.is_pinned(cid):
            for url in self._provider_urls():
                try:
                    GatewayBackend(url).fetch_car(cid, store)
                    break
                except StorageError as exc:
                    log.debug("manifest %s not fetched from %s: %s", cid, url, exc)
            else:
                return None  # not available yet: the index holds the version until it is
        # Present but unreadable: indexed as invalid ({}) rather than held forever.
        data = bytearray()
        try:
            for piece in iter_file(cid, store):
                data += piece
                if len(data) > MAX_MANIFEST:
                    return {}
            document = json.loads(bytes(data))
        except (StorageError, ValueError) as exc:
            log.warning("manifest %s is unreadable: %s", cid, exc)
            return {}
        return document if isinstance(document, dict) else {}

    def _provider_urls(self) -> list[str]:
        if time.monotonic() - self._providers_read > PROVIDERS_REFRESH:
            registry = self._market.contracts.registry
            urls = {str(log["args"]["url"]) for log in self._market.logs(registry, "ProviderSet")}
            self._providers = sorted(url for url in urls if url)
            self._providers_read = time.monotonic()
        return self._providers
