# SPDX-License-Identifier: AGPL-3.0-only
"""Encryption throughput of paid artifacts against raw sha256, measured in one run.

Writes a file of random bytes (default 1 GiB), then reads it back several ways, each
timed over the same bytes from the page cache:

- baseline: hashlib.sha256 over the file;
- secretstream alone: libsodium's push over the same chunks (--chunk-size, default
  256 KiB as `encrypt_and_import` uses), nothing else, to show the bound the cipher
  itself sets;
- encrypt: `StreamEncryptor` (secretstream + the plaintext sha256 the chain commits
  to), ciphertext discarded;
- encrypt + CID: the ciphertext streamed into the UnixFS importer without storing
  (`only_hash`), if `mercato.storage` is available;
- encrypt + import: `mercato.storage.encrypted.encrypt_and_import` into a fresh local
  blockstore, end to end (blocks written, made durable, pinned), if `mercato.storage`
  is available;
- export + decrypt: `export_and_decrypt` of that import back to a file (verified
  blocks, authenticated chunks, plaintext sha256 checked, fsync + rename).

Each line prints MB/s and the ratio to the baseline. The goal for an encrypted import
(issue 3) is >= 0.5x sha256, both cores allowed. The last line prints the CPU floor of
an encrypted import measured in this run: every byte is encrypted once and hashed twice
(the plaintext sha256 the chain commits to, and the ciphertext blocks' CIDs), so with 2
cores it cannot beat 2 / (secretstream + 2 x sha256 CPU s/GiB) GiB/s, before a single
block is written.

Usage: python benchmarks/crypto_encrypt.py [--size 1GiB] [--repeat 1] [--chunk-size 256KiB]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nacl.bindings as sodium

from mercato.crypto import StreamEncryptor, generate_content_key, read_chunks

READ_SIZE = 1024 * 1024
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """Parse '1GiB', '64MiB', '500M' or a plain byte count."""
    stripped = text.strip().lower()
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = stripped[len(number) :]
    if unit not in _UNITS or not number:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1GiB, 64MiB, 1000000)")
    return int(float(number) * _UNITS[unit])


def write_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * 1024 * 1024)
            f.write(os.urandom(n))
            left -= n


def sha256_file(path: Path) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in read_chunks(f, READ_SIZE):
            digest.update(piece)
    digest.digest()


def encrypt_file_discard(path: Path, chunk_size: int) -> None:
    encryptor = StreamEncryptor(generate_content_key(), chunk_size=chunk_size)
    with open(path, "rb") as f:
        for _ in encryptor.encrypt(read_chunks(f, encryptor.chunk_size)):
            pass


def secretstream_only(path: Path, chunk_size: int) -> None:
    """The library's own speed: the same chunks, no hashing, no format around them."""
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_push(state, generate_content_key())
    with open(path, "rb") as f:
        for piece in read_chunks(f, chunk_size):
            sodium.crypto_secretstream_xchacha20poly1305_push(state, piece)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall time and the CPU seconds (all threads) of that run."""
    best, best_cpu = float("inf"), 0.0
    for _ in range(repeat):
        cpu = time.process_time()
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        if elapsed < best:
            best, best_cpu = elapsed, time.process_time() - cpu
    return best, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=1024**3, help="bytes (default 1GiB)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best counts")
    parser.add_argument(
        "--chunk-size", type=parse_size, default=256 * 1024, help="plaintext bytes per chunk"
    )
    args = parser.parse_args()
    size: int = args.size
    chunk: int = args.chunk_size

    try:
        from mercato.storage.blockstore import Blockstore
        from mercato.storage.encrypted import encrypt_and_import, export_and_decrypt
        from mercato.storage.unixfs import only_hash
    except ImportError:
        storage = False
    else:
        storage = True

    with tempfile.TemporaryDirectory(prefix="mercato-bench-") as tmp:
        src = Path(tmp) / "plain.bin"
        write_random_file(src, size)
        sha256_file(src)  # warm the page cache

        def encrypt_and_cid() -> None:
            encryptor = StreamEncryptor(generate_content_key(), chunk_size=chunk)
            with open(src, "rb") as f:
                only_hash(encryptor.encrypt(read_chunks(f, encryptor.chunk_size)))

        imported: dict[str, object] = {}

        def encrypt_import() -> None:
            store = Blockstore(tempfile.mkdtemp(prefix="store-", dir=tmp))
            key = generate_content_key()
            result = encrypt_and_import(src, store, key, chunk_size=chunk)
            imported.update(store=store, key=key, result=result)

        def export_decrypt() -> None:
            result = imported["result"]
            export_and_decrypt(
                result.cid,  # type: ignore[attr-defined]
                imported["store"],  # type: ignore[arg-type]
                imported["key"],  # type: ignore[arg-type]
                result.plaintext_sha256,  # type: ignore[attr-defined]
                Path(tmp) / "decrypted.bin",
            )

        baseline, baseline_cpu = timed(lambda: sha256_file(src), args.repeat)
        cases: list[tuple[str, Callable[[], object]]] = [
            ("secretstream alone (library bound)", lambda: secretstream_only(src, chunk)),
            ("encrypt (secretstream + plaintext sha256)", lambda: encrypt_file_discard(src, chunk)),
        ]
        if storage:
            cases += [
                ("encrypt + UnixFS CID (only_hash)", encrypt_and_cid),
                ("encrypt + import into blockstore", encrypt_import),
                ("export + decrypt to a file", export_decrypt),
            ]

        mib = size / 1024**2
        gib = size / 1024**3
        # CPU seconds per GiB do not depend on what else the machine runs; with the
        # wall-clock ratio they tell a busy machine from a slow pipeline.
        print(
            f"size {mib:.0f} MiB, chunks {chunk // 1024} KiB, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.1f}, best of {args.repeat}"
        )
        print(
            f"{'sha256 baseline':<44} {mib / baseline:8.0f} MiB/s  1.00x  "
            f"cpu {baseline_cpu / gib:5.2f} s/GiB"
        )
        cpu_of: dict[str, float] = {}
        for name, fn in cases:
            elapsed, cpu = timed(fn, args.repeat)
            cpu_of[name] = cpu / gib
            print(
                f"{name:<44} {mib / elapsed:8.0f} MiB/s  {baseline / elapsed:.2f}x  "
                f"cpu {cpu / gib:5.2f} s/GiB"
            )
        floor = cpu_of["secretstream alone (library bound)"] + 2 * baseline_cpu / gib
        best = 2 / floor * 1024  # MiB/s with both cores busy and nothing else to do
        print(
            f"{'CPU floor: secretstream + 2 x sha256':<44} {best:8.0f} MiB/s  "
            f"{best / (mib / baseline):.2f}x  cpu {floor:5.2f} s/GiB  (2 cores, no writes)"
        )
        if not storage:
            print("mercato.storage import not available: end-to-end import not measured")


if __name__ == "__main__":
    main()
