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

Whether a model is served is decided once per block (`mercato.client.chain_cache`): the
owner, latest version and agent read at one head answer every try call until the node
sees another head, which it looks for at most `HEAD_MAX_AGE` seconds apart. A call
that starts later than that after a transfer, a new version or an agent change is
judged on the new state; calls in between cost no RPC round trip.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from web3 import Web3

from mercato.client.artifacts import cid_from_digest, private_dirs, restore_package
from mercato.client.chain_cache import HEAD_MAX_AGE, BlockCache, ChainHead, read_head
from mercato.client.delivery import responsible_account
from mercato.client.fetching import artifact_limit
from mercato.client.metadata import MAX_MANIFEST
from mercato.client.models import VersionInfo
from mercato.client.sale_keys import sale_key
from mercato.errors import (
    ContentKeyMissingError,
    ContentKeyNotBoundError,
    ContractRevertError,
    MercatoError,
    ModelNotFoundError,
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


@dataclass(frozen=True)
class _Served:
    """This node serves the model's latest version, for this owner, with this key."""

    owner: str
    version: VersionInfo
    key: bytes | None  # None: a free model, stored in the clear


@dataclass(frozen=True)
class _Refused:
    """This node does not serve the model; `error()` builds a fresh error to raise."""

    error: Callable[[], MercatoError]


class ProviderService:
    """Runs try calls for the models this node's accounts sell."""

    def __init__(
        self,
        market: Market,
        pool: TryPool,
        accounts: Collection[str] = (),
        *,
        head_max_age: float = HEAD_MAX_AGE,
    ) -> None:
        """
        Args:
            market: A market on this node's data directory and chain.
            pool: The try workers.
            accounts: The addresses this node sells for (its agent's accounts); a model
                is served only when its owner is one of them or made one its agent.
            head_max_age: Seconds between two looks for a new block; what the chain
                said about a model is reused until a new block is seen (0: look on
                every call).
        """
        self._market = market
        self._pool = pool
        self._accounts = frozenset(Web3.to_checksum_address(a) for a in accounts)
        self._packages: dict[tuple[int, int, str], ModelPackage] = {}
        self._lock = threading.Lock()  # guards the two dicts, never held while restoring
        self._restoring: dict[tuple[int, int, str], threading.Lock] = {}
        self._head = ChainHead(lambda: read_head(market.w3, market.rpc_url), head_max_age)
        self._decisions: BlockCache[int, _Served | _Refused] = BlockCache()
        self.cache_dir = market.settings.data_dir / "packages"

    def package_for(self, model_id: int) -> ModelPackage:
        """The latest version's package, rebuilt from the store on first use.

        Whether the model is served is read from the chain once per block (see the
        module docstring).

        Raises:
            ModelNotFoundError: No such model.
            ContentKeyNotBoundError: The model's owner neither is one of this node's
                accounts nor made one its agent, or did not store this version's key here.
            ContentKeyMissingError: This node holds neither the key nor the clear artifact.
            ChainError: The chain cannot be read.
        """
        decision = self._decisions.get(
            model_id, self._head.current(), lambda: self._decide(model_id)
        )
        if isinstance(decision, _Refused):
            raise decision.error()
        version, owner, key = decision.version, decision.owner, decision.key
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

    def cached_package(self, model_id: int) -> ModelPackage | None:
        """The package `package_for` would return, when that needs no I/O at all: the
        head was read recently, the model was judged at that head and its package is
        loaded. None otherwise.

        Raises:
            ModelNotFoundError, ContentKeyMissingError: As `package_for`, when the
                model was refused at this head.
        """
        head = self._head.fresh()
        decision = None if head is None else self._decisions.peek(model_id, head)
        if decision is None:
            return None
        if isinstance(decision, _Refused):
            raise decision.error()
        with self._lock:
            return self._packages.get((model_id, decision.version.version, decision.owner))

    def _decide(self, model_id: int) -> _Served | _Refused:
        """Whether this node serves the model now, read from the chain.

        Raises:
            ChainError: The chain cannot be read (not kept: the next call reads again).
        """
        market = self._market
        try:
            owner, version = _latest_version(market, model_id)
            if responsible_account(market, owner, self._accounts) is None:
                raise ContentKeyNotBoundError(
                    str(version.artifact_cid), model_id, version.version, owner
                )
            try:
                key: bytes | None = sale_key(market, model_id, version, owner)
            except ContentKeyNotBoundError:
                raise
            except ContentKeyMissingError:
                price = market.contracts.marketplace.listing(model_id).price
                if price > 0 or not market.store.is_pinned(version.artifact_cid):
                    raise
                key = None  # a free model: its artifact is stored in the clear
        except (ModelNotFoundError, ContentKeyMissingError) as exc:
            refusal = _refusal(exc)
            if refusal is None:
                raise
            return _Refused(refusal)
        return _Served(owner, version, key)

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
        """`try_json` for an event loop: a model already judged at the current head is
        served without leaving the loop; otherwise the chain lookup runs in a thread.
        The try call itself is awaited without holding one.

        Raises:
            As `try_json`.
        """
        package = self.cached_package(model_id)
        if package is None:
            package = await asyncio.to_thread(self.package_for, model_id)
        return await self._pool.run_json_async(package, request)


def _latest_version(market: Market, model_id: int) -> tuple[str, VersionInfo]:
    """A model's current owner and latest version: three reads, where `show` needs a
    dozen (listing, lineage, provider, every version's deprecation).

    Raises:
        ModelNotFoundError: No such model.
        ChainError: The chain cannot be read.
    """
    registry = market.contracts.registry
    try:
        owner = Web3.to_checksum_address(registry.owner_of(model_id))
    except ContractRevertError as exc:
        raise ModelNotFoundError(model_id) from exc
    latest = registry.version_count(model_id)
    found = market.logs(registry, "VersionAdded", model_id=model_id, version=latest)
    if len(found) != 1:
        # The registry logs each version once; anything else (a node still catching
        # up with its logs) gets the full reading.
        return owner, market.models.show(model_id).latest
    args = found[0]["args"]
    version = VersionInfo(
        version=latest,
        artifact_cid=cid_from_digest(args["artifact_cid_digest"]),
        manifest_cid=cid_from_digest(args["manifest_cid_digest"]),
        plaintext_sha256=bytes(args["plaintext_sha256"]),
        deprecated=registry.is_deprecated(model_id, latest),
    )
    return owner, version


def _refusal(exc: MercatoError) -> Callable[[], MercatoError] | None:
    """Builds the same error again for each refused call (one instance raised from many
    threads would share its traceback); None for an error that is not a refusal."""
    if type(exc) is ContentKeyNotBoundError:
        return functools.partial(
            ContentKeyNotBoundError, exc.artifact_cid, exc.model_id, exc.version, exc.owner
        )
    if type(exc) is ContentKeyMissingError:
        return functools.partial(ContentKeyMissingError, exc.artifact_cid)
    if type(exc) is ModelNotFoundError:
        return functools.partial(ModelNotFoundError, exc.model_id)
    return None


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
