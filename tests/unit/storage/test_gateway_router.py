# SPDX-License-Identifier: AGPL-3.0-only
"""The trustless-gateway router, in process (the HTTP-level tests are in integration)."""

from __future__ import annotations

import hashlib
import io

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mercato.errors import BlockHashMismatchError
from mercato.gateway.ipfs import (
    CAR_CONTENT_TYPE,
    FILE_MEDIA_TYPE,
    RAW_MEDIA_TYPE,
    create_ipfs_router,
)
from mercato.storage.blockstore import Blockstore
from mercato.storage.car import CarReader
from mercato.storage.cids import block_key, cid_from_bytes, sha256_cid_bytes
from mercato.storage.dagpb import UNIXFS_DIRECTORY, UnixFSData, encode_node, encode_unixfs
from mercato.storage.unixfs import CHUNK_SIZE, ImportResult, import_file

from .sample_data import pseudo_random


@pytest.fixture
def imported(store: Blockstore) -> ImportResult:
    return import_file(io.BytesIO(pseudo_random(2 * CHUNK_SIZE + 5)), store)


@pytest.fixture
def client(store: Blockstore) -> TestClient:
    app = FastAPI()
    app.include_router(create_ipfs_router(store))
    return TestClient(app)


def test_raw_block(client: TestClient, store: Blockstore, imported: ImportResult) -> None:
    response = client.get(f"/ipfs/{imported.cid}?format=raw")
    assert response.status_code == 200
    assert response.headers["content-type"] == RAW_MEDIA_TYPE
    assert response.content == store.get(imported.cid)
    assert response.headers["etag"] == f'"{imported.cid}.raw"'
    assert "attachment" in response.headers["content-disposition"]


def test_accept_header_selects_the_format(client: TestClient, imported: ImportResult) -> None:
    raw = client.get(f"/ipfs/{imported.cid}", headers={"Accept": RAW_MEDIA_TYPE})
    assert raw.headers["content-type"] == RAW_MEDIA_TYPE
    car = client.get(f"/ipfs/{imported.cid}", headers={"Accept": "application/vnd.ipld.car"})
    assert car.headers["content-type"] == CAR_CONTENT_TYPE


def test_format_param_wins_over_accept(client: TestClient, imported: ImportResult) -> None:
    response = client.get(f"/ipfs/{imported.cid}?format=car", headers={"Accept": RAW_MEDIA_TYPE})
    assert response.headers["content-type"] == CAR_CONTENT_TYPE


def test_car_holds_the_whole_dag(client: TestClient, imported: ImportResult) -> None:
    response = client.get(f"/ipfs/{imported.cid}?format=car")
    assert response.status_code == 200
    reader = CarReader(io.BytesIO(response.content))
    cids = [cid for cid, _ in reader]
    assert cids[0] == imported.cid
    assert len(cids) == 4


def test_dag_scope_block_sends_only_the_root(client: TestClient, imported: ImportResult) -> None:
    response = client.get(f"/ipfs/{imported.cid}?format=car&dag-scope=block")
    assert [cid for cid, _ in CarReader(io.BytesIO(response.content))] == [imported.cid]


def test_head(client: TestClient, store: Blockstore, imported: ImportResult) -> None:
    response = client.head(f"/ipfs/{imported.cid}?format=raw")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len(store.get(imported.cid))


def test_unknown_cid_is_404(client: TestClient) -> None:
    missing = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert client.get(f"/ipfs/{missing}?format=raw").status_code == 404
    assert client.head(f"/ipfs/{missing}?format=raw").status_code == 404


def test_bad_requests_are_400(client: TestClient, imported: ImportResult) -> None:
    assert client.get("/ipfs/not-a-cid?format=raw").status_code == 400
    assert client.get(f"/ipfs/{imported.cid}?format=tar").status_code == 400


def test_corrupted_block_is_not_served(
    client: TestClient, store: Blockstore, imported: ImportResult
) -> None:
    key = block_key(imported.cid)
    (store.blocks_dir / key[-3:-1] / key).write_bytes(b"tampered")
    # TestClient re-raises the server-side error: the store refused to serve bad bytes.
    with pytest.raises(BlockHashMismatchError) as info:
        client.get(f"/ipfs/{imported.cid}?format=raw")
    assert info.value.cid == str(imported.cid)


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("size", [0, 5, 2 * CHUNK_SIZE + 5])
def test_plain_get_serves_the_file(
    client: TestClient, store: Blockstore, version: int, size: int
) -> None:
    data = pseudo_random(size, b"plain get")
    result = import_file(io.BytesIO(data), store, cid_version=version)
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "text/html,*/*;q=0.8"}):
        response = client.get(f"/ipfs/{result.cid}", headers=headers)
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == FILE_MEDIA_TYPE
        assert int(response.headers["content-length"]) == size
        assert response.headers["etag"] == f'"{result.cid}"'
        assert response.headers["x-ipfs-path"] == f"/ipfs/{result.cid}"


