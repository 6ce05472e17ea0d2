# SPDX-License-Identifier: AGPL-3.0-only
"""Dynamic batching: which calls may share a run, and cutting its outputs back per call."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mercato.models.package import ModelPackage


def batch_dimension(package: ModelPackage) -> str | None:
    """The symbolic batch dimension a model's inputs and outputs all start with.

    Args:
        package: The model.

    Returns:
        The dimension's name, or None when calls to this model cannot be batched:
        an input or output lacks a known rank, does not start with the same symbolic
        dimension, or is not a tensor.
    """
    inputs = package.inputs
    outputs = package.manifest.get("outputs") or []
    if not inputs or not outputs:
        return None
    first = inputs[0].shape[0] if inputs[0].shape else None
    if not isinstance(first, str):
        return None
    for spec in inputs:
        if not spec.shape or spec.shape[0] != first:
            return None
    for entry in outputs:
        shape = entry.get("shape") if entry.get("kind") == "tensor" else None
        if not shape or shape[0] != first:
            return None
    return first


def split_outputs(
    outputs: Mapping[str, Any], rows: Sequence[int]
) -> list[dict[str, np.ndarray]] | None:
    """Cut a batched run's outputs back into one output set per call.

    Args:
        outputs: The batched run's outputs.
        rows: Rows each call contributed, in batch order.

    Returns:
        One dict per call, or None when an output is not an array whose first
        dimension is the batch's total rows. Each output is copied once, whole, and
        the calls get views into that copy (one copy per batch, not one per call), so
        `outputs` may be views into memory that is reused afterwards.
    """
    total = sum(rows)
    for value in outputs.values():
        if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != total:
            return None
    one_row_each = total == len(rows)
    ends = list(itertools.accumulate(rows))
    starts = [0, *ends[:-1]]
    parts: list[dict[str, np.ndarray]] = [{} for _ in rows]
    for name, value in outputs.items():
        whole = value.copy()
        if one_row_each:  # the common case: iterating over (N, 1, ...) runs at C speed
            pieces = list(whole[:, np.newaxis])
        else:
            pieces = [whole[start:end] for start, end in zip(starts, ends, strict=True)]
        for part, piece in zip(parts, pieces, strict=True):
            part[name] = piece
    return parts


def batch_signature(
    key: str, names: Sequence[str] | None, arrays: Mapping[str, Any], rows: int
) -> tuple[object, ...] | None:
    """What calls must have in common to run as one batch.

    Args:
        key: The model's session key.
        names: The outputs asked for (None: all).
        arrays: The call's checked inputs.
        rows: The call's size along the batch dimension.

    Returns:
        A hashable signature, or None when this call must run alone: an input is not
        a numeric array or does not start with `rows` along its first axis.
    """
    signature: list[object] = [key, tuple(names) if names is not None else None]
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):
            return None
        dtype, shape = array.dtype, array.shape  # each read makes a new object
        if dtype.kind not in "biufc" or not shape or shape[0] != rows:
            return None
        signature.append((name, dtype, shape[1:]))  # dtypes hash and compare by value
    return tuple(signature)
