# SPDX-License-Identifier: AGPL-3.0-only
"""Peak RSS growth while importing and exporting a large file (goal: <= 64 MiB each).

Measures plain `import_file` / `export_file`, then the paid-artifact path:
`encrypt_and_import` / `export_and_decrypt`.

RSS is sampled every 5 ms by a thread (psutil); growth is the peak during the phase minus
the RSS just before it. Page cache is not RSS, so this measures the process's own memory.

Usage: .venv/bin/python benchmarks/storage_rss.py [--size MiB]   (default 2048)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from mercato.crypto import generate_content_key
from mercato.storage.blockstore import Blockstore
from mercato.storage.encrypted import encrypt_and_import, export_and_decrypt
from mercato.storage.exporter import export_file
from mercato.storage.unixfs import import_file

LIMIT_MIB = 64


def peak_growth(fn: Callable[[], object]) -> tuple[float, float]:
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return (peak - before) / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="file size in MiB")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mercato-bench-", dir=args.dir))
    try:
        src = scratch / "model.bin"
        with open(src, "wb") as fh:
            for _ in range(args.size):
                fh.write(os.urandom(2**20))
        store = Blockstore(scratch / "store")
        holder: dict[str, object] = {}
        growth, secs = peak_growth(lambda: holder.update(r=import_file(src, store)))
        print(
            f"import {args.size} MiB: peak RSS growth {growth:6.1f} MiB "
            f"(ratio to {LIMIT_MIB} MiB budget {growth / LIMIT_MIB:.2f}), {secs:.1f} s"
        )
        cid = holder["r"].cid  # type: ignore[attr-defined]
        growth, secs = peak_growth(lambda: export_file(cid, store, scratch / "out.bin"))
        print(
            f"export {args.size} MiB: peak RSS growth {growth:6.1f} MiB "
            f"(ratio to {LIMIT_MIB} MiB budget {growth / LIMIT_MIB:.2f}), {secs:.1f} s"
        )
        (scratch / "out.bin").unlink()
        key = generate_content_key()
        growth, secs = peak_growth(lambda: holder.update(e=encrypt_and_import(src, store, key)))
        print(
            f"encrypt + import {args.size} MiB: peak RSS growth {growth:6.1f} MiB "
            f"(ratio to {LIMIT_MIB} MiB budget {growth / LIMIT_MIB:.2f}), {secs:.1f} s"
        )
        src.unlink()
        enc = holder["e"]
        growth, secs = peak_growth(
            lambda: export_and_decrypt(
                enc.cid,  # type: ignore[attr-defined]
                store,
                key,
                enc.plaintext_sha256,  # type: ignore[attr-defined]
                scratch / "out.bin",
            )
        )
        print(
            f"export + decrypt {args.size} MiB: peak RSS growth {growth:6.1f} MiB "
            f"(ratio to {LIMIT_MIB} MiB budget {growth / LIMIT_MIB:.2f}), {secs:.1f} s"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
