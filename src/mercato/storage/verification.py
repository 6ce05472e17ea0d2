# SPDX-License-Identifier: AGPL-3.0-only
"""Re-hashing block files against their names: what `Blockstore.verify` and `recover` run.

A block file is named by the base32 of its multihash (see `mercato.storage.blockstore`
for the layout), so a file can be checked without knowing which CID pointed at it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mercato.storage.blockio import read_with_inode

ProgressCallback = Callable[[int, int], None]
"""Called with (blocks checked so far, blocks to check) as `verify` goes."""

Quarantine = Callable[[Path, int | None], None]
"""Moves a damaged block file aside, given the inode that was read (see `Blockstore`)."""


@dataclass(frozen=True)
class VerifyResult:
    """What `Blockstore.verify` found.

    Attributes:
        checked: Number of blocks re-hashed.
        corrupted: Keys (base32 multihashes) of the blocks that did not match; they were
            moved to quarantine/ when `repair` was set.
    """

    checked: int
    corrupted: list[str]


def block_files(blocks_dir: Path) -> Iterator[os.DirEntry[str]]:
    """Yield the entry of every file in the shards of `blocks_dir` (order unspecified).

    Args:
        blocks_dir: The store's blocks/ directory.

    Returns:
        An iterator over the block files.
    """
    for shard in os.scandir(blocks_dir):
        if shard.is_dir():
            yield from os.scandir(shard.path)


def rehash(
    paths: list[Path],
    quarantine: Quarantine | None,
    workers: int | None,
    progress: ProgressCallback | None,
) -> tuple[int, list[str]]:
    """Re-hash block files against the multihash their names spell.

    Args:
        paths: The block files to check; files removed meanwhile pass.
        quarantine: Called on each damaged file; None only reports them.
        workers: Hashing threads (default: the CPU count).
        progress: Called with (checked, total) after each block.

    Returns:
        (number checked, keys of the damaged ones).
    """

    def check(path: Path) -> str | None:
        try:
            mh = base64.b32decode(path.name.upper() + "=" * (-len(path.name) % 8))
        except ValueError:
            return path.name  # not a block name at all
        if mh[:2] != b"\x12\x20":
            return None  # only sha2-256 blocks are written here; others pass as is
        try:
            inode, data = read_with_inode(path)
        except FileNotFoundError:
            return None  # removed meanwhile (gc, another verify)
        if hashlib.sha256(data).digest() == mh[2:]:
            return None
        if quarantine is not None:
            quarantine(path, inode)
        return path.name

    checked = 0
    corrupted: list[str] = []
    if not paths:
        return 0, corrupted
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        for bad in pool.map(check, paths):
            checked += 1
            if bad is not None:
                corrupted.append(bad)
            if progress is not None:
                progress(checked, len(paths))
    return checked, corrupted
