# SPDX-License-Identifier: AGPL-3.0-only
"""Storage backends behind one protocol: the local store, a kubo node, an IPFS gateway.

- `LocalBackend`: the node's own `Blockstore` (the default).
- `KuboBackend`: a kubo node over its HTTP RPC API (`/api/v0/add`, `/api/v0/block/get`,
  `/api/v0/pin/add`, ...). Mercato computes every CID itself as the bytes stream out and
  refuses an answer from kubo that disagrees.
- `GatewayBackend`: any IPFS trustless gateway, read-only (`/ipfs/{cid}?format=raw` and
  `?format=car`). Gateways are not trusted: every block is verified against its CID, a
  CAR may only carry the DAG that was asked for, every answer is read with a byte cap,
  and the gateway's address is checked against a `FetchPolicy` (see `remote`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

import httpx
from multiformats import CID

from mercato.errors import (
    BlockNotFoundError,
    ReadOnlyBackendError,
    StorageBackendError,
)
from mercato.storage.blockstore import Blockstore
from mercato.storage.car import import_car
from mercato.storage.cids import MAX_BLOCK_SIZE, check_block_size, parse_cid, verify_block
from mercato.storage.exporter import export_file
from mercato.storage.profiles import CidProfile, profile_for
from mercato.storage.remote import (
    MAX_FETCH_BYTES,
    FetchPolicy,
    capped,
    check_length,
    check_status,
    origin_of,
    unreachable,
)
from mercato.storage.unixfs import (
    CHUNK_SIZE,
    ImportResult,
    ImportSource,
    UnixFSImporter,
    import_file,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=300.0)


@runtime_checkable
class StorageBackend(Protocol):
    """What Mercato needs from a place that holds model bytes."""

    name: str

    def add(
        self,
        source: ImportSource,
        *,
        cid_version: int | None = None,
        pin: bool = True,
        profile: CidProfile | str | None = None,
    ) -> ImportResult:
        """Import a file; return the CID `ipfs add` would print (under `profile`)."""
        ...

    def get_block(self, cid: CID) -> bytes:
        """Return one block, verified against `cid`."""
        ...

    def has(self, cid: CID) -> bool:
        """Tell whether the backend holds the block."""
        ...

    def pin(self, cid: CID) -> None:
        """Keep a DAG from garbage collection."""
        ...

    def unpin(self, cid: CID) -> None:
        """Let a DAG be garbage-collected."""
        ...

    def export_file(self, cid: CID, dest: Path) -> int:
        """Write the file under `cid` to `dest` atomically, verifying every block."""
        ...


class LocalBackend:
    """The node's own blockstore."""

    name = "local"

    def __init__(self, store: Blockstore) -> None:
        """Args:
        store: The blockstore in the node's data directory.
        """
        self.store = store

    def add(
        self,
        source: ImportSource,
        *,
        cid_version: int | None = None,
        pin: bool = True,
        profile: CidProfile | str | None = None,
    ) -> ImportResult:
        """Import into the blockstore (see `unixfs.import_file` for errors)."""
        return import_file(source, self.store, cid_version=cid_version, profile=profile, pin=pin)

    def get_block(self, cid: CID) -> bytes:
        """Read a verified block (see `Blockstore.get` for errors)."""
        return self.store.get(cid)

    def has(self, cid: CID) -> bool:
        """Tell whether the store holds the block."""
        return self.store.has(cid)

    def pin(self, cid: CID) -> None:
        """Pin recursively (see `Blockstore.pin` for errors)."""
        self.store.pin(cid)

    def unpin(self, cid: CID) -> None:
        """Remove a pin if there is one."""
        self.store.unpin(cid)

    def export_file(self, cid: CID, dest: Path) -> int:
        """Export a file atomically (see `exporter.export_file` for errors)."""
        return export_file(cid, self.store, dest)


class _TeeReader:
    """A file-like view of an import source that also feeds a local CID computation."""

    def __init__(self, source: ImportSource, importer: UnixFSImporter) -> None:
        self._importer = importer
        self._file: BinaryIO | None = None
        self._iter: Iterator[bytes] | None = None
        if isinstance(source, str | Path):
            self._file = open(source, "rb")  # noqa: SIM115 - closed in close()
        elif hasattr(source, "read"):
            self._file = source  # type: ignore[assignment]
        else:
            self._iter = iter(source)
        self._owns_file = isinstance(source, str | Path)

    def read(self, size: int = -1) -> bytes:
        if self._file is not None:
            data = self._file.read(size if size and size > 0 else CHUNK_SIZE)
        else:
            data = next(self._iter, b"") if self._iter is not None else b""
        if data:
            self._importer.update(data)
        return data

    def close(self) -> None:
        if self._owns_file and self._file is not None:
            self._file.close()


