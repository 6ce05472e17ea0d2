# SPDX-License-Identifier: AGPL-3.0-only
"""KuboBackend over HTTP against a stand-in kubo RPC server.

kubo cannot be installed on this machine (its installers download prebuilt binaries),
so a small FastAPI app served by uvicorn on 127.0.0.1 speaks the documented RPC
responses of /api/v0/add, block/get, block/stat, pin/add and pin/rm. It stores blocks
with Mercato's own blockstore; what is under test is the client: request shape,
streaming upload, response parsing, CID cross-checks and block verification.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response

from mercato.errors import (
    BlockHashMismatchError,
    BlockNotFoundError,
    StorageBackendError,
)
from mercato.storage.backends import KuboBackend, StorageBackend
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import parse_cid
from mercato.storage.profiles import CidProfile
from mercato.storage.unixfs import CHUNK_SIZE, import_file, only_hash

from .helpers import pseudo_random, serve

pytestmark = pytest.mark.integration

DATA = pseudo_random(2 * CHUNK_SIZE + 10)


def _kubo_error(message: str) -> Response:
    # kubo answers RPC errors with HTTP 500 and this JSON shape.
    body = {"Message": message, "Code": 0, "Type": "error"}
    return Response(json.dumps(body), status_code=500, media_type="application/json")


def _first_multipart_file(body: bytes, content_type: str) -> bytes:
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    part = body.split(b"--" + boundary)[1]
    return part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")


def fake_kubo(store: Blockstore, *, lie_about_cid: bool = False, corrupt: bool = False) -> FastAPI:
    app = FastAPI()
    calls: list[dict[str, str]] = []
    app.state.calls = calls

    @app.post("/api/v0/add")
    async def add(request: Request) -> Response:
        params = dict(request.query_params)
        calls.append(params)
        data = _first_multipart_file(await request.body(), request.headers["content-type"])
        # Like kubo: each add option overrides the node's own Import settings (here
        # kubo's defaults), and --cid-version=1 implies raw leaves unless told otherwise.
        version = int(params.get("cid-version", "0"))
        profile = CidProfile(
            name="as-asked",
            cid_version=version,
            raw_leaves=params.get("raw-leaves", "true" if version else "false") == "true",
            chunk_size=int(params.get("chunker", "size-262144").removeprefix("size-")),
            max_links=int(params.get("max-file-links", "174")),
        )
        result = import_file(io.BytesIO(data), store, profile=profile)
        cid = str(result.cid) if not lie_about_cid else str(only_hash(io.BytesIO(b"x")))
        line = {"Name": "file", "Hash": cid, "Size": str(result.size)}
        return Response(json.dumps(line) + "\n", media_type="application/x-ndjson")

    @app.post("/api/v0/block/get")
    def block_get(arg: str) -> Response:
        try:
            data = store.get(parse_cid(arg))
        except BlockNotFoundError:
            return _kubo_error(f"block was not found locally (offline): ipld: could not find {arg}")
        if corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return Response(data, media_type="text/plain")

    @app.post("/api/v0/block/stat")
    def block_stat(arg: str) -> Response:
        cid = parse_cid(arg)
        if not store.has(cid):
            return _kubo_error(f"block was not found locally (offline): ipld: could not find {arg}")
        return Response(json.dumps({"Key": arg, "Size": store.size(cid)}))

    @app.post("/api/v0/pin/add")
    def pin_add(arg: str) -> Response:
        store.pin(parse_cid(arg))
        return Response(json.dumps({"Pins": [arg]}))

    @app.post("/api/v0/pin/rm")
    def pin_rm(arg: str) -> Response:
        if not store.unpin(parse_cid(arg)):
            return _kubo_error("not pinned or pinned indirectly")
        return Response(json.dumps({"Pins": [arg]}))

    return app


@pytest.fixture
def kubo(tmp_path: Path) -> Iterator[tuple[KuboBackend, Blockstore, FastAPI]]:
    store = Blockstore(tmp_path / "kubo")
    app = fake_kubo(store)
    with serve(app) as url:
        yield KuboBackend(url), store, app


def test_kubo_backend_satisfies_the_protocol() -> None:
    assert isinstance(KuboBackend("http://127.0.0.1:1"), StorageBackend)


@pytest.mark.parametrize("version", [0, 1])
def test_add_streams_and_checks_the_cid(
    kubo: tuple[KuboBackend, Blockstore, FastAPI], tmp_path: Path, version: int
) -> None:
    backend, store, app = kubo
    result = backend.add(iter([DATA[:1000], DATA[1000:]]), cid_version=version)
    assert result.cid == only_hash(io.BytesIO(DATA), cid_version=version)
    assert app.state.calls[-1]["cid-version"] == str(version)
    assert app.state.calls[-1]["raw-leaves"] == ("true" if version == 1 else "false")
    assert store.is_pinned(result.cid)
    assert backend.has(result.cid)
    assert backend.export_file(result.cid, tmp_path / "out") == len(DATA)
    assert (tmp_path / "out").read_bytes() == DATA


def test_add_with_the_unixfs_v1_2025_profile(
    kubo: tuple[KuboBackend, Blockstore, FastAPI], tmp_path: Path
) -> None:
    # A kubo left at its defaults (256 KiB, 174 links, CIDv0) still imports as
    # unixfs-v1-2025, because every parameter travels with the request.
    backend, store, app = kubo
    data = pseudo_random(2 * 1_048_576 + 10, seed=b"v1")
    result = backend.add(io.BytesIO(data), profile="unixfs-v1-2025")
    assert result.cid == only_hash(io.BytesIO(data), profile="unixfs-v1-2025")
    assert str(result.cid).startswith("bafybei")
    assert store.is_pinned(result.cid)
    sent = app.state.calls[-1]
    assert sent["chunker"] == "size-1048576"
    assert sent["max-file-links"] == "1024"
    assert (sent["cid-version"], sent["raw-leaves"], sent["hash"]) == ("1", "true", "sha2-256")
    assert backend.export_file(result.cid, tmp_path / "out") == len(data)
    assert (tmp_path / "out").read_bytes() == data


def test_add_from_path(kubo: tuple[KuboBackend, Blockstore, FastAPI], tmp_path: Path) -> None:
    backend, _, _ = kubo
    path = tmp_path / "model.onnx"
    path.write_bytes(DATA)
    assert backend.add(path).cid == only_hash(path)


def test_pin_and_unpin(kubo: tuple[KuboBackend, Blockstore, FastAPI]) -> None:
    backend, store, _ = kubo
    result = backend.add(io.BytesIO(DATA))
    backend.unpin(result.cid)
    assert not store.is_pinned(result.cid)
    with pytest.raises(StorageBackendError, match="not pinned"):
        backend.unpin(result.cid)
    backend.pin(result.cid)
    assert store.is_pinned(result.cid)


def test_missing_block(kubo: tuple[KuboBackend, Blockstore, FastAPI]) -> None:
    backend, _, _ = kubo
    missing = parse_cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    assert not backend.has(missing)
    with pytest.raises(BlockNotFoundError):
        backend.get_block(missing)


def test_kubo_reporting_another_cid_is_refused(tmp_path: Path) -> None:
    app = fake_kubo(Blockstore(tmp_path / "k"), lie_about_cid=True)
    with serve(app) as url, pytest.raises(StorageBackendError, match="but its bytes give"):
        KuboBackend(url).add(io.BytesIO(DATA))


def test_kubo_answering_another_profile_is_refused(tmp_path: Path) -> None:
    app = fake_kubo(Blockstore(tmp_path / "k"), lie_about_cid=True)
    with serve(app) as url, pytest.raises(StorageBackendError, match="unixfs-v1-2025 profile"):
        KuboBackend(url).add(io.BytesIO(DATA), profile="unixfs-v1-2025")


def test_corrupted_block_from_kubo_is_refused(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "k")
    result = import_file(io.BytesIO(DATA), store)
    with serve(fake_kubo(store, corrupt=True)) as url, pytest.raises(BlockHashMismatchError):
        KuboBackend(url).get_block(result.cid)


def test_unreachable_kubo() -> None:
    with pytest.raises(StorageBackendError, match="Could not reach kubo"):
        KuboBackend("http://127.0.0.1:9").pin(
            parse_cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
        )
