# SPDX-License-Identifier: AGPL-3.0-only
"""Fetching model bytes from providers: which URLs, under which policy, how much.

A provider URL is whatever a model's owner recorded, so it may point anywhere. The node
fetches only:

- CIDs some model version names (its manifest or its artifact), never an arbitrary CID;
- from the provider URL the model's *current owner* recorded (the registry's
  `provider_of`), never one set by a previous owner or anyone else;
- through the node's `FetchPolicy` (no private targets outside a local chain or the
  settings' allow-list, no redirects), capped at what the version's manifest declares
  and a global limit.

`VersionDirectory` maps the digests versions commit to onto their models, from the
registry's `VersionAdded` logs, read incrementally.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from multiformats import CID

from mercato.chain.logs import event_logs
from mercato.client.artifacts import (
    MAX_ARTIFACT_BYTES,
    artifact_size_limit,
    cid_digest,
    cid_from_digest,
)
from mercato.errors import (
    BlockNotFoundError,
    ChainError,
    FetchTooLargeError,
    ProviderRejectedError,
    ProviderUnavailableError,
    StorageBackendError,
    StorageError,
    UnsafeURLError,
)
from mercato.storage.backends import GatewayBackend
from mercato.storage.blockstore import Blockstore
from mercato.storage.car import block_budget
from mercato.storage.exporter import iter_file
from mercato.storage.remote import FetchPolicy, capped, check_length, origin_of

if TYPE_CHECKING:
    from mercato.client.market import Market
    from mercato.client.models import VersionInfo

log = logging.getLogger(__name__)

MAX_MANIFEST = 4 * 1024 * 1024  # bytes; a manifest lists files, it does not hold them
MANIFEST_FETCH_LIMIT = 2 * block_budget(MAX_MANIFEST)
"""The most a manifest's CAR may carry: its blocks plus their CAR framing."""
MANIFEST_TIMEOUT = httpx.Timeout(10.0, read=30.0)
MANIFEST_SECONDS = 60.0
"""The most one manifest fetch may take: the index waits for it, so a provider that
trickles bytes must not hold it for hours."""
VERSIONS_REFRESH = 5.0  # seconds between reads of the registry's new versions
MAX_TRY_ANSWER = 16 * 1024 * 1024  # bytes of a try call's JSON outputs
MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer (only its code is kept)
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def fetch_policy(market: Market) -> FetchPolicy:
    """The node's policy for URLs others chose: private targets only on a local chain
    or inside the networks the settings allow.

    Raises:
        ConfigError: `fetch_allow_networks` holds something that is not a network.
    """
    return FetchPolicy.from_settings(
        local_chain=market.is_local_chain, allow=market.settings.fetch_allow_networks
    )


