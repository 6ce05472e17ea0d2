# SPDX-License-Identifier: AGPL-3.0-only
"""The blockstore's journal of imports in progress, and the recovery scan that reads it.

The intent files live in the store's journal/ (the whole layout is drawn in
`mercato.storage.blockstore`)::

    journal/
    └── 3f9c0a...e1.intent           an import in progress: its start time (ns); its
                                     writer holds an flock on it until it is durable

*After an unclean stop, what an interrupted import wrote is re-checked before it can be
reused.* `Blockstore.writing()` (imports hold it from their first block to their pin)
first makes an intent file durable in journal/, holding an flock on it, and removes it
once the import has flushed. An intent whose flock can be taken belongs to a writer that
died (killed, or the machine lost power). `recover` re-hashes only the block files
modified since the oldest such intent started (minus `RECOVER_SLACK_NS` for clock
granularity), quarantines the damaged ones and removes those intents. It also deletes
the partial files dead writers left in tmp/ (a block, intent or pin killed before its
rename), but only when it can take the store's lock exclusively: a live import holds it
shared, and its temp files are not partial yet. It runs when a
node starts (`mercato node up`), on the first `writing()` of each `Blockstore` (before
anything can deduplicate against a damaged block), and on demand
(`mercato store recover`). With no stale intent it costs one listing of an empty
directory. A wall clock stepped back by more than the slack during the import could hide
a block from it; `verify` (`mercato store verify`) checks everything.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mercato.fsutil import fsync_directory
from mercato.storage.blockio import wrap_write_error
from mercato.storage.verification import Quarantine, block_files, rehash

RECOVER_SLACK_NS = 2 * 10**9
"""How far before an intent's start time `recover` looks: file times come from a coarse
kernel clock that can lag `time.time_ns()` by a tick, and clocks get small corrections."""

_INTENT_SUFFIX = ".intent"


@dataclass(frozen=True)
class RecoverResult:
    """What `Blockstore.recover` did.

    Attributes:
        intents: Imports found cut off (stale intents in journal/), now resolved.
        checked: Number of blocks re-hashed (those written since the oldest of them).
        corrupted: Keys (base32 multihashes) of the damaged blocks, moved to quarantine/.
        partial_files: Files left half-written in tmp/ by writers that died (a block,
            intent or pin cut off before its rename), now removed.
        tmp_busy: True when a live import held the store, so tmp/ was left for a later
            `recover` (its files may be in flight).
    """

    intents: int
    checked: int
    corrupted: list[str]
    partial_files: int = 0
    tmp_busy: bool = False


@dataclass(frozen=True)
class Intent:
    """An intent file and the descriptor that holds its flock.

    Attributes:
        path: The file in journal/.
        fd: Open descriptor; closing it releases the flock.
        start_ns: When the import started (wall clock, ns).
    """

    path: Path
    fd: int
    start_ns: int

    def release(self, *, remove: bool) -> None:
        """Let go of the intent, removing its file first when the import is durable.

        Args:
            remove: Delete the file; False leaves it for a later `recover`.
        """
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)  # releases the flock


def record_intent(journal_dir: Path, tmp_dir: Path) -> Intent:
    """Make a locked intent file durable in journal/ before an import writes anything.

    Args:
        journal_dir: The store's journal/ directory.
        tmp_dir: The store's tmp/ directory, where the file is prepared.

    Returns:
        The intent, locked; `release` it when the import is over.

    Raises:
        BlockWriteError: If the intent could not be recorded (nothing is left behind).
    """
    name = secrets.token_hex(8)
    tmp = tmp_dir / f"intent.{name}.tmp"
    final = journal_dir / f"{name}{_INTENT_SUFFIX}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise wrap_write_error(exc, final) from exc
    try:
        # Locked before it appears in journal/, so `recover` never takes a live
        # import for a dead one; durable before the first block is written.
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = time.time_ns()
        os.write(fd, f"{start} {os.getpid()}\n".encode())
        os.fsync(fd)
        os.rename(tmp, final)
        fsync_directory(journal_dir)
    except OSError as exc:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise wrap_write_error(exc, final) from exc
    return Intent(final, fd, start)


@contextmanager
def claim_stale_intents(journal_dir: Path) -> Iterator[list[Intent]]:
    """Lock the intents whose writers died; held until the caller has checked.

    Args:
        journal_dir: The store's journal/ directory.

    Returns:
        A context manager giving the claimed intents (intents of live imports are left).
    """
    claimed: list[Intent] = []
    try:
        for entry in os.scandir(journal_dir):
            if not entry.name.endswith(_INTENT_SUFFIX):
                continue
            intent = _claim_intent(Path(entry.path))
            if intent is not None:
                claimed.append(intent)
        yield claimed
    finally:
        for intent in claimed:
            os.close(intent.fd)


def drop_intents(journal_dir: Path, intents: Iterable[Intent]) -> None:
    """Remove claimed intents once what they cover has been checked.

    Args:
        journal_dir: The store's journal/ directory.
        intents: Intents from `claim_stale_intents`.

    Raises:
        BlockWriteError: If an intent file could not be removed.
    """
    dropped = False
    for intent in intents:
        try:
            intent.path.unlink(missing_ok=True)
        except OSError as exc:
            raise wrap_write_error(exc, intent.path) from exc
        dropped = True
    if dropped:
        fsync_directory(journal_dir)


def recover(
    journal_dir: Path, blocks_dir: Path, quarantine: Quarantine, workers: int | None
) -> RecoverResult:
    """Re-hash the block files that imports cut off by an unclean stop may have written.

    Args:
        journal_dir: The store's journal/ directory.
        blocks_dir: The store's blocks/ directory.
        quarantine: Moves a damaged block file aside.
        workers: Hashing threads (default: the CPU count).

    Returns:
        How many cut-off imports were found, blocks checked, and the damaged keys.

    Raises:
        BlockWriteError: If a stale intent could not be removed.
    """
    with claim_stale_intents(journal_dir) as stale:
        if not stale:
            return RecoverResult(intents=0, checked=0, corrupted=[])
        since = min(intent.start_ns for intent in stale) - RECOVER_SLACK_NS
        paths = []
        for entry in block_files(blocks_dir):
            try:
                if entry.stat().st_mtime_ns >= since:
                    paths.append(Path(entry.path))
            except FileNotFoundError:
                continue  # removed meanwhile (gc)
        checked, corrupted = rehash(paths, quarantine, workers, None)
        drop_intents(journal_dir, stale)
    return RecoverResult(intents=len(stale), checked=checked, corrupted=corrupted)


def remove_partial_files(tmp_dir: Path) -> int:
    """Delete what writers that died left in tmp/.

    The caller holds the store's lock exclusively: every writer holds it shared from its
    first temp file to its last rename, so nothing in tmp/ is in flight.

    Args:
        tmp_dir: The store's tmp/ directory.

    Returns:
        How many files were removed.

    Raises:
        BlockWriteError: If a file could not be removed.
    """
    removed = 0
    for entry in os.scandir(tmp_dir):
        path = Path(entry.path)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise wrap_write_error(exc, path) from exc
        removed += 1
    if removed:
        fsync_directory(tmp_dir)
    return removed


def _claim_intent(path: Path) -> Intent | None:
    """Lock an intent file if its writer is gone; None while it lives (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # its import just finished
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A finished writer unlinks, then unlocks: the lock alone may be on a file that
        # is no longer in journal/.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
        text = os.pread(fd, 64, 0)
        mtime = os.fstat(fd).st_mtime_ns
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    try:
        start = int(text.split()[0])
    except (ValueError, IndexError):
        start = 0  # unreadable: assume the worst and check every block
    # The file's own time comes from the same clock as the blocks' times.
    return Intent(path, fd, min(start, mtime))
