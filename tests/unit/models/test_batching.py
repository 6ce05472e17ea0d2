# SPDX-License-Identifier: AGPL-3.0-only
"""Splitting a batched run's outputs back per call."""

from __future__ import annotations

import numpy as np

from mercato.models.runtime.batching import split_outputs


def test_outputs_are_cut_at_each_calls_rows() -> None:
    outputs = {"label": np.arange(6), "scores": np.arange(12.0).reshape(6, 2)}
    parts = split_outputs(outputs, [1, 3, 2])
    assert parts is not None
    assert [p["label"].tolist() for p in parts] == [[0], [1, 2, 3], [4, 5]]
    assert parts[2]["scores"].tolist() == [[8.0, 9.0], [10.0, 11.0]]
    # Copied out of `outputs` (a worker's reused segment); no caller sees another's rows.
    parts[0]["label"][0] = 99
    assert outputs["label"][0] == 0
    assert [p["label"].tolist() for p in parts] == [[99], [1, 2, 3], [4, 5]]


def test_one_row_calls_each_get_their_row_with_the_batch_axis_kept() -> None:
    outputs = {"label": np.arange(4), "scores": np.arange(12.0).reshape(4, 3)}
    parts = split_outputs(outputs, [1, 1, 1, 1])
    assert parts is not None
    assert [p["label"].shape for p in parts] == [(1,)] * 4
    assert [p["scores"].shape for p in parts] == [(1, 3)] * 4
    assert [p["label"].tolist() for p in parts] == [[0], [1], [2], [3]]
    assert parts[3]["scores"].tolist() == [[9.0, 10.0, 11.0]]
    parts[1]["scores"][0, 0] = -1.0
    assert outputs["scores"][1, 0] == 3.0
    assert parts[0]["scores"].tolist() == [[0.0, 1.0, 2.0]]


def test_outputs_without_the_batch_dimension_cannot_be_split() -> None:
    assert split_outputs({"total": np.float32(3.0) * np.ones(())}, [1, 2]) is None
    assert split_outputs({"y": np.arange(4)}, [1, 2]) is None
    assert split_outputs({"seq": [1, 2, 3]}, [1, 2]) is None
