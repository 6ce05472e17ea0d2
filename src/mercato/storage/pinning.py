# SPDX-License-Identifier: AGPL-3.0-only
"""Pins and garbage collection for the blockstore: pin files, marking, sweeping.

A pin is a file in the store's pins/ named by the root's CIDv1 and holding the CID as
the user gave it (the whole layout is drawn in `mercato.storage.blockstore`). `gc` marks
every block reachable from a pin, then sweeps the rest; `Blockstore` holds the lock that
keeps imports out while it does.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from multiformats import CID

from mercato.errors import BlockNotFoundError, DagFormatError
from mercato.fsutil import fsync_directory
from mercato.storage import dagpb
from mercato.storage.blockio import wrap_write_error
from mercato.storage.cids import CODEC_DAG_PB, BlockKey, block_key, cid_from_bytes


@dataclass(frozen=True)
class GCResult:
    """What a garbage collection removed.

    Attributes:
        removed_blocks: Number of block files deleted.
        freed_bytes: Their total size.
    """

    removed_blocks: int
    freed_bytes: int


def pin_path(pins_dir: Path, cid: CID) -> Path:
    """The pin file for `cid`: one name per DAG, whichever CID version was given.

    Args:
        pins_dir: The store's pins/ directory.
        cid: The DAG's root.

    Returns:
        The path of its pin file (which may not exist).
    """
    v1 = cid.set(version=1, base="base32") if cid.version == 0 else cid
    return pins_dir / str(v1.set(base="base32"))


def write_pin(pins_dir: Path, tmp_dir: Path, cid: CID) -> None:
    """Write the pin file for `cid` atomically and durably.

    Args:
        pins_dir: The store's pins/ directory.
        tmp_dir: The store's tmp/ directory, where the file is prepared.
        cid: The DAG's root, as the user gave it.

    Raises:
        BlockWriteError: If the pin could not be written (nothing partial is kept).
    """
    path = pin_path(pins_dir, cid)
    tmp = tmp_dir / f"pin.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "w") as fh:
            fh.write(str(cid))
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
        fsync_directory(pins_dir)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise wrap_write_error(exc, path) from exc


def read_pins(pins_dir: Path) -> list[CID]:
    """List pinned roots, as they were given to `write_pin`.

    Args:
        pins_dir: The store's pins/ directory.

    Returns:
        The roots, in the order of their pin file names.
    """
    return [CID.decode(p.read_text().strip()) for p in sorted(pins_dir.iterdir())]


def mark(
    root: CID,
    live: set[BlockKey],
    path_of: Callable[[BlockKey], Path],
    get: Callable[[CID], bytes],
) -> None:
    """Add the key of every block of the DAG under `root` to `live`.

    Args:
        root: The DAG's root.
        live: Keys marked so far; subtrees already in it are not walked again.
        path_of: Where the store keeps the block with a given key.
        get: Reads and verifies a block (for the inner nodes).

    Raises:
        BlockNotFoundError: If a block of the DAG is missing.
        BlockHashMismatchError: If an inner node is corrupted.
        DagFormatError: If a node links to something that is not a CID.
    """
    stack = [root]
    while stack:
        cid = stack.pop()
        key = block_key(cid)
        if key in live:
            continue
        path = path_of(key)
        if cid.codec.code == CODEC_DAG_PB:
            try:
                with open(path, "rb") as fh:
                    first = fh.read(1)
            except FileNotFoundError:
                raise BlockNotFoundError(
                    f"Block {cid} of the DAG {root} is missing from the store.",
                    cid=str(cid),
                ) from None
            # Canonical dag-pb puts Links (tag 0x12) before Data, so a node whose first
            # byte is not 0x12 has no links: leaves are not read, which keeps gc and pin
            # from re-reading every chunk of every file.
            if first == b"\x12":
                node = dagpb.decode_node(get(cid), str(cid))
                for link in node.links:
                    try:
                        stack.append(cid_from_bytes(link.hash))
                    except ValueError as exc:
                        raise DagFormatError(
                            f"Node {cid} links to something that is not a CID.", cid=str(cid)
                        ) from exc
        elif not path.exists():
            raise BlockNotFoundError(
                f"Block {cid} of the DAG {root} is missing from the store.", cid=str(cid)
            )
        live.add(key)


def sweep(blocks_dir: Path, tmp_dir: Path, quarantine_dir: Path, live: set[BlockKey]) -> GCResult:
    """Delete every block not in `live`, every temp file and every quarantined block.

    The caller holds the store's lock exclusively, so no writer is in flight.

    Args:
        blocks_dir: The store's blocks/ directory.
        tmp_dir: The store's tmp/ directory.
        quarantine_dir: The store's quarantine/ directory.
        live: Keys of the blocks to keep (from `mark`).

    Returns:
        How many blocks and bytes were freed.
    """
    removed = freed = 0
    for shard in list(blocks_dir.iterdir()):
        for entry in list(shard.iterdir()):
            if entry.name not in live:
                freed += entry.stat().st_size
                entry.unlink()
                removed += 1
    # Writers hold the lock shared, so nothing in tmp/ is in flight right now.
    for entry in tmp_dir.iterdir():
        entry.unlink(missing_ok=True)
    for entry in quarantine_dir.iterdir():
        freed += entry.stat().st_size
        entry.unlink(missing_ok=True)
    return GCResult(removed_blocks=removed, freed_bytes=freed)