def read_manifest(store: Blockstore, cid: CID) -> dict[str, Any] | None:
    """A manifest from the local store, read with a size cap.

    Args:
        store: The store.
        cid: The manifest's CID.

    Returns:
        The JSON object, or None when it is missing, too large or not a JSON object.
    """
    data = bytearray()
    try:
        for piece in iter_file(cid, store):
            data += piece
            if len(data) > MAX_MANIFEST:
                return None
        document = json.loads(bytes(data))
    except (StorageError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def artifact_limit(store: Blockstore, version: VersionInfo, *, encrypted: bool) -> int | None:
    """The most bytes a version's artifact may hold, from what its manifest declares.

    Args:
        store: The store holding the manifest.
        version: The version.
        encrypted: The artifact is encrypted (a paid model).

    Returns:
        The limit, or None when the manifest is not here or does not say (callers then
        rely on the global limit alone).
    """
    return _limit_from_manifest(store, version.manifest_cid, encrypted=encrypted)


def _limit_from_manifest(store: Blockstore, manifest_cid: CID, *, encrypted: bool) -> int | None:
    manifest = read_manifest(store, manifest_cid)
    if manifest is None:
        return None
    total, files = manifest.get("total_size"), manifest.get("files")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        return None
    if not isinstance(files, list):
        return None
    return artifact_size_limit(total, len(files), encrypted=encrypted)


def car_limit(artifact_bytes: int | None) -> int | None:
    """The most a CAR of a file may carry: its blocks (`block_budget`) and their framing."""
    return 2 * block_budget(artifact_bytes) if artifact_bytes is not None else None


@dataclass(frozen=True)
class VersionRef:
    """A model version that names a digest."""

    model_id: int
    version: int
    manifest_digest: bytes


@dataclass
class VersionDirectory:
    """The model versions that commit to each manifest and artifact digest.

    Read from the registry's `VersionAdded` logs, only the blocks not read yet, at most
    every VERSIONS_REFRESH seconds unless a digest is not known yet.
    """

    market: Market
    by_manifest: dict[bytes, list[VersionRef]] = field(default_factory=dict)
    by_artifact: dict[bytes, list[VersionRef]] = field(default_factory=dict)
    _scanned_to: int | None = None
    _scanned_at: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def for_manifest(self, digest: bytes) -> list[VersionRef]:
        """The versions whose manifest has this sha256 digest."""
        return self._lookup(self.by_manifest, bytes(digest))

    def for_artifact(self, digest: bytes) -> list[VersionRef]:
        """The versions whose artifact has this sha256 digest."""
        return self._lookup(self.by_artifact, bytes(digest))

    def _lookup(self, table: dict[bytes, list[VersionRef]], digest: bytes) -> list[VersionRef]:
        with self._lock:
            if digest not in table or time.monotonic() - self._scanned_at > VERSIONS_REFRESH:
                self._scan()
            return list(table.get(digest, []))

    def _scan(self) -> None:
        head = int(self.market.w3.eth.block_number)
        start = (
            self.market.deployment.deploy_block
            if self._scanned_to is None
            else self._scanned_to + 1
        )
        if start <= head:
            event = self.market.contracts.registry.contract.events.VersionAdded
            for entry in event_logs(event, start, head):
                args = entry["args"]
                ref = VersionRef(
                    int(args["model_id"]), int(args["version"]), bytes(args["manifest_cid_digest"])
                )
                self.by_manifest.setdefault(ref.manifest_digest, []).append(ref)
                self.by_artifact.setdefault(bytes(args["artifact_cid_digest"]), []).append(ref)
            self._scanned_to = head
        self._scanned_at = time.monotonic()


_directories: weakref.WeakKeyDictionary[Market, VersionDirectory] = weakref.WeakKeyDictionary()
_directories_lock = threading.Lock()


def version_directory(market: Market) -> VersionDirectory:
    """The market's `VersionDirectory` (one per market, kept while the market lives)."""
    with _directories_lock:
        directory = _directories.get(market)
        if directory is None:
            directory = _directories[market] = VersionDirectory(market)
        return directory


def owner_provider_urls(market: Market, refs: list[VersionRef]) -> list[str]:
    """For each model among `refs`, the provider URL its current owner recorded.

    Args:
        market: The market.
        refs: Versions naming the wanted digest.

    Returns:
        Distinct non-empty URLs in model id order, leaving out this node's own URL
        (asking itself would only fail later).
    """
    own = market.settings.public_url.rstrip("/")
    urls: list[str] = []
    for model_id in sorted({ref.model_id for ref in refs}):
        try:
            url = market.contracts.registry.provider_of(model_id)
        except ChainError as exc:  # e.g. a burned model has no owner
            log.debug("no provider for model %s: %s", model_id, exc)
            continue
        if url and url.rstrip("/") != own and url not in urls:
            urls.append(url)
    return urls


def fetch_version_artifact(market: Market, cid: CID) -> None:
    """Fetch an artifact some model version names, from its owner's provider, into the
    store (verified, only that DAG, capped, pinned).

    Args:
        market: The market whose store receives the blocks.
        cid: The artifact's CID (CIDv0: what versions commit to).

    Raises:
        BlockNotFoundError: No model version names this CID, or no provider has it.
        ProviderUnavailableError: Every provider failed (the last failure is named).
    """
    store = market.store
    refs = version_directory(market).for_artifact(cid_digest(cid)) if _sha256_dag_pb(cid) else []
    if not refs:
        raise BlockNotFoundError(
            f"{cid} is not in this node's store and no model version names it, so this node "
            "does not fetch it.",
            cid=str(cid),
        )
    limit = MAX_ARTIFACT_BYTES
    for ref in refs:
        # The larger (encrypted) bound: whether a version is paid is not in its digests.
        declared = _limit_from_manifest(store, cid_from_digest(ref.manifest_digest), encrypted=True)
        if declared is not None:
            limit = min(limit, declared)
    failure: tuple[ProviderUnavailableError, StorageError] | None = None
    for url in owner_provider_urls(market, refs):
        try:
            GatewayBackend(url, policy=fetch_policy(market)).fetch_car(
                cid, store, max_bytes=car_limit(limit)
            )
            return
        except (StorageBackendError, UnsafeURLError, FetchTooLargeError) as exc:
            failure = ProviderUnavailableError(origin_of(url), str(exc)), exc
        except StorageError as exc:
            detail = f"it sent blocks that are not {cid}: {exc}"
            failure = ProviderUnavailableError(origin_of(url), detail), exc
    if failure is not None:
        raise failure[0] from failure[1]
    raise BlockNotFoundError(
        f"{cid} is not in this node's store, and its model's owner records no provider URL "
        "other than this node's.",
        cid=str(cid),
    )


def current_provider_url(market: Market, model_id: int) -> str:
    """The provider URL the model's current owner recorded ("" when none).

    Raises:
        ChainError: The chain cannot be read, or the model does not exist.
    """
    return market.contracts.registry.provider_of(model_id)


def post_try(
    market: Market, provider_url: str, model_id: int, request: bytes, *, timeout: float = 30.0
) -> bytes:
    """Send a try call to a model's provider under the node's fetch policy.

    The provider URL is the owner's choice, so it gets what every fetch gets: a
    checked address, no redirects, a capped answer, and errors that name the status
    and the host (with the provider's error code when it is a plain identifier), never
    the provider's own text.

    Args:
        market: The market (its settings and chain decide the policy).
        provider_url: The model's provider URL (see `current_provider_url`).
        model_id: The model.
        request: The JSON request body.
        timeout: Seconds to wait for the answer.

    Returns:
        The provider's JSON answer.

    Raises:
        UnsafeURLError: The provider URL points where this node does not connect.
        ProviderUnavailableError: The provider cannot be reached, redirects, sends too
            much, or fails without a Mercato error.
        ProviderRejectedError: The provider refused the call with a Mercato error code.
    """
    if not provider_url:
        raise ProviderUnavailableError(
            "(none)", "the model's owner has not recorded a provider URL"
        )
    policy = fetch_policy(market)
    policy.check_url(provider_url)
    url = f"{provider_url.rstrip('/')}/v1/models/{model_id}/try"
    origin = origin_of(url)
    try:
        with (
            policy.client(httpx.Timeout(timeout)) as client,
            client.stream(
                "POST", url, content=request, headers={"Content-Type": "application/json"}
            ) as response,
        ):
            status = response.status_code
            limit = MAX_TRY_ANSWER if status == 200 else MAX_ERROR_BODY
            check_length(response, limit, url)
            body = b"".join(capped(response.iter_raw(), limit, url))
    except httpx.HTTPError as exc:
        raise ProviderUnavailableError(origin, type(exc).__name__) from exc
    except FetchTooLargeError as exc:
        raise ProviderUnavailableError(origin, str(exc)) from exc
    if status == 200:
        return body
    if 300 <= status < 400:
        raise ProviderUnavailableError(origin, f"HTTP {status}, a redirect, which is not followed")
    try:
        code = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        code = None
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code):
        raise ProviderRejectedError(origin, status, code, f"HTTP {status}")
    raise ProviderUnavailableError(origin, f"HTTP {status} without a Mercato error code")


def _sha256_dag_pb(cid: CID) -> bool:
    # Versions commit to the sha256 digest of a dag-pb root (a CIDv0).
    return cid.codec.name == "dag-pb" and cid.hashfun.name == "sha2-256"


__all__ = [
    "MANIFEST_FETCH_LIMIT",
    "MANIFEST_SECONDS",
    "MANIFEST_TIMEOUT",
    "MAX_MANIFEST",
    "VersionDirectory",
    "VersionRef",
    "artifact_limit",
    "car_limit",
    "current_provider_url",
    "fetch_policy",
    "fetch_version_artifact",
    "owner_provider_urls",
    "post_try",
    "read_manifest",
    "version_directory",
]
