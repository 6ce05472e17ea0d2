# SPDX-License-Identifier: AGPL-3.0-only
"""Export / verified read throughput vs a raw sequential read of the same file.

Imports a --size MiB file, then compares (warm page cache):
- raw read: reading the original file sequentially (no hashing: a memory copy);
- read + sha256: the same read, hashed in one thread (what any verified read costs);
- verified read: `iter_file`, which re-hashes every block against its CID;
- copy: copying the original file to a new one with fsync (what any export costs);
- export: `export_file` (verified read + write + fsync + rename);
- CAR stream: `iter_car_bytes` over the whole DAG (verified, nothing written);
- CAR export: `export_car` (CAR stream + write + fsync + rename).
Verified read and CAR stream are compared with both read baselines, the exports with
the copy.

Usage: .venv/bin/python benchmarks/storage_export.py [--size MiB]   (default 1024)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from multiformats import CID

from mercato.storage.blockstore import Blockstore
from mercato.storage.car import export_car, iter_car_bytes
from mercato.storage.exporter import export_file, iter_file
from mercato.storage.unixfs import import_file


def rate(size: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return size / (time.perf_counter() - start) / 2**20


def raw_read(path: Path) -> None:
    with open(path, "rb", buffering=0) as fh:
        while fh.read(1 << 20):
            pass


def sha256_read(path: Path) -> None:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while data := fh.read(1 << 20):
            digest.update(data)


def drain(cid: CID, store: Blockstore) -> None:
    for _ in iter_file(cid, store):
        pass


def drain_car(cid: CID, store: Blockstore) -> None:
    for _ in iter_car_bytes(cid, store):
        pass


def copy_fsync(path: Path, dest: Path) -> None:
    with open(path, "rb", buffering=0) as src, open(dest, "wb") as out:
        while data := src.read(1 << 20):
            out.write(data)
        out.flush()
        os.fsync(out.fileno())
    dest.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    args = parser.parse_args()
    size = args.size * 2**20
    scratch = Path(tempfile.mkdtemp(prefix="mercato-bench-", dir=args.dir))
    try:
        src = scratch / "model.bin"
        with open(src, "wb") as fh:
            for _ in range(args.size):
                fh.write(os.urandom(2**20))
        for version in (0, 1):
            store = Blockstore(scratch / f"store{version}")
            cid = import_file(src, store, cid_version=version).cid
            raw_read(src)
            for _ in iter_file(cid, store):  # warm the cache for the blocks too
                pass
            base = rate(size, lambda: raw_read(src))
            hashed = rate(size, lambda: sha256_read(src))
            verified = rate(size, partial(drain, cid, store))
            copied = rate(size, lambda: copy_fsync(src, scratch / "copy.bin"))
            exported = rate(size, partial(export_file, cid, store, scratch / "out.bin"))
            (scratch / "out.bin").unlink()
            car_stream = rate(size, partial(drain_car, cid, store))
            car_export = rate(size, partial(export_car, cid, store, scratch / "out.car"))
            (scratch / "out.car").unlink()
            print(f"CIDv{version}:")
            print(f"  raw read            {base:8.1f} MiB/s")
            print(f"  read + sha256       {hashed:8.1f} MiB/s")
            print(
                f"  verified read       {verified:8.1f} MiB/s  ratio {verified / base:.2f}x raw "
                f"read, {verified / hashed:.2f}x read + sha256"
            )
            print(f"  copy + fsync        {copied:8.1f} MiB/s")
            print(f"  export              {exported:8.1f} MiB/s  ratio {exported / copied:.2f}x")
            print(
                f"  CAR stream          {car_stream:8.1f} MiB/s  ratio {car_stream / base:.2f}x "
                f"raw read, {car_stream / hashed:.2f}x read + sha256"
            )
            car_ratio = car_export / copied
            print(f"  CAR export          {car_export:8.1f} MiB/s  ratio {car_ratio:.2f}x")
            shutil.rmtree(scratch / f"store{version}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
