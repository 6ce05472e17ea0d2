# SPDX-License-Identifier: AGPL-3.0-only
"""Import throughput vs raw hashlib.sha256 over the same bytes.

Prints, for a file of --size MiB (default 1024, warm page cache):
- baseline: read the file and sha256 it in one thread;
- only-hash: the UnixFS importer computing the CID (`mercato cid`), no writes;
- import: `import_file` into a fresh store, end to end: every block written (temp +
  rename), the whole import made durable (syncfs) and the root pinned;
and each one's ratio to the baseline (goal: import >= 0.8x). Block writes are bound by
the disk and the file system, so the script also prints what they take in the same run:

- `fs: create empty files`: the kernel's cost of one new file (the store makes one per
  256 KiB block), and the MiB/s that cost alone would allow. On ext4 *without a
  journal* the inode allocator skips every inode freed in the last 60 s (300 s more
  while its inode table block is dirty), so this cost grows with how many files this
  machine deleted recently, from ~20 us to ~1 ms;
- `disk: O_DIRECT 256 KiB writes, one file`: the disk's streaming write rate, the bound
  for any import once the per-file cost is gone;
- `disk: one file per 256 KiB block`: what the store's writes cost without hashing
  (O_DIRECT, temp + rename, one syncfs): the bound for an import;
- a plain copy of the file + one fsync, and the old design's `write + fsync per block`.

CPU s/GiB (all threads) is printed on every line: with 2 cores, an import cannot beat
2 / (its CPU s/GiB) GiB/s, and the machine may be busy with other work.

Usage: .venv/bin/python benchmarks/storage_import.py [--size MiB]
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import mmap
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


def create_files(out_dir: Path, count: int) -> None:
    out_dir.mkdir()
    for i in range(count):
        os.close(os.open(out_dir / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        ctypes.CDLL(None, use_errno=True).syncfs(fd)
    finally:
        os.close(fd)


def direct_stream(path: Path, dest: Path) -> None:
    """The file's bytes in 256 KiB O_DIRECT writes to one file: the disk's rate."""
    buffer = mmap.mmap(-1, CHUNK_SIZE)  # page-aligned, as O_DIRECT requires
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    try:
        with open(path, "rb", buffering=0) as src:
            while n := src.readinto(buffer):
                os.write(fd, memoryview(buffer)[: n + -n % 4096])
        os.fsync(fd)
    finally:
        os.close(fd)


def direct_per_block(path: Path, out_dir: Path) -> None:
    """One file per 256 KiB block, O_DIRECT, temp + rename, one syncfs: no hashing."""
    (out_dir / "tmp").mkdir(parents=True)
    (out_dir / "blocks").mkdir()
    buffer = mmap.mmap(-1, CHUNK_SIZE)
    with open(path, "rb", buffering=0) as src:
        i = 0
        while n := src.readinto(buffer):
            tmp = out_dir / "tmp" / str(i)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
            os.write(fd, memoryview(buffer)[: n + -n % 4096])
            os.close(fd)
            os.rename(tmp, out_dir / "blocks" / str(i))
            i += 1
    _syncfs(out_dir)


def copy_fsync(path: Path, dest: Path) -> None:
    with open(path, "rb", buffering=0) as src, open(dest, "wb") as out:
        while data := src.read(1 << 20):
            out.write(data)
        out.flush()
        os.fsync(out.fileno())


def time_creates(directory: Path, count: int) -> None:
    start = time.perf_counter()
    create_files(directory, count)
    per_file = (time.perf_counter() - start) / count
    print(
        f"{'fs: create empty files':<34} {per_file * 1e6:8.0f} us/file "
        f"(alone allows {CHUNK_SIZE / per_file / 2**20:.0f} MiB/s at one file per block)"
    )


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
        print(f"file: {args.size} MiB, cpus: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
        base = timed("baseline: read + sha256", size, lambda: sha256_file(src))
        timed("only-hash CIDv0 (mercato cid)", size, lambda: only_hash(src), base)
        timed("only-hash CIDv1", size, lambda: only_hash(src, cid_version=1), base)
        timed(
            "only-hash unixfs-v1-2025",
            size,
            lambda: only_hash(src, profile="unixfs-v1-2025"),
            base,
        )
        blocks = -(-size // CHUNK_SIZE)
        time_creates(scratch / "probe0", min(blocks, 1024))
        timed(
            "disk: O_DIRECT 256 KiB writes, 1 file",
            size,
            lambda: direct_stream(src, scratch / "direct"),
            base,
        )
        timed(
            "disk: one file per 256 KiB block",
            size,
            lambda: direct_per_block(src, scratch / "perblock"),
            base,
        )
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
        timed(
            "import v1-2025 into blockstore",
            size,
            lambda: import_file(src, Blockstore(scratch / "store2"), profile="unixfs-v1-2025"),
            base,
        )
        time_creates(scratch / "probe1", min(blocks, 1024))
        # Nothing is deleted before this point: deleted inodes make the next file
        # creations slower on a journal-less ext4 (see the docstring).
        shutil.rmtree(scratch / "store0")
        shutil.rmtree(scratch / "store1")
        shutil.rmtree(scratch / "store2")
        timed("disk: copy + one fsync", size, lambda: copy_fsync(src, scratch / "copy"), base)
        timed(
            "disk: write + fsync per 256 KiB", size, lambda: raw_write(src, scratch / "raw"), base
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
