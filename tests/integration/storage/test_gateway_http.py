# SPDX-License-Identifier: AGPL-3.0-only
"""GatewayBackend against real HTTP servers (uvicorn on 127.0.0.1): Mercato's own
trustless-gateway router, and hostile gateways that send other bytes or cut CARs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse

from mercato.crypto import generate_content_key
from mercato.errors import (
    BlockHashMismatchError,
    BlockNotFoundError,
    BlockTooLargeError,
    CarTruncatedError,
    ReadOnlyBackendError,
)
from mercato.gateway.ipfs import create_ipfs_router
from mercato.storage.backends import GatewayBackend, StorageBackend
from mercato.storage.blockstore import Blockstore
from mercato.storage.car import CarReader, iter_car_bytes
from mercato.storage.cids import MAX_BLOCK_SIZE, parse_cid
from mercato.storage.encrypted import encrypt_and_import, export_and_decrypt
from mercato.storage.remote import FetchPolicy
from mercato.storage.unixfs import CHUNK_SIZE, ImportResult, import_file

from .helpers import pseudo_random, serve

pytestmark = pytest.mark.integration

DATA = pseudo_random(3 * CHUNK_SIZE + 77)
# The test servers are on loopback, which the default policy refuses (see
# test_hostile_provider.py); an explicit allow-list lets these through.
LOOPBACK = FetchPolicy.from_settings(local_chain=False, allow=["127.0.0.0/8"])


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Blockstore, ImportResult]:
    store = Blockstore(tmp_path / "origin")
    return store, import_file(io.BytesIO(DATA), store, cid_version=1)


@pytest.fixture
def gateway_url(origin: tuple[Blockstore, ImportResult]) -> Iterator[str]:
    app = FastAPI()
    app.include_router(create_ipfs_router(origin[0]))
    with serve(app) as url:
        yield url


def test_gateway_backend_satisfies_the_protocol() -> None:
    assert isinstance(GatewayBackend("http://127.0.0.1:1"), StorageBackend)


def test_raw_blocks_and_verified_export(
    gateway_url: str, origin: tuple[Blockstore, ImportResult], tmp_path: Path
) -> None:
    store, result = origin
    backend = GatewayBackend(gateway_url, policy=LOOPBACK)
    assert backend.get_block(result.cid) == store.get(result.cid)
    assert backend.has(result.cid)
    assert backend.export_file(result.cid, tmp_path / "out") == len(DATA)
    assert (tmp_path / "out").read_bytes() == DATA


def test_fetch_car_into_local_store(
    gateway_url: str, origin: tuple[Blockstore, ImportResult], tmp_path: Path
) -> None:
    _, result = origin
    local = Blockstore(tmp_path / "local")
    GatewayBackend(gateway_url, policy=LOOPBACK).fetch_car(result.cid, local)
    assert local.pins() == [result.cid]
    from mercato.storage.exporter import export_file

    export_file(result.cid, local, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == DATA


def test_unknown_cid(gateway_url: str) -> None:
    missing = parse_cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
    backend = GatewayBackend(gateway_url, policy=LOOPBACK)
    assert not backend.has(missing)
    with pytest.raises(BlockNotFoundError):
        backend.get_block(missing)


def test_gateway_is_read_only(gateway_url: str) -> None:
    with pytest.raises(ReadOnlyBackendError):
        GatewayBackend(gateway_url, policy=LOOPBACK).add(io.BytesIO(b"x"))


def hostile_app(origin_store: Blockstore, mode: str) -> FastAPI:
    app = FastAPI()

    @app.get("/ipfs/{cid}")
    def lie(cid: str, format: str = "raw") -> Response:
        root = parse_cid(cid)
        if mode == "other-bytes" and format == "raw":
            return Response(b"not what you asked for", media_type="application/vnd.ipld.raw")
        if mode == "huge":
            chunk = b"\0" * 65536
            n = MAX_BLOCK_SIZE // len(chunk) + 2
            return StreamingResponse(iter([chunk] * n), media_type="application/vnd.ipld.raw")
        car = b"".join(iter_car_bytes(root, origin_store))
        if mode == "other-bytes":  # flip one byte inside the last block
            car = car[:-10] + bytes([car[-10] ^ 1]) + car[-9:]
        elif mode == "truncated":
            car = car[: len(car) // 2]
        return Response(car, media_type="application/vnd.ipld.car; version=1")

    return app


def test_gateway_returning_other_bytes_is_rejected(
    origin: tuple[Blockstore, ImportResult], tmp_path: Path
) -> None:
    store, result = origin
    with serve(hostile_app(store, "other-bytes")) as url:
        backend = GatewayBackend(url, policy=LOOPBACK)
        with pytest.raises(BlockHashMismatchError) as info:
            backend.get_block(result.cid)
        assert info.value.cid == str(result.cid)
        assert url in info.value.source
        local = Blockstore(tmp_path / "local")
        with pytest.raises(BlockHashMismatchError):
            backend.fetch_car(result.cid, local)
        assert local.pins() == []
        with pytest.raises(BlockHashMismatchError):
            backend.export_file(result.cid, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_truncated_car_from_gateway(
    origin: tuple[Blockstore, ImportResult], tmp_path: Path
) -> None:
    store, result = origin
    with serve(hostile_app(store, "truncated")) as url:
        local = Blockstore(tmp_path / "local")
        with pytest.raises(CarTruncatedError):
            GatewayBackend(url, policy=LOOPBACK).fetch_car(result.cid, local)
        assert local.pins() == []


def test_endless_block_body_is_cut_off(origin: tuple[Blockstore, ImportResult]) -> None:
    store, result = origin
    with serve(hostile_app(store, "huge")) as url, pytest.raises(BlockTooLargeError):
        GatewayBackend(url, policy=LOOPBACK).get_block(result.cid)


def test_plain_get_streams_the_file_over_http(
    gateway_url: str, origin: tuple[Blockstore, ImportResult]
) -> None:
    _, result = origin
    with httpx.Client() as client:
        response = client.get(f"{gateway_url}/ipfs/{result.cid}")
        assert response.status_code == 200
        assert response.content == DATA
        assert int(response.headers["content-length"]) == len(DATA)
        car = client.get(
            f"{gateway_url}/ipfs/{result.cid}",
            params={"format": "car", "entity-bytes": f"{CHUNK_SIZE}:{CHUNK_SIZE + 9}"},
        )
    blocks = list(CarReader(io.BytesIO(car.content)))
    assert blocks[0][0] == result.cid
    assert [block[:10] for _, block in blocks[1:]] == [DATA[CHUNK_SIZE : CHUNK_SIZE + 10]]


def test_encrypted_artifact_round_trip_through_a_gateway(
    tmp_path: Path, gateway_url: str, origin: tuple[Blockstore, ImportResult]
) -> None:
    # Seller imports into its store (served by the gateway); buyer decrypts from it.
    store, _ = origin
    plain = tmp_path / "model.onnx"
    plain.write_bytes(DATA)
    key = generate_content_key()
    cid, digest, size = encrypt_and_import(plain, store, key)
    dest = tmp_path / "bought.onnx"
    assert (
        export_and_decrypt(cid, GatewayBackend(gateway_url, policy=LOOPBACK), key, digest, dest)
        == size
    )
    assert dest.read_bytes() == DATA
