# SPDX-License-Identifier: AGPL-3.0-only
"""CAR streams made by someone else, imported for one root: only that DAG's blocks are
written, in link order, with sha2-256 dag-pb/raw CIDs, within the size the root
declares; the reader's own limits hold for headers, sections and varints."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import dag_cbor
import pytest
from multiformats import CID, multihash

from mercato.errors import (
    BlockNotFoundError,
    BlockTooLargeError,
    CarFormatError,
    CarUnexpectedBlockError,
    DagFormatError,
    InvalidCIDError,
)
from mercato.storage.blockstore import Blockstore
from mercato.storage.car import (
    MAX_HEADER_SIZE,
    block_budget,
    car_header,
    car_section,
    import_car,
    iter_dag,
)
from mercato.storage.cids import MAX_BLOCK_SIZE
from mercato.storage.dagpb import (
    MAX_BLOCKSIZES,
    UNIXFS_FILE,
    PBLink,
    UnixFSData,
    decode_unixfs,
    encode_node,
    encode_unixfs,
    encode_varint,
)
from mercato.storage.exporter import MAX_DEPTH, iter_file
from mercato.storage.unixfs import CHUNK_SIZE, import_file

from .sample_data import pseudo_random


def _cid(data: bytes, codec: str = "raw", version: int = 1) -> CID:
    mh = multihash.wrap(hashlib.sha256(data).digest(), "sha2-256")
    return CID("base58btc" if version == 0 else "base32", version, codec, mh)


def _file_node(links: list[tuple[CID, int]], filesize: int | None = None) -> bytes:
    sizes = [size for _, size in links]
    meta = UnixFSData(
        type=UNIXFS_FILE, filesize=sum(sizes) if filesize is None else filesize, blocksizes=sizes
    )
    return encode_node(
        [PBLink(hash=bytes(cid), name="", tsize=size) for cid, size in links],
        encode_unixfs(meta),
    )


def _car(roots: list[CID], blocks: list[tuple[CID, bytes]]) -> bytes:
    return car_header(roots) + b"".join(car_section(c, b) for c, b in blocks)


def _all_blocks(store: Blockstore) -> int:
    return sum(1 for _ in store.iter_keys())


@pytest.mark.parametrize("cid_version", [0, 1])
def test_an_honest_dag_imports_for_its_root(
    store: Blockstore, tmp_path: Path, cid_version: int
) -> None:
    result = import_file(
        io.BytesIO(pseudo_random(3 * CHUNK_SIZE + 1)), store, cid_version=cid_version
    )
    blocks = list(iter_dag(result.cid, store))
    car = _car([result.cid], blocks)
    other = Blockstore(tmp_path / "other")
    assert import_car(io.BytesIO(car), other, root=result.cid) == [result.cid]
    assert other.pins() == [result.cid]
    assert _all_blocks(other) == len(blocks) == 5  # the root and four leaves


def test_header_roots_are_ignored_when_a_root_is_asked_for(
    store: Blockstore, tmp_path: Path
) -> None:
    wanted = import_file(io.BytesIO(b"wanted"), store)
    pushed = import_file(io.BytesIO(b"pushed"), store)
    car = _car([pushed.cid], [(wanted.cid, store.get(wanted.cid))])
    other = Blockstore(tmp_path / "other")
    assert import_car(io.BytesIO(car), other, root=wanted.cid) == [wanted.cid]
    assert other.pins() == [wanted.cid]
    assert not other.has(pushed.cid)


def test_a_child_before_its_parent_is_refused(tmp_path: Path) -> None:
    leaf = b"x" * 100
    root_block = _file_node([(_cid(leaf), len(leaf))])
    root = _cid(root_block, "dag-pb", 0)
    store = Blockstore(tmp_path / "s")
    with pytest.raises(CarUnexpectedBlockError) as info:
        import_car(
            io.BytesIO(_car([root], [(_cid(leaf), leaf), (root, root_block)])), store, root=root
        )
    assert info.value.cid == str(_cid(leaf))
    assert info.value.code == "car_unexpected_block"
    assert _all_blocks(store) == 0


def test_a_dag_larger_than_its_root_declares_is_refused(tmp_path: Path) -> None:
    # The root says the file has 10 bytes but links to a 1 MiB block: a DAG that
    # would make the node store far more than the file it describes.
    big = pseudo_random(1024 * 1024)
    root_block = _file_node([(_cid(big), 10)], filesize=10)
    root = _cid(root_block, "dag-pb", 0)
    store = Blockstore(tmp_path / "s")
    with pytest.raises(DagFormatError):
        import_car(
            io.BytesIO(_car([root], [(root, root_block), (_cid(big), big)])), store, root=root
        )
    assert not store.has(_cid(big))
    assert store.pins() == []
    assert block_budget(10) < len(big)


def test_a_stream_that_ends_before_the_dag_is_refused(tmp_path: Path) -> None:
    leaves = [b"a" * 50, b"b" * 50]
    root_block = _file_node([(_cid(leaf), 50) for leaf in leaves])
    root = _cid(root_block, "dag-pb", 0)
    store = Blockstore(tmp_path / "s")
    car = _car([root], [(root, root_block), (_cid(leaves[0]), leaves[0])])
    with pytest.raises(BlockNotFoundError):
        import_car(io.BytesIO(car), store, root=root)
    assert store.pins() == []


def test_repeated_sections_are_written_once(tmp_path: Path) -> None:
    leaf = b"z" * 64
    root_block = _file_node([(_cid(leaf), 64)] * 3)
    root = _cid(root_block, "dag-pb", 0)
    store = Blockstore(tmp_path / "s")
    car = _car(
        [root], [(root, root_block), (_cid(leaf), leaf), (_cid(leaf), leaf), (root, root_block)]
    )
    assert import_car(io.BytesIO(car), store, root=root) == [root]
    assert _all_blocks(store) == 2


def test_identity_cids_are_refused_as_roots_and_links(tmp_path: Path) -> None:
    identity = CID("base32", 1, "raw", multihash.wrap(b"inline data", "identity"))
    store = Blockstore(tmp_path / "s")
    with pytest.raises(DagFormatError):
        import_car(io.BytesIO(_car([identity], [])), store, root=identity)
    root_block = _file_node([(identity, 11)])
    root = _cid(root_block, "dag-pb", 0)
    with pytest.raises(DagFormatError):
        import_car(io.BytesIO(_car([root], [(root, root_block)])), store, root=root)
    assert store.pins() == []


def test_other_hash_functions_and_codecs_are_refused(tmp_path: Path) -> None:
    data = b"hashed with blake2b"
    blake = CID("base32", 1, "raw", multihash.digest(data, "blake2b-256"))
    cbor_block = dag_cbor.encode({"a": 1})
    cbor = _cid(cbor_block, "dag-cbor")
    store = Blockstore(tmp_path / "s")
    for bad, block in ((blake, data), (cbor, cbor_block)):
        root_block = _file_node([(bad, len(block))])
        root = _cid(root_block, "dag-pb", 0)
        car = _car([root], [(root, root_block), (bad, block)])
        with pytest.raises(DagFormatError):
            import_car(io.BytesIO(car), store, root=root)
        assert not store.has(bad)


def _wide_node(count: int, size: int) -> bytes:
    # Links built as binary CIDv1 raw leaves (building `CID` objects would take seconds).
    links = [
        PBLink(hash=b"\x01\x55\x12\x20" + hashlib.sha256(i.to_bytes(4, "big")).digest(), tsize=size)
        for i in range(count)
    ]
    meta = UnixFSData(type=UNIXFS_FILE, filesize=count * size, blocksizes=[size] * count)
    return encode_node(links, encode_unixfs(meta))


def test_a_node_with_a_huge_links_array(tmp_path: Path) -> None:
    # ~40,000 links fit in one 2 MiB block. Links to 4-byte blocks: the node alone
    # outweighs the file it declares, so it is refused at once.
    root_block = _wide_node(40_000, 4)
    assert len(root_block) <= MAX_BLOCK_SIZE
    root = _cid(root_block, "dag-pb", 0)
    store = Blockstore(tmp_path / "s")
    with pytest.raises(DagFormatError):
        import_car(io.BytesIO(_car([root], [(root, root_block)])), store, root=root)
    # Links to full chunks: the import keeps one entry per link and refuses the
    # stream once it ends without them.
    root_block = _wide_node(40_000, CHUNK_SIZE)
    root = _cid(root_block, "dag-pb", 0)
    with pytest.raises(BlockNotFoundError):
        import_car(io.BytesIO(_car([root], [(root, root_block)])), store, root=root)
    assert store.pins() == []


def test_reader_limits_on_headers_and_sections(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "s")
    with pytest.raises(CarFormatError):  # a header length beyond the limit
        import_car(io.BytesIO(encode_varint(MAX_HEADER_SIZE + 1)), store)
    header = car_header([_cid(b"x")])
    with pytest.raises(BlockTooLargeError):  # a section longer than any block may be
        import_car(io.BytesIO(header + encode_varint(MAX_BLOCK_SIZE + 4096) + b"\x01"), store)
    with pytest.raises(CarFormatError):  # a varint that never ends
        import_car(io.BytesIO(header + b"\xff" * 20), store)
    roots = dag_cbor.encode({"roots": ["not a cid"], "version": 1})
    with pytest.raises(CarFormatError):
        import_car(io.BytesIO(encode_varint(len(roots)) + roots), store)
    assert _all_blocks(store) == 0


def test_a_section_whose_cid_is_not_a_cid_is_refused(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "s")
    header = car_header([_cid(b"x")])
    section = b"\x01\x55\x99\x99\x99\x99\x01" + b"data"  # an unknown multihash code
    with pytest.raises((CarFormatError, InvalidCIDError)):
        import_car(io.BytesIO(header + encode_varint(len(section)) + section), store)


def test_blocksizes_without_links_are_refused(store: Blockstore) -> None:
    # A node with no links but a thousand blocksizes: its sizes add up, its shape does not.
    meta = UnixFSData(type=UNIXFS_FILE, filesize=1000, blocksizes=[1] * 1000)
    block = encode_node([], encode_unixfs(meta))
    root = _cid(block, "dag-pb", 0)
    store.put(root, block)
    with pytest.raises(DagFormatError):
        next(iter_file(root, store))


def test_a_packed_blocksizes_field_cannot_grow_without_bound() -> None:
    packed = b"\x01" * (MAX_BLOCKSIZES + 1)
    message = b"\x08\x02" + b"\x22" + encode_varint(len(packed)) + packed
    with pytest.raises(DagFormatError, match="too many blocksizes"):
        decode_unixfs(message)


def test_a_dag_deeper_than_the_limit_is_refused(store: Blockstore) -> None:
    leaf = b"deep"
    child = _cid(leaf, "raw")
    store.put(child, leaf)
    for _ in range(MAX_DEPTH + 2):
        block = _file_node([(child, len(leaf))])
        child = _cid(block, "dag-pb", 0)
        store.put(child, block)
    with pytest.raises(DagFormatError, match="deeper"):
        b"".join(bytes(p) for p in iter_file(child, store))