def test_plain_head_gives_the_file_size(client: TestClient, imported: ImportResult) -> None:
    response = client.head(f"/ipfs/{imported.cid}")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == imported.size


def test_plain_get_of_a_directory_is_501(client: TestClient, store: Blockstore) -> None:
    block = encode_node([], encode_unixfs(UnixFSData(type=UNIXFS_DIRECTORY)))
    cid = cid_from_bytes(sha256_cid_bytes(1, 0x70, hashlib.sha256(block).digest()))
    store.put(cid, block)
    assert client.get(f"/ipfs/{cid}").status_code == 501
    assert client.get(f"/ipfs/{cid}?format=raw").content == block  # still served as a block


def test_plain_get_never_serves_a_corrupted_leaf(
    client: TestClient, store: Blockstore, imported: ImportResult
) -> None:
    root = store.get(imported.cid)
    leaf = cid_from_bytes(root[4:38])  # first link's Hash: 0x12 len 0x0a 0x22 <34 bytes>
    key = block_key(leaf)
    path = store.blocks_dir / key[-3:-1] / key
    path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(BlockHashMismatchError) as info:
        client.get(f"/ipfs/{imported.cid}")
    assert info.value.cid == str(leaf)


def distinct_chunks(count: int) -> list[bytes]:
    """`count` different chunks, cheap to build (each repeats its own index)."""
    return [i.to_bytes(8, "big") * (CHUNK_SIZE // 8) for i in range(count)]


def leaf_cid(chunk: bytes) -> str:
    return str(cid_from_bytes(sha256_cid_bytes(1, 0x55, hashlib.sha256(chunk).digest())))


@pytest.mark.parametrize(
    ("entity_bytes", "first_chunk", "last_chunk"),
    [
        ("0:0", 0, 0),
        (f"{CHUNK_SIZE}:{2 * CHUNK_SIZE}", 1, 2),
        (f"{CHUNK_SIZE + 1}:{2 * CHUNK_SIZE - 1}", 1, 1),
        ("-1:*", 9, 9),
        (f"{8 * CHUNK_SIZE}:*", 8, 9),
        (f"0:{-CHUNK_SIZE - 1}", 0, 8),
    ],
)
def test_entity_bytes_sends_only_the_blocks_of_the_range(
    client: TestClient, store: Blockstore, entity_bytes: str, first_chunk: int, last_chunk: int
) -> None:
    chunks = distinct_chunks(10)
    result = import_file(io.BytesIO(b"".join(chunks)), store, cid_version=1)
    response = client.get(f"/ipfs/{result.cid}?format=car&entity-bytes={entity_bytes}")
    assert response.status_code == 200
    blocks = list(CarReader(io.BytesIO(response.content)))  # verifies every block
    assert blocks[0][0] == result.cid
    leaves = [str(cid) for cid, _ in blocks[1:]]
    assert leaves == [leaf_cid(c) for c in chunks[first_chunk : last_chunk + 1]]


def test_entity_bytes_walks_a_deep_dag(client: TestClient, store: Blockstore) -> None:
    # 176 leaves: two levels of parents, so offsets must add up across levels.
    chunks = distinct_chunks(176)
    result = import_file(io.BytesIO(b"".join(chunks)), store, cid_version=1)
    first, last = 173 * CHUNK_SIZE + 5, 175 * CHUNK_SIZE
    response = client.get(f"/ipfs/{result.cid}?format=car&entity-bytes={first}:{last}")
    blocks = list(CarReader(io.BytesIO(response.content)))
    raw = [str(cid) for cid, _ in blocks if cid.codec.name == "raw"]
    assert raw == [leaf_cid(c) for c in chunks[173:176]]
    parents = [cid for cid, _ in blocks if cid.codec.name == "dag-pb"]
    assert parents[0] == result.cid
    assert len(parents) == 3  # the root and both level-1 nodes the range spans


def test_bad_entity_bytes_is_400(client: TestClient, imported: ImportResult) -> None:
    base = f"/ipfs/{imported.cid}?format=car&entity-bytes="
    assert client.get(base + "10").status_code == 400
    assert client.get(base + "a:b").status_code == 400
    assert client.get(base + "10:5").status_code == 400
