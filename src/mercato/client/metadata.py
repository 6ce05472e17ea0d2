# SPDX-License-Identifier: AGPL-3.0-only
"""Manifests for the index, fetched by CID and verified block by block.

The chain keeps only each manifest's digest; the bytes live in stores. This source
looks in the node's own store first, then asks the provider of each model whose
versions name that manifest: the URL the model's *current owner* recorded, never one
set by a previous owner or anyone else, under the node's fetch policy and capped at a
manifest's size (see `mercato.client.fetching`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from multiformats import CID, multihash

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
from mercato.errors import ChainError, StorageError
from mercato.storage.backends import GatewayBackend

if TYPE_CHECKING:
    from mercato.client.market import Market

log = logging.getLogger(__name__)
MAX_SPEC = 64 * 1024  # bytes of a task spec document: hyperparameters, not data

__all__ = ["MAX_MANIFEST", "StoreMetadataSource", "fetch_from_accounts"]


def fetch_from_accounts(
    market: Market, cid: CID, accounts: Sequence[str], max_bytes: int, *, refetch: bool = False
) -> bool:
    """Makes sure a block (or small DAG) is in the node's store, fetching it if needed
    from the provider URLs `accounts` recorded on-chain, and from nowhere else.

    Used for what a federated task's parties publish: the spec and the SuperLink's TLS
    root certificate (from the requester or coordinator), a participant's public key.

    Args:
        market: The market (its store, chain and fetch policy).
        cid: What to have.
        accounts: Whose provider URLs may serve it, in order.
        max_bytes: The most the fetch may carry.
        refetch: Fetch even if the store holds `cid` (a DAG whose root is here but
            some block is not).

    Returns:
        True when the store holds it (now).
    """
    store = market.store
    if store.has(cid) and not refetch:
        return True
    own = market.settings.public_url.rstrip("/")
    policy = fetch_policy(market)
    for account in accounts:
        try:
            url = market.contracts.registry.provider_url(account)
        except ChainError as exc:
            log.debug("no provider URL for %s: %s", account, exc)
            continue
        if not url or url.rstrip("/") == own:
            continue
        try:
            with policy.client(MANIFEST_TIMEOUT) as client:
                backend = GatewayBackend(url, policy=policy, client=client)
                backend.fetch_car(cid, store, max_bytes=max_bytes, max_seconds=MANIFEST_SECONDS)
            return True
        except StorageError as exc:
            log.debug("%s not fetched from %s: %s", cid, url, exc)
    return False


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

    def task_spec(self, digest: bytes, accounts: Sequence[str]) -> Mapping[str, Any] | None:
        """A federated task's spec document (see `mercato.index.federation.SpecSource`).

        Looked for in the local store, then fetched (one raw block, at most `MAX_SPEC`
        bytes, under the fetch policy) from the provider URLs the task's requester and
        coordinator recorded on-chain: never from a URL the spec or anyone else names.

        Args:
            digest: The sha256 digest inside the spec's raw-codec CIDv1.
            accounts: The task's requester and coordinator.

        Returns:
            The JSON document ({} when present but unreadable or too large), or None
                while no source has it.
        """
        cid = CID("base32", 1, "raw", multihash.get("sha2-256").wrap(bytes(digest)))
        store = self._market.store
        if not fetch_from_accounts(self._market, cid, accounts, 2 * MAX_SPEC):
            return None
        try:
            data = store.get(cid)
        except StorageError:
            return None
        if len(data) > MAX_SPEC:
            return {}
        try:
            document = json.loads(data)
        except ValueError:
            return {}
        return document if isinstance(document, dict) else {}

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
