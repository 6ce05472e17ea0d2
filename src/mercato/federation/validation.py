# SPDX-License-Identifier: AGPL-3.0-only
"""A scored task's validation set: committed at creation, kept private, revealed at the end.

The requester's file (the task's schema, CSV or .npz, at most one raw block) is named
by its raw-codec CIDv1, which goes into the spec (`[scoring] validation_cid`), so the
chain's spec digest commits to it before anyone joins. Until the task ends it stays
outside the node's blockstore, which its gateway serves to anyone:

```
<data dir>/federation/validation/
└── <raw CIDv1>.npz|.csv    # mode 0600; only the coordinator's ServerApp reads it
```

`reveal` adds it to the blockstore once the task has ended, so anyone can fetch it by
the committed CID and check the published scores (`mercato fl verify`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from multiformats import CID
from numpy.typing import NDArray

from mercato.errors import (
    LocalDataError,
    ValidationSetMismatchError,
)
from mercato.federation.data import load_local_data
from mercato.federation.spec import TaskSpec, raw_cid_for
from mercato.fsutil import atomic_write_bytes
from mercato.storage.cids import MAX_BLOCK_SIZE

FOLDER = "validation"
MAX_VALIDATION_BYTES = MAX_BLOCK_SIZE  # one raw block, so one CID names it
_ZIP_MAGIC = b"PK\x03\x04"


def suffix_of(data: bytes) -> str:
    """The file type of validation bytes: an .npz is a zip archive, anything else CSV."""
    return ".npz" if data.startswith(_ZIP_MAGIC) else ".csv"


def read_validation(data: bytes, spec: TaskSpec) -> tuple[NDArray[np.floating], NDArray[np.int64]]:
    """The rows of validation bytes, checked against the spec's schema.

    Raises:
        LocalDataError: the bytes are not a file of the task's schema.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"validation{suffix_of(data)}"
        path.write_bytes(data)
        return load_local_data(path, spec)


def keep_validation(data_dir: Path, source: Path, spec: TaskSpec) -> CID:
    """Checks the requester's validation file and keeps a private copy, named by its CID.

    Args:
        data_dir: The node's data directory.
        source: The CSV or .npz file.
        spec: The task's spec (the file must match its schema).

    Returns:
        The file's raw CIDv1 (the spec's `validation_cid`).

    Raises:
        LocalDataError: the file is unreadable, too large or not of the schema.
    """
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise LocalDataError(source, f"it cannot be read ({exc})") from exc
    if len(data) > MAX_VALIDATION_BYTES:
        raise LocalDataError(
            source,
            f"a validation set is one block of at most {MAX_VALIDATION_BYTES:,} bytes, this "
            f"file has {len(data):,}; keep a sample of its rows",
        )
    if source.suffix.lower() not in (".csv", ".npz") or suffix_of(data) != source.suffix.lower():
        raise LocalDataError(source, "a validation set is a .csv or an .npz file")
    read_validation(data, spec)
    cid = raw_cid_for(data)
    folder = Path(data_dir) / "federation" / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{cid}{suffix_of(data)}", data)
    return cid


def kept_validation(data_dir: Path, cid: str | CID) -> bytes | None:
    """The private copy `keep_validation` made, or None when this node has none."""
    folder = Path(data_dir) / "federation" / FOLDER
    for suffix in (".npz", ".csv"):
        path = folder / f"{cid}{suffix}"
        if path.is_file():
            data = path.read_bytes()
            if str(raw_cid_for(data)) == str(cid):
                return data
    return None


def check_validation(task_id: int, data: bytes, expected: str) -> None:
    """Checks that `data` is the validation set the spec committed to.

    Raises:
        ValidationSetMismatchError: its CID is another.
    """
    got = str(raw_cid_for(data))
    if got != str(expected):
        raise ValidationSetMismatchError(task_id, str(expected), got)


def task_validation_path(directory: Path) -> Path | None:
    """The validation file the coordinator placed in a task's directory, if any."""
    for suffix in (".npz", ".csv"):
        path = directory / f"validation{suffix}"
        if path.is_file():
            return path
    return None


__all__ = [
    "MAX_VALIDATION_BYTES",
    "check_validation",
    "keep_validation",
    "kept_validation",
    "read_validation",
    "task_validation_path",
]
