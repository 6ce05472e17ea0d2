# SPDX-License-Identifier: AGPL-3.0-only
"""HTTP Range on `GET /ipfs/{cid}` (the file's bytes), through the FastAPI app."""

from __future__ import annotations

import io

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from multiformats import CID

from mercato.errors import BlockHashMismatchError
from mercato.gateway.ipfs import create_ipfs_router
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import block_key, cid_from_bytes
from mercato.storage.dagpb import decode_node
from mercato.storage.unixfs import CHUNK_SIZE, ImportResult, import_file

from .sample_data import pseudo_random

C = CHUNK_SIZE
SIZE = 12 * C + 1000  # a little over 3 MB: 13 leaves under one root
DATA = pseudo_random(SIZE, b"range")


class CountingStore:
    """The real store, counting the blocks the gateway reads through it."""

    def __init__(self, store: Blockstore) -> None:
        self.store = store
        self.reads = 0

    def get_block(self, cid: CID) -> bytes:
        self.reads += 1
        return self.store.get_block(cid)

    def get_raw(self, cid_bytes: bytes) -> bytes:
        self.reads += 1
        return self.store.get_raw(cid_bytes)


@pytest.fixture
def counting(store: Blockstore) -> CountingStore:
    return CountingStore(store)


@pytest.fixture
def client(counting: CountingStore) -> TestClient:
    app = FastAPI()
    app.include_router(create_ipfs_router(counting))
    return TestClient(app)


@pytest.fixture(params=[0, 1], ids=["cidv0", "cidv1"])
def imported(store: Blockstore, request: pytest.FixtureRequest) -> ImportResult:
    return import_file(io.BytesIO(DATA), store, cid_version=request.param)


def leaf_path(store: Blockstore, root: CID, index: int) -> str:
    link = decode_node(store.get(root)).links[index]
    key = block_key(cid_from_bytes(link.hash))
    return str(store.blocks_dir / key[-3:-1] / key)


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        (f"bytes=0-{C - 1}", 0, C - 1),  # exactly the first block
        (f"bytes={C}-{2 * C - 1}", C, 2 * C - 1),  # starts and ends on block boundaries
        (f"bytes={C - 1}-{C}", C - 1, C),  # one byte each side of a boundary
        (f"bytes={3 * C + 7}-{9 * C + 11}", 3 * C + 7, 9 * C + 11),
        (f"bytes={5 * C + 7}-", 5 * C + 7, SIZE - 1),
        (f"bytes={12 * C}-", 12 * C, SIZE - 1),  # the short last block
        ("bytes=-1", SIZE - 1, SIZE - 1),
        (f"bytes=-{C + 1000}", SIZE - C - 1000, SIZE - 1),
        (f"bytes=100-{2 * SIZE}", 100, SIZE - 1),  # clamped to the file
        (f"bytes=-{SIZE + 10}", 0, SIZE - 1),  # longer than the file: all of it
    ],
)
def test_single_range_is_206_with_exactly_those_bytes(
    client: TestClient, imported: ImportResult, header: str, first: int, last: int
) -> None:
    response = client.get(f"/ipfs/{imported.cid}", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == DATA[first : last + 1]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
    assert int(response.headers["content-length"]) == last - first + 1
    assert response.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize(
    ("header", "blocks"),
    [
        (f"bytes={4 * C + 10}-{4 * C + 20}", 2),  # root + one leaf
        (f"bytes={4 * C}-{6 * C - 1}", 3),  # root + two leaves, on boundaries
        ("bytes=-1", 2),  # root + the last leaf
    ],
)
def test_only_the_blocks_holding_the_range_are_read(
    client: TestClient, counting: CountingStore, imported: ImportResult, header: str, blocks: int
) -> None:
    counting.reads = 0
    response = client.get(f"/ipfs/{imported.cid}", headers={"Range": header})
    assert response.status_code == 206
    # The root is read once for the size and once by the walk.
    assert counting.reads == blocks + 1


def test_a_damaged_leaf_outside_the_range_does_not_matter_one_inside_ends_it(
    client: TestClient, store: Blockstore, imported: ImportResult
) -> None:
    with open(leaf_path(store, imported.cid, 7), "r+b") as fh:
        fh.write(b"\0" * 16)
    inside = client.get(f"/ipfs/{imported.cid}", headers={"Range": f"bytes=0-{2 * C}"})
    assert inside.content == DATA[: 2 * C + 1]
    with pytest.raises(BlockHashMismatchError):
        client.get(f"/ipfs/{imported.cid}", headers={"Range": f"bytes={7 * C + 5}-{7 * C + 9}"})


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_unsatisfiable_range_is_416(
    client: TestClient, imported: ImportResult, header: str
) -> None:
    response = client.get(f"/ipfs/{imported.cid}", headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"


def test_any_range_of_an_empty_file_is_416(client: TestClient, store: Blockstore) -> None:
    result = import_file(io.BytesIO(b""), store)
    response = client.get(f"/ipfs/{result.cid}", headers={"Range": "bytes=0-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */0"


@pytest.mark.parametrize(
    "header", ["bytes=0-1,5-6", "bytes=a-b", "items=0-1", f"bytes={C}-5", "bytes=-", "bytes=+1-2"]
)
def test_several_or_malformed_ranges_get_the_whole_file(
    client: TestClient, imported: ImportResult, header: str
) -> None:
    response = client.get(f"/ipfs/{imported.cid}", headers={"Range": header})
    assert response.status_code == 200
    assert response.content == DATA
    assert "content-range" not in response.headers


def test_if_range_is_honoured_only_for_this_content(
    client: TestClient, imported: ImportResult
) -> None:
    url = f"/ipfs/{imported.cid}"
    same = client.get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{imported.cid}"'})
    assert (same.status_code, same.content) == (206, DATA[:10])
    other = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"something-else"'})
    assert (other.status_code, other.content) == (200, DATA)


def test_head_with_a_range_gives_its_headers(client: TestClient, imported: ImportResult) -> None:
    response = client.head(f"/ipfs/{imported.cid}", headers={"Range": f"bytes={C}-{3 * C - 1}"})
    assert response.status_code == 206
    assert response.content == b""
    assert response.headers["content-range"] == f"bytes {C}-{3 * C - 1}/{SIZE}"
    assert int(response.headers["content-length"]) == 2 * C


def test_deep_dag_offsets_add_up_across_levels(client: TestClient, store: Blockstore) -> None:
    # 176 leaves: two levels of parents; the range crosses from one level-1 node to the next.
    data = b"".join(i.to_bytes(8, "big") * (C // 8) for i in range(176))
    result = import_file(io.BytesIO(data), store, cid_version=1)
    first, last = 173 * C + 5, 175 * C + 3
    response = client.get(f"/ipfs/{result.cid}", headers={"Range": f"bytes={first}-{last}"})
    assert response.status_code == 206
    assert response.content == data[first : last + 1]


def test_repeated_chunks_are_all_served(client: TestClient, store: Blockstore) -> None:
    # Every leaf is the same block: a CAR sends it once, but the bytes need each copy.
    data = b"\0" * (5 * C) + b"tail"
    result = import_file(io.BytesIO(data), store)
    response = client.get(f"/ipfs/{result.cid}", headers={"Range": f"bytes={C - 2}-"})
    assert response.status_code == 206
    assert response.content == data[C - 2 :]
