# SPDX-License-Identifier: AGPL-3.0-only
"""The provider side of a node: what its gateway serves for the models it sells.

Try calls run on the seller's node, so the weights never leave it. The node serves a
model only while its current owner is one of the node's accounts or made one of them its
agent, and (for a paid model) only with a key that owner stored for that version
(`mercato.client.sale_keys`): a copycat listing that commits to another model's digests
gets no try calls. The node keeps a plaintext copy of each version it serves, rebuilt
from its own store and key, under the model, version and owner it was built for:

    <data dir>/packages/                      mode 0700: plaintext weights are secret
    └── <chain id>/
        └── <registry address>/
            └── <model id>/
                └── <version>-<owner>/        the unpacked package (folders 0700, files 0600)
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from web3 import Web3

from mercato.client.artifacts import private_dirs, restore_package
from mercato.client.delivery import responsible_account
from mercato.client.fetching import artifact_limit
from mercato.client.metadata import MAX_MANIFEST
from mercato.client.sale_keys import sale_key
from mercato.errors import (
    ContentKeyMissingError,
    ContentKeyNotBoundError,
    ProviderRejectedError,
    ProviderUnavailableError,
    StorageError,
)
from mercato.models.package import ModelPackage, load_package
from mercato.models.runtime import TryPool
from mercato.storage.exporter import iter_file

if TYPE_CHECKING:
    from multiformats import CID

    from mercato.client.market import Market


class ProviderService:
    """Runs try calls for the models this node's accounts sell."""

    def __init__(self, market: Market, pool: TryPool, accounts: Collection[str] = ()) -> None:
        """
        Args:
            market: A market on this node's data directory and chain.
            pool: The try workers.
            accounts: The addresses this node sells for (its agent's accounts); a model
                is served only when its owner is one of them or made one its agent.
        """
        self._market = market
        self._pool = pool
        self._accounts = frozenset(Web3.to_checksum_address(a) for a in accounts)
        self._packages: dict[tuple[int, int, str], ModelPackage] = {}
        self._lock = threading.Lock()  # guards the two dicts, never held while restoring
        self._restoring: dict[tuple[int, int, str], threading.Lock] = {}
        self.cache_dir = market.settings.data_dir / "packages"

    def package_for(self, model_id: int) -> ModelPackage:
        """The latest version's package, rebuilt from the store on first use.

        Raises:
            ModelNotFoundError: No such model.
            ContentKeyNotBoundError: The model's owner neither is one of this node's
                accounts nor made one its agent, or did not store this version's key here.
            ContentKeyMissingError: This node holds neither the key nor the clear artifact.
        """
        info = self._market.models.show(model_id)
        version, owner = info.latest, Web3.to_checksum_address(info.owner)
        if responsible_account(self._market, owner, self._accounts) is None:
            raise ContentKeyNotBoundError(
                str(version.artifact_cid), model_id, version.version, owner
            )
        try:
            key: bytes | None = sale_key(self._market, model_id, version, owner)
        except ContentKeyNotBoundError:
            raise
        except ContentKeyMissingError:
            if info.listing.price > 0 or not self._market.store.is_pinned(version.artifact_cid):
                raise
            key = None  # a free model: its artifact is stored in the clear
        cache_key = (model_id, version.version, owner)
        with self._lock:
            package = self._packages.get(cache_key)
            if package is not None:
                return package
            restoring = self._restoring.setdefault(cache_key, threading.Lock())
        # One lock per package: restoring a large (or hostile) package takes a while,
        # and must not hold back try calls on every other model.
        with restoring:
            with self._lock:
                package = self._packages.get(cache_key)
            if package is None:
                folder = self._folder(model_id, version.version, owner)
                if not folder.exists():
                    store = self._market.store
                    restore_package(
                        store,
                        version.artifact_cid,
                        key,
                        version.plaintext_sha256,
                        folder,
                        private=True,
                        # What the manifest declares bounds the restore (and a global cap).
                        max_size=artifact_limit(store, version, encrypted=key is not None),
                    )
                name = _published_name(self._market, version.manifest_cid)
                package = load_package(folder, name=name)
                with self._lock:
                    self._packages[cache_key] = package
            return package

    def _folder(self, model_id: int, version: int, owner: str) -> Path:
        registry = self._market.contracts.registry.address
        folder = (
            self.cache_dir
            / str(self._market.chain_id)
            / registry
            / str(model_id)
            / f"{version}-{owner}"
        )
        # Every level private, including a `packages/` an older version left readable.
        private_dirs(self.cache_dir, folder.parent)
        return folder

    def try_json(self, model_id: int, request: bytes) -> bytes:
        """Runs one try call: JSON request in, JSON outputs out (see `TryPool.run_json`).

        Raises:
            ModelNotFoundError, ContentKeyMissingError: as `package_for`.
            InferenceInputError: The request does not fit the model's inputs.
            InferenceError: The run failed, overran its time or memory, or crashed its worker.
        """
        return self._pool.run_json(self.package_for(model_id), request)

    async def start_pool(self) -> bool:
        """Start the try pool's engine on the running loop, unless the pool already runs.

        Coroutines on this loop (the gateway's) then reach the workers without crossing
        a thread.

        Returns:
            True when this call started the pool (close it with `close_pool`).
        """
        if self._pool.running:
            return False
        await self._pool.start_async()
        return True

    async def close_pool(self) -> None:
        """Stop the try pool started by `start_pool`, letting running calls finish."""
        await self._pool.close_async()

    async def try_json_async(self, model_id: int, request: bytes) -> bytes:
        """`try_json` for an event loop: the chain lookup of the model's version runs in
        a thread, the try call itself is awaited without holding one.

        Raises:
            As `try_json`.
        """
        package = await asyncio.to_thread(self.package_for, model_id)
        return await self._pool.run_json_async(package, request)


def _published_name(market: Market, manifest_cid: CID) -> str | None:
    """The model name in a version's published manifest, which this node stores.

    The unpacked copy lives in a folder named by its CID; without the published name
    its try answers would name the model by that CID.
    """
    data = bytearray()
    try:
        for piece in iter_file(manifest_cid, market.store):
            data += piece
            if len(data) > MAX_MANIFEST:
                return None
        manifest = json.loads(bytes(data))
    except (StorageError, ValueError):
        return None
    name = manifest.get("name") if isinstance(manifest, dict) else None
    return name if isinstance(name, str) else None


def try_remote(provider_url: str, model_id: int, request: bytes, timeout: float = 30.0) -> bytes:
    """Sends a try call to a model's provider and returns its JSON answer.

    Raises:
        ProviderUnavailableError: The provider cannot be reached or failed.
        ProviderRejectedError: The provider refused the call (bad input, rate limit…).
    """
    url = f"{provider_url.rstrip('/')}/v1/models/{model_id}/try"
    try:
        response = httpx.post(
            url, content=request, headers={"Content-Type": "application/json"}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise ProviderUnavailableError(provider_url, str(exc)) from exc
    if response.status_code == 200:
        return response.content
    try:
        body = response.json()
        code, message = str(body["error"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        raise ProviderUnavailableError(
            provider_url, f"HTTP {response.status_code} without a Mercato error body"
        ) from None
    raise ProviderRejectedError(provider_url, response.status_code, code, message)


__all__ = ["ProviderService", "try_remote"]