def _kubo_raise_for(response: httpx.Response, url: str, cid: CID | None) -> None:
    # kubo is the operator's own daemon: its error text is shown (bounded), and its
    # "not found" errors come as HTTP 500 with that text.
    if response.status_code == 200:
        return
    try:
        response.read()
        text = response.text[:500]
    except (httpx.ResponseNotRead, httpx.StreamError):
        text = ""
    if cid is not None and (response.status_code == 404 or "not found" in text.lower()):
        raise BlockNotFoundError(f"{cid} is not available from {url}.", cid=str(cid))
    raise StorageBackendError(
        f"{url} answered HTTP {response.status_code}: {text or response.reason_phrase}",
        url=url,
        status=response.status_code,
    )


def _raise_for(response: httpx.Response, url: str, cid: CID | None) -> None:
    # The body is never read nor shown: a hostile server could make it endless or put
    # text in it meant for whoever reads the error (see `remote.check_status`).
    if cid is not None and response.status_code == 404:
        raise BlockNotFoundError(f"{cid} is not available from {origin_of(url)}.", cid=str(cid))
    check_status(response, url)


def _read_limited(response: httpx.Response, cid: CID) -> bytes:
    # Stop reading as soon as the body passes the block size limit, so a hostile
    # server cannot make us buffer an endless body.
    parts: list[bytes] = []
    size = 0
    for piece in response.iter_raw():
        size += len(piece)
        check_block_size(size, cid)
        parts.append(piece)
    return b"".join(parts)


