# SPDX-License-Identifier: AGPL-3.0-only
"""Export / verified read throughput vs a raw sequential read of the same file.

Imports a --size MiB file, then compares (warm page cache):
- baseline: reading the original file sequentially (no hashing);
- verified read: `iter_file`, which re-hashes every block against its CID;
- export: `export_file` (verified read + write + fsync + rename).

Usage: .venv/bin/python benchmarks/storage_export.py [--size MiB]   (default 1024)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mercato.storage.blockstore import Blockstore
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
            verified = rate(size, lambda c=cid, s=store: sum(1 for _ in iter_file(c, s)))
            exported = rate(size, lambda c=cid, s=store: export_file(c, s, scratch / "out.bin"))
            print(
                f"CIDv{version}: raw read {base:8.1f} MiB/s | verified read {verified:8.1f} "
                f"MiB/s ratio {verified / base:.2f}x | export {exported:8.1f} MiB/s "
                f"ratio {exported / base:.2f}x"
            )
            shutil.rmtree(scratch / f"store{version}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
