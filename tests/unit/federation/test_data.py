# SPDX-License-Identifier: AGPL-3.0-only
"""Local data is checked against the spec before anything is sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mercato.errors import LocalDataError
from mercato.federation.data import load_local_data
from mercato.federation.spec import InputSchema, TaskSpec

SPEC = TaskSpec(
    name="t", input=InputSchema(n_features=3, classes=(0, 1), feature_names=("a", "b", "c"))
)


def test_csv_with_the_spec_columns_loads(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,label\n1,2,3,0\n4,5,6.5,1\n")
    features, labels = load_local_data(path, SPEC)
    assert features.dtype == np.float32
    assert features.tolist() == [[1, 2, 3], [4, 5, 6.5]]
    assert labels.tolist() == [0, 1]


def test_npz_loads(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((5, 3)), y=np.array([0, 1, 0, 1, 1]))
    features, labels = load_local_data(path, SPEC)
    assert features.shape == (5, 3)
    assert labels.dtype == np.int64


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a,b,label\n1,2,0\n", "feature columns"),
        ("a,b,c,d,label\n1,2,3,4,0\n", "feature columns"),
        ("a,b,c,y\n1,2,3,0\n", "last column"),
        ("a,b,c,label\n1,2,3,7\n", "not among the task's classes"),
        ("a,b,c,label\n1,x,3,0\n", "not a number"),
        ("a,b,c,label\n1,2,3,0.5\n", "not an integer"),
        ("a,b,c,label\n1,2,0\n", "fields"),
        ("a,b,c,label\n1,nan,3,0\n", "NaN"),
        ("a,b,c,label\n", "no rows"),
        ("", "empty"),
    ],
)
def test_csv_that_does_not_fit_is_refused(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(LocalDataError, match=words) as caught:
        load_local_data(path, SPEC)
    assert caught.value.path == str(path)
    assert "Nothing was sent" in str(caught.value)


def test_npz_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    cases = {
        "shape.npz": {"X": np.ones((4, 2)), "y": np.zeros(4, dtype=int)},
        "rows.npz": {"X": np.ones((4, 3)), "y": np.zeros(3, dtype=int)},
        "labels.npz": {"X": np.ones((2, 3)), "y": np.array([0.0, 1.0])},
        "strings.npz": {"X": np.array([["a", "b", "c"]]), "y": np.array([0])},
        "missing.npz": {"X": np.ones((2, 3))},
    }
    for name, arrays in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(LocalDataError):
            load_local_data(tmp_path / name, SPEC)


def test_pickled_npz_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, X=np.array([object()], dtype=object), y=np.array([0]))
    with pytest.raises(LocalDataError, match="readable"):
        load_local_data(path, SPEC)


def test_other_formats_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    with pytest.raises(LocalDataError, match=r"not \.csv or \.npz"):
        load_local_data(tmp_path / "d.parquet", SPEC)
    with pytest.raises(LocalDataError, match="does not exist"):
        load_local_data(tmp_path / "nope.csv", SPEC)