class KuboBackend:
    """A kubo node reached over its HTTP RPC API (e.g. http://127.0.0.1:5001)."""

    name = "kubo"

    def __init__(self, api_url: str, *, client: httpx.Client | None = None) -> None:
        """Args:
        api_url: Base URL of kubo's RPC API, without `/api/v0`.
        client: An httpx client to reuse (tests, custom TLS); one is made otherwise.
        """
        self.api_url = api_url.rstrip("/")
        self._client = client or httpx.Client(timeout=DEFAULT_TIMEOUT)

    def _post(self, command: str, params: dict[str, str], **kwargs: object) -> httpx.Response:
        url = f"{self.api_url}/api/v0/{command}"
        try:
            return self._client.post(url, params=params, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise StorageBackendError(
                f"Could not reach kubo at {self.api_url} ({exc}). Is the daemon running?",
                url=url,
            ) from exc

    def add(
        self,
        source: ImportSource,
        *,
        cid_version: int | None = None,
        pin: bool = True,
        profile: CidProfile | str | None = None,
    ) -> ImportResult:
        """Send a file to kubo's `/api/v0/add`, checking its CID against our own.

        kubo is asked for the profile's parameters explicitly (CID version, raw
        leaves, chunker, hash, layout and, for unixfs-v1-2025, `max-file-links`), so
        it imports as we do whatever its own `Import` settings say.

        Args:
            source: A path, a binary file object, or an iterable of bytes.
            cid_version: 0 or 1 (see `UnixFSImporter`).
            pin: Ask kubo to pin the root.
            profile: A CID profile or its name (default "unixfs-v0-2015"); unixfs-v1-2025
                needs kubo 0.40 or later.

        Returns:
            The root CID and file size.

        Raises:
            StorageBackendError: If kubo fails or prints a CID that differs from the one
                Mercato computed over the same bytes.
            ConfigError: If `cid_version` is not 0 or 1, or the profile is unknown or
                disagrees with it.
        """
        chosen = profile_for(profile, cid_version)
        params = {
            **chosen.kubo_add_params(),
            "pin": "true" if pin else "false",
            "progress": "false",
        }
        with UnixFSImporter(None, profile=chosen) as importer:
            reader = _TeeReader(source, importer)
            try:
                response = self._post(
                    "add",
                    params,
                    files={"file": ("file", reader, "application/octet-stream")},
                )
            finally:
                reader.close()
            url = f"{self.api_url}/api/v0/add"
            _kubo_raise_for(response, url, None)
            expected = importer.finish()
        lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        hashes = [line["Hash"] for line in lines if "Hash" in line]
        if not hashes:
            raise StorageBackendError(
                f"kubo's add answer has no Hash: {response.text[:200]}", url=url
            )
        got = parse_cid(hashes[-1])
        if got != expected.cid:
            raise StorageBackendError(
                f"kubo stored the file as {got}, but its bytes give {expected.cid} under the "
                f"{chosen.name} profile; kubo ignored an import option (unixfs-v1-2025 needs "
                "kubo 0.40 or later), or the upload was altered.",
                url=url,
            )
        return expected

    def get_block(self, cid: CID) -> bytes:
        """Fetch a block with `/api/v0/block/get` and verify it.

        Raises:
            BlockNotFoundError: If kubo does not have the block.
            BlockHashMismatchError: If the bytes do not hash to `cid`.
            BlockTooLargeError: If the block is above MAX_BLOCK_SIZE.
            StorageBackendError: If kubo fails.
        """
        url = f"{self.api_url}/api/v0/block/get"
        return _fetch_block(
            self._client,
            "POST",
            url,
            cid,
            f"kubo at {self.api_url}",
            _kubo_raise_for,
            params={"arg": str(cid)},
        )

    def has(self, cid: CID) -> bool:
        """Ask `/api/v0/block/stat` (offline) whether kubo holds the block.

        Raises:
            StorageBackendError: If kubo fails for another reason.
        """
        response = self._post("block/stat", {"arg": str(cid), "offline": "true"})
        try:
            _kubo_raise_for(response, f"{self.api_url}/api/v0/block/stat", cid)
        except BlockNotFoundError:
            return False
        return True

    def pin(self, cid: CID) -> None:
        """Pin recursively with `/api/v0/pin/add`.

        Raises:
            StorageBackendError: If kubo refuses.
        """
        response = self._post("pin/add", {"arg": str(cid), "recursive": "true"})
        _kubo_raise_for(response, f"{self.api_url}/api/v0/pin/add", None)

    def unpin(self, cid: CID) -> None:
        """Remove a pin with `/api/v0/pin/rm`.

        Raises:
            StorageBackendError: If kubo refuses (e.g. the CID is not pinned).
        """
        response = self._post("pin/rm", {"arg": str(cid), "recursive": "true"})
        _kubo_raise_for(response, f"{self.api_url}/api/v0/pin/rm", None)

    def export_file(self, cid: CID, dest: Path) -> int:
        """Export a file block by block, verifying each (see `exporter.export_file`)."""
        return export_file(cid, self, dest)


class GatewayBackend:
    """Any IPFS trustless gateway, for reads only (e.g. another Mercato node)."""

    name = "gateway"

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.Client | None = None,
        policy: FetchPolicy | None = None,
    ) -> None:
        """Args:
            base_url: The gateway's origin, e.g. "http://127.0.0.1:8080".
            client: An httpx client to reuse; one that obeys `policy` is made otherwise.
            policy: Where the gateway may be and how much a fetch may read; the default
                refuses private and loopback addresses (see `remote.FetchPolicy`).

        Raises:
            UnsafeURLError: `base_url` is not an http(s) URL.
        """
        self.policy = policy or FetchPolicy()
        self.policy.check_url(base_url)
        self.base_url = base_url.rstrip("/")
        self._client = client or self.policy.client()

    def _read_only(self, what: str) -> ReadOnlyBackendError:
        return ReadOnlyBackendError(
            f"Cannot {what} through the gateway {self.base_url}: gateways only serve reads. "
            "Use the local store or a kubo node.",
            backend=self.base_url,
        )

    def add(
        self,
        source: ImportSource,
        *,
        cid_version: int | None = None,
        pin: bool = True,
        profile: CidProfile | str | None = None,
    ) -> ImportResult:
        """Always refused.

        Raises:
            ReadOnlyBackendError: Always.
        """
        raise self._read_only("add files")

    def pin(self, cid: CID) -> None:
        """Always refused.

        Raises:
            ReadOnlyBackendError: Always.
        """
        raise self._read_only("pin")

    def unpin(self, cid: CID) -> None:
        """Always refused.

        Raises:
            ReadOnlyBackendError: Always.
        """
        raise self._read_only("unpin")

    def get_block(self, cid: CID) -> bytes:
        """GET `/ipfs/{cid}?format=raw` and verify the bytes.

        Raises:
            BlockNotFoundError: If the gateway answers 404.
            BlockHashMismatchError: If the gateway returned other bytes.
            BlockTooLargeError: If the body passes MAX_BLOCK_SIZE.
            StorageBackendError: If the gateway fails or is unreachable.
        """
        url = f"{self.base_url}/ipfs/{cid}"
        return _fetch_block(
            self._client,
            "GET",
            url,
            cid,
            f"the gateway {url}",
            params={"format": "raw"},
            headers={"Accept": "application/vnd.ipld.raw"},
        )

    def has(self, cid: CID) -> bool:
        """HEAD `/ipfs/{cid}?format=raw`.

        Raises:
            StorageBackendError: If the gateway fails or is unreachable.
        """
        url = f"{self.base_url}/ipfs/{cid}"
        try:
            response = self._client.head(
                url, params={"format": "raw"}, headers={"Accept": "application/vnd.ipld.raw"}
            )
        except httpx.HTTPError as exc:
            raise unreachable(exc, url) from exc
        if response.status_code == 404:
            return False
        _raise_for(response, url, cid)
        return True

    def fetch_car(
        self,
        cid: CID,
        store: Blockstore,
        *,
        pin: bool = True,
        max_bytes: int | None = None,
        max_seconds: float | None = None,
    ) -> None:
        """Fetch a whole DAG as one CAR stream into the local store, verifying every block.

        The CAR's own roots field is ignored (the spec says clients should). Only blocks
        of the DAG under `cid` are written, each after the block that links to it, and
        the DAG must be complete once the stream ends. The body is read with a byte cap
        and the blocks may hold little more than the file size the root declares.

        Args:
            cid: The DAG's root (sha2-256, dag-pb or raw).
            store: Where the blocks go.
            pin: Pin `cid` once the DAG is complete.
            max_bytes: The most the stream may carry; the policy's limit caps it.
            max_seconds: The most the whole stream may take (None: no limit beyond
                the client's per-read timeout).

        Raises:
            BlockNotFoundError: If the gateway answers 404, or the CAR missed blocks.
            BlockHashMismatchError: If any block does not match its CID.
            CarFormatError: If the stream is not CAR v1 (CarTruncatedError when cut,
                CarUnexpectedBlockError for a block outside the DAG).
            DagFormatError: If a node is malformed or the DAG outgrows its declared size.
            BlockTooLargeError: If a block is above MAX_BLOCK_SIZE.
            FetchTooLargeError: If the stream passes its byte cap.
            UnsafeURLError: If the gateway's address is not allowed by the policy.
            StorageBackendError: If the gateway fails, redirects, is unreachable or takes
                longer than `max_seconds`.
        """
        url = f"{self.base_url}/ipfs/{cid}"
        limit = min(max_bytes or self.policy.max_bytes, self.policy.max_bytes)
        try:
            with self._client.stream(
                "GET",
                url,
                params={"format": "car", "dag-scope": "all"},
                headers={"Accept": "application/vnd.ipld.car; version=1; order=dfs; dups=n"},
            ) as response:
                _raise_for(response, url, cid)
                check_length(response, limit, url)
                pieces: Iterable[bytes] = capped(response.iter_raw(), limit, url, max_seconds)
                with store.writing():
                    import_car(pieces, store, pin=False, name=origin_of(url), root=cid)
                    if pin:
                        store.pin(cid)
        except httpx.HTTPError as exc:
            raise unreachable(exc, url) from exc

    def export_file(self, cid: CID, dest: Path) -> int:
        """Export a file block by block over `format=raw`, verifying each."""
        return export_file(cid, self, dest)


__all__ = [
    "MAX_BLOCK_SIZE",
    "MAX_FETCH_BYTES",
    "GatewayBackend",
    "KuboBackend",
    "LocalBackend",
    "StorageBackend",
]


def _fetch_block(
    client: httpx.Client,
    method: str,
    url: str,
    cid: CID,
    what: str,
    raise_for: Callable[[httpx.Response, str, CID | None], None] = _raise_for,
    **request: Any,
) -> bytes:
    """One block over HTTP, size-limited and checked against its CID (kubo and gateways)."""
    try:
        with client.stream(method, url, **request) as response:
            raise_for(response, url, cid)
            data = _read_limited(response, cid)
    except httpx.HTTPError as exc:
        raise StorageBackendError(
            f"Could not reach {what} ({type(exc).__name__}).", url=origin_of(url)
        ) from exc
    verify_block(cid, data, origin_of(url))
    return data
