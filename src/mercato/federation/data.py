# SPDX-License-Identifier: AGPL-3.0-only
"""A data owner's local data, checked against the task's input schema.

Two formats: a CSV with a header row (the feature columns, then a `label` column), or
an `.npz` with arrays `X` (rows x n_features) and `y` (rows). Everything is checked
before a SuperNode starts, so a file that does not fit fails here, with the reason,
and nothing is ever sent.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mercato.errors import LocalDataError
from mercato.federation.spec import TaskSpec

LABEL_COLUMN = "label"
MAX_ROWS = 10_000_000


def load_local_data(
    path: str | Path, spec: TaskSpec
) -> tuple[NDArray[np.floating], NDArray[np.int64]]:
    """Read and check a data owner's file.

    Args:
        path: A `.csv` or `.npz` file.
        spec: The task's spec (its `input` schema decides what is accepted).

    Returns:
        `(X, y)`: X as the spec's dtype, shape (rows, n_features); y as int64 labels.

    Raises:
        LocalDataError: the file is missing or unreadable, of another format, or its
            columns, shape, dtype or labels differ from the spec.
    """
    source = Path(path)
    if not source.is_file():
        raise LocalDataError(source, "the file does not exist")
    suffix = source.suffix.lower()
    if suffix == ".npz":
        features, labels = _read_npz(source)
    elif suffix == ".csv":
        features, labels = _read_csv(source, spec)
    else:
        raise LocalDataError(source, f"'{suffix or 'no suffix'}' is not .csv or .npz")
    return _check(source, features, labels, spec)


def _read_npz(source: Path) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
    try:
        # allow_pickle=False: a pickled object array would run code while loading.
        with np.load(source, allow_pickle=False) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise LocalDataError(
                    source, f"the archive has no array {', '.join(sorted(missing))}"
                )
            return np.asarray(archive["X"]), np.asarray(archive["y"])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise LocalDataError(source, f"not a readable .npz archive ({exc})") from exc


def _read_csv(source: Path, spec: TaskSpec) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
    schema = spec.input
    expected = list(schema.feature_names) or [f"x{i}" for i in range(schema.n_features)]
    try:
        with source.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise LocalDataError(source, "the file is empty")
            header = [name.strip() for name in header]
            if header[-1:] != [LABEL_COLUMN]:
                raise LocalDataError(
                    source, f"the last column must be '{LABEL_COLUMN}', got {header[-1]!r}"
                )
            if header[:-1] != expected:
                raise LocalDataError(
                    source,
                    f"the feature columns must be {_preview(expected)}, got "
                    f"{_preview(header[:-1])}",
                )
            rows: list[list[str]] = []
            for number, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise LocalDataError(
                        source, f"line {number} has {len(row)} fields, the header {len(header)}"
                    )
                rows.append(row)
                if len(rows) > MAX_ROWS:
                    raise LocalDataError(source, f"more than {MAX_ROWS:,} rows")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LocalDataError(source, f"not a readable CSV file ({exc})") from exc
    if not rows:
        raise LocalDataError(source, "the file has a header but no rows")
    try:
        features = np.array([row[:-1] for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise LocalDataError(source, f"a feature is not a number ({exc})") from exc
    try:
        labels = np.array([int(row[-1]) for row in rows], dtype=np.int64)
    except ValueError as exc:
        raise LocalDataError(source, f"a label is not an integer ({exc})") from exc
    return features, labels


def _check(
    source: Path, features: NDArray[np.generic], labels: NDArray[np.generic], spec: TaskSpec
) -> tuple[NDArray[np.floating], NDArray[np.int64]]:
    schema = spec.input
    if features.ndim != 2 or features.shape[1] != schema.n_features:
        raise LocalDataError(
            source, f"X has shape {features.shape}; the task wants (rows, {schema.n_features})"
        )
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise LocalDataError(
            source, f"y has shape {labels.shape}; the task wants ({features.shape[0]},)"
        )
    if features.shape[0] == 0:
        raise LocalDataError(source, "there are no rows")
    if not np.issubdtype(features.dtype, np.number) or np.issubdtype(
        features.dtype, np.complexfloating
    ):
        raise LocalDataError(source, f"X has dtype {features.dtype}; it must be numeric")
    if not np.issubdtype(labels.dtype, np.integer):
        raise LocalDataError(source, f"y has dtype {labels.dtype}; labels must be integers")
    if not np.all(np.isfinite(features)):
        raise LocalDataError(source, "X holds NaN or infinite values")
    unknown = sorted(set(np.unique(labels).tolist()) - set(schema.classes))
    if unknown:
        raise LocalDataError(
            source, f"labels {_preview([str(u) for u in unknown])} are not among the task's classes"
        )
    return features.astype(schema.dtype), labels.astype(np.int64)


def _preview(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return f"[{shown}{', ...' if len(names) > 5 else ''}] ({len(names)} columns)"
