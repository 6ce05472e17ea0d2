# SPDX-License-Identifier: AGPL-3.0-only
"""CAR v1: round trips, and every kind of bad input gets its typed error."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import dag_cbor
import pytest
from multiformats import CID, multihash

from mercato.errors import (
    BlockHashMismatchError,
    BlockNotFoundError,
    BlockTooLargeError,
    CarFormatError,
    CarTruncatedError,
)
from mercato.storage.blockstore import Blockstore
from mercato.storage.car import CarReader, car_header, car_section, export_car, import_car
from mercato.storage.cids import MAX_BLOCK_SIZE
from mercato.storage.dagpb import encode_varint
from mercato.storage.exporter import export_file
from mercato.storage.unixfs import CHUNK_SIZE, import_file

from .sample_data import pseudo_random


def raw_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", multihash.wrap(hashlib.sha256(data).digest(), "sha2-256"))


@pytest.fixture
def car_file(store: Blockstore, tmp_path: Path) -> tuple[CID, Path, bytes]:
    data = pseudo_random(4 * CHUNK_SIZE + 99)
    result = import_file(io.BytesIO(data), store)
    path = tmp_path / "model.car"
    export_car(result.cid, store, path)
    return result.cid, path, data


def test_round_trip_into_another_store(car_file: tuple[CID, Path, bytes], tmp_path: Path) -> None:
    root, path, data = car_file
    other = Blockstore(tmp_path / "other")
    assert import_car(path, other) == [root]
    assert other.pins() == [root]
    export_file(root, other, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


def test_export_is_depth_first_root_first(car_file: tuple[CID, Path, bytes]) -> None:
    root, path, _ = car_file
    with open(path, "rb") as fh:
        reader = CarReader(fh)
        assert reader.roots == [root]
        cids = [cid for cid, _ in reader]
    assert cids[0] == root
    assert len(cids) == 6  # root + 5 leaves, each once


@pytest.mark.parametrize("cut", [0, 1, 5, 60, 100, 200_000, -1])
def test_truncated_car_is_refused(
    car_file: tuple[CID, Path, bytes], tmp_path: Path, cut: int
) -> None:
    _, path, _ = car_file
    raw = path.read_bytes()
    other = Blockstore(tmp_path / "other")
    with pytest.raises(CarTruncatedError):
        import_car(io.BytesIO(raw[:cut]), other)
    assert other.pins() == []
    assert list(other.tmp_dir.iterdir()) == []
    other.gc()
    assert list(other.iter_keys()) == []


def test_block_that_does_not_match_its_cid_is_refused(tmp_path: Path) -> None:
    good = b"the real block"
    car = car_header([raw_cid(good)]) + car_section(raw_cid(good), b"a substitute")
    store = Blockstore(tmp_path / "s")
    with pytest.raises(BlockHashMismatchError) as info:
        import_car(io.BytesIO(car), store)
    assert info.value.cid == str(raw_cid(good))
    assert list(store.iter_keys()) == []


def test_oversized_block_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = b"\0" * (MAX_BLOCK_SIZE + 1)
    car = car_header([raw_cid(big)]) + car_section(raw_cid(big), big)
    with pytest.raises(BlockTooLargeError):
        import_car(io.BytesIO(car), Blockstore(tmp_path / "s"))


def test_huge_declared_length_is_refused_without_reading(tmp_path: Path) -> None:
    car = car_header([raw_cid(b"x")]) + encode_varint(1 << 40)
    with pytest.raises(BlockTooLargeError):
        import_car(io.BytesIO(car), Blockstore(tmp_path / "s"))


def test_car_version_2_header_is_refused(tmp_path: Path) -> None:
    header = dag_cbor.encode({"roots": [], "version": 2})
    with pytest.raises(CarFormatError, match="version 1"):
        import_car(io.BytesIO(encode_varint(len(header)) + header), Blockstore(tmp_path / "s"))


def test_garbage_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CarFormatError):
        import_car(io.BytesIO(b"\x05\xff\xff\xff\xff\xff"), Blockstore(tmp_path / "s"))


def test_car_missing_blocks_is_not_pinned(
    car_file: tuple[CID, Path, bytes], tmp_path: Path
) -> None:
    root, path, _ = car_file
    with open(path, "rb") as fh:
        reader = CarReader(fh)
        sections = list(reader)
    partial = car_header([root]) + b"".join(car_section(c, b) for c, b in sections[:-1])
    other = Blockstore(tmp_path / "other")
    with pytest.raises(BlockNotFoundError):
        import_car(io.BytesIO(partial), other)
    assert other.pins() == []
