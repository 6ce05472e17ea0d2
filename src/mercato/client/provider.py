# SPDX-License-Identifier: AGPL-3.0-only
"""The provider side of a node: what its gateway serves for the models it sells.

Try calls run on the seller's node, so the weights never leave it. The node keeps a
plaintext copy of each version it serves, rebuilt from its own store and key:

    <data dir>/packages/
    └── <artifact CID>/      the unpacked package (ONNX + README.md + extra files)
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING

import httpx

from mercato.client.artifacts import restore_package
from mercato.client.metadata import MAX_MANIFEST
from mercato.errors import (
    ContentKeyMissingError,
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

    def __init__(self, market: Market, pool: TryPool) -> None:
        self._market = market
        self._pool = pool
        self._packages: dict[str, ModelPackage] = {}
        self._lock = threading.Lock()
        self.cache_dir = market.settings.data_dir / "packages"

    def package_for(self, model_id: int) -> ModelPackage:
        """The latest version's package, rebuilt from the store on first use.

        Raises:
            ModelNotFoundError: No such model.
            ContentKeyMissingError: This node does not hold the model's key (not its seller).
        """
        version = self._market.models.version(model_id)
        cid = str(version.artifact_cid)
        with self._lock:
            if cid not in self._packages:
                folder = self.cache_dir / cid
                if not folder.exists():
                    key: bytes | None = None
                    if self._market.contracts.marketplace.listing(model_id).price > 0:
                        key = self._market.keys.load(version.artifact_cid)
                    elif not self._market.store.is_pinned(version.artifact_cid):
                        raise ContentKeyMissingError(cid)
                    restore_package(
                        self._market.store,
                        version.artifact_cid,
                        key,
                        version.plaintext_sha256,
                        folder,
                    )
                name = _published_name(self._market, version.manifest_cid)
                self._packages[cid] = load_package(folder, name=name)
            return self._packages[cid]

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
