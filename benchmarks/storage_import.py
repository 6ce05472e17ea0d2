# SPDX-License-Identifier: AGPL-3.0-only
"""Import throughput vs raw hashlib.sha256 over the same bytes.

Prints, for a file of --size MiB (default 1024, warm page cache):
- baseline: read the file and sha256 it in one thread;
- only-hash: the UnixFS importer computing the CID (`mercato cid`), no writes;
- import: `import_file` into a fresh store, end to end: every block written (temp +
  rename), the whole import made durable (syncfs) and the root pinned;
and each one's ratio to the baseline (goal: import >= 0.8x). Block writes are bound by
the disk, so the script also prints what the disk takes in the same run: a plain copy
of the file + one fsync, and the old design's `write + fsync per 256 KiB block`.

Usage: .venv/bin/python benchmarks/storage_import.py [--size MiB]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from mercato.storage.blockstore import Blockstore
from mercato.storage.unixfs import CHUNK_SIZE, import_file, only_hash


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 8 << 20)
            fh.write(os.urandom(n))
            left -= n


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while data := fh.read(1 << 20):
            h.update(data)
    return h.hexdigest()


def raw_write(path: Path, out_dir: Path) -> None:
    out_dir.mkdir()
    with open(path, "rb", buffering=0) as fh:
        i = 0
        while data := fh.read(CHUNK_SIZE):
            fd = os.open(out_dir / str(i), os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            i += 1


def copy_fsync(path: Path, dest: Path) -> None:
    with open(path, "rb", buffering=0) as src, open(dest, "wb") as out:
        while data := src.read(1 << 20):
            out.write(data)
        out.flush()
        os.fsync(out.fileno())


def timed(label: str, size: int, fn: object, baseline: float | None = None) -> float:
    # CPU seconds per GiB (all threads) do not depend on what else the machine runs; with
    # the wall-clock ratio they tell a busy machine or a slow disk from a slow pipeline.
    cpu = time.process_time()
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    seconds = time.perf_counter() - start
    cpu_per_gib = (time.process_time() - cpu) / (size / 2**30)
    rate = size / seconds / 2**20
    ratio = f"  ratio {rate / baseline:.2f}x" if baseline else " " * 14
    print(f"{label:<34} {rate:8.1f} MiB/s{ratio}  cpu {cpu_per_gib:5.2f} s/GiB")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    args = parser.parse_args()
    size = args.size * 2**20
    scratch = Path(tempfile.mkdtemp(prefix="mercato-bench-", dir=args.dir))
    try:
        src = scratch / "model.bin"
        make_file(src, size)
        sha256_file(src)  # warm the page cache
        print(f"file: {args.size} MiB, cpus: {os.cpu_count()}")
        base = timed("baseline: read + sha256", size, lambda: sha256_file(src))
        timed("only-hash CIDv0 (mercato cid)", size, lambda: only_hash(src), base)
        timed("only-hash CIDv1", size, lambda: only_hash(src, cid_version=1), base)
        timed(
            "import CIDv0 into blockstore",
            size,
            lambda: import_file(src, Blockstore(scratch / "store0")),
            base,
        )
        timed(
            "import CIDv1 into blockstore",
            size,
            lambda: import_file(src, Blockstore(scratch / "store1"), cid_version=1),
            base,
        )
        shutil.rmtree(scratch / "store0")
        shutil.rmtree(scratch / "store1")
        timed("disk: copy + one fsync", size, lambda: copy_fsync(src, scratch / "copy"), base)
        timed(
            "disk: write + fsync per 256 KiB", size, lambda: raw_write(src, scratch / "raw"), base
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
