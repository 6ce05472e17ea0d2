# SPDX-License-Identifier: AGPL-3.0-only
"""Check try-call inputs against the manifest, and move tensors in and out of JSON.

Everything here runs in the caller's process, before a worker sees the input: a bad
request costs a few microseconds and never reaches ONNX Runtime. The try pool checks
float inputs for NaN and infinity once per batch, just before the batch goes to a
worker (`non_finite_input`), instead of once per call.

JSON tensors look like ``{"dtype": "float32", "shape": [1, 4], "data": [[...]]}``;
``dtype`` and ``shape`` are optional on input (checked when given) and always present on
output, where every output also says its ``kind`` (tensor, sequence, map: see
`encode_output`). Non-finite output floats are written as the strings ``"NaN"``, ``"Infinity"``
and ``"-Infinity"``, as the protobuf JSON mapping does, so the output is strict JSON.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mercato.errors import (
    InferenceInputError,
    InferenceInputNonFiniteError,
    InferenceInputShapeError,
    InferenceInputTooLargeError,
    InferenceInputTypeError,
    InferenceRunError,
)
from mercato.models.manifest import TensorSpec

_NUMPY_DTYPES = {
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
}
_TARGETS = {name: np.dtype(name) for name in _NUMPY_DTYPES}


@dataclass(frozen=True)
class InputPolicy:
    """What inputs a try-call accepts beyond what the manifest says.

    Attributes:
        max_input_bytes: All input tensors together, after conversion.
        max_request_bytes: The raw JSON request.
        allow_non_finite: Accept NaN and infinities in float inputs.
    """

    max_input_bytes: int = 8 * 1024 * 1024
    max_request_bytes: int = 32 * 1024 * 1024
    allow_non_finite: bool = False


def _to_array(name: str, value: Any, dtype: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        array = np.asarray(value)
    except ValueError as exc:
        # NumPy refuses ragged nested lists.
        raise InferenceInputShapeError(
            f"Input {name!r} is a ragged nested list; every row must have the same length.",
            input_name=name,
        ) from exc
    if array.dtype == object:
        raise InferenceInputTypeError(
            f"Input {name!r} mixes values NumPy cannot hold as {dtype}; send numbers only.",
            input_name=name,
        )
    return array


def _convert(
    name: str, array: np.ndarray, dtype: str, policy: InputPolicy, check_finite: bool
) -> np.ndarray:
    target = _TARGETS.get(dtype)
    if target is None:
        if dtype == "string" and array.dtype.kind in "US":
            return array.astype(object)
        raise InferenceInputTypeError(
            f"Input {name!r} has element type {dtype}, which the try-runtime cannot feed.",
            input_name=name,
        )
    kind = array.dtype.kind
    if array.size == 0:
        return array.astype(target)
    if target.kind == "f":
        if kind not in "fiu":
            raise InferenceInputTypeError(
                f"Input {name!r} must hold {dtype} numbers, got {array.dtype} values.",
                input_name=name,
            )
        # No copy when the dtype already matches: the pool copies the call's tensors
        # into the worker's shared segment anyway.
        converted = array
        if array.dtype != target:
            with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
                converted = array.astype(target)
        if check_finite and not policy.allow_non_finite and not np.isfinite(converted).all():
            raise non_finite_error(name, dtype)
        return converted
    if target.kind in "iu":
        if kind == "f":
            if not np.isfinite(array).all():
                raise InferenceInputNonFiniteError(
                    f"Input {name!r} holds NaN or infinity, but the model expects {dtype} "
                    "integers; send whole numbers.",
                    input_name=name,
                )
            if not (array == np.round(array)).all():
                raise InferenceInputTypeError(
                    f"Input {name!r} holds fractions, but the model expects {dtype} "
                    "integers; send whole numbers.",
                    input_name=name,
                )
        elif kind not in "iu":
            raise InferenceInputTypeError(
                f"Input {name!r} must hold {dtype} integers, got {array.dtype} values.",
                input_name=name,
            )
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise InferenceInputTypeError(
                f"Input {name!r} holds values outside the {dtype} range [{info.min}, {info.max}].",
                input_name=name,
            )
        return array.astype(target, copy=False)
    # bool
    if kind != "b":
        raise InferenceInputTypeError(
            f"Input {name!r} must hold booleans (true/false), got {array.dtype} values.",
            input_name=name,
        )
    return array.astype(target, copy=False)


def _check_shape(spec: TensorSpec, array: np.ndarray, bindings: dict[str, tuple[int, str]]) -> None:
    if spec.shape is None:
        return
    shape = array.shape  # a new tuple on every read: read it once
    if len(shape) != len(spec.shape):
        raise InferenceInputShapeError(
            f"Input {spec.name!r} must have {len(spec.shape)} dimensions "
            f"{_show(spec.shape)}, got {len(shape)} {list(shape)}.",
            input_name=spec.name,
        )
    for axis, want in enumerate(spec.shape):  # (zip with unpacking costs twice as much)
        got = shape[axis]
        if isinstance(want, str):  # symbolic: any size, the same in every input
            bound = bindings.get(want)
            if bound is None:
                bindings[want] = (got, spec.name)
            elif bound[0] != got:
                raise InferenceInputShapeError(
                    f"Dimension {want!r} is {bound[0]} in input {bound[1]!r} but {got} in "
                    f"input {spec.name!r}; inputs must agree on it.",
                    input_name=spec.name,
                )
        elif want is not None and want != got:
            raise InferenceInputShapeError(
                f"Input {spec.name!r} must have shape {_show(spec.shape)}; axis {axis} is "
                f"{got}, expected {want}.",
                input_name=spec.name,
            )


def _show(shape: Sequence[object]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def non_finite_error(name: str, dtype: str) -> InferenceInputNonFiniteError:
    """The error for a float input holding NaN or infinity."""
    return InferenceInputNonFiniteError(
        f"Input {name!r} holds NaN or infinity (or values too large for {dtype}); "
        "send finite numbers.",
        input_name=name,
    )


def non_finite_input(arrays: Mapping[str, Any]) -> InferenceInputNonFiniteError | None:
    """The error for the first float array in `arrays` holding NaN or infinity, if any.

    Returned, not raised, so no traceback keeps the arrays (views into a worker's
    shared segment) alive.
    """
    for name, array in arrays.items():
        floats = isinstance(array, np.ndarray) and array.dtype.kind == "f"
        if floats and not np.isfinite(array).all():
            return non_finite_error(name, str(array.dtype))
    return None


def prepare_inputs(
    specs: Sequence[TensorSpec],
    inputs: Mapping[str, Any],
    policy: InputPolicy,
    *,
    check_finite: bool = True,
) -> dict[str, np.ndarray]:
    """Check inputs against the manifest and convert them to the model's dtypes.

    Args:
        specs: The model's tensor inputs (from the manifest).
        inputs: One value per input name: a NumPy array or nested lists.
        policy: Size and non-finite limits.
        check_finite: Refuse NaN and infinity in float inputs here (unless the policy
            allows them). The try pool passes False and checks whole batches instead.

    Returns:
        Arrays of the exact dtype each input declares, in manifest order.

    Raises:
        InferenceInputError: an input is missing or not declared by the model.
        InferenceInputTooLargeError: the inputs are over `policy.max_input_bytes`.
        InferenceInputTypeError: an element type cannot be converted without loss.
        InferenceInputNonFiniteError: NaN or infinity where they are not allowed.
        InferenceInputShapeError: a rank or dimension does not match, or symbolic
            dimensions disagree between inputs.
    """
    complete = len(inputs) == len(specs)
    for spec in specs:
        complete = complete and spec.name in inputs
    if not complete:
        expected = {spec.name for spec in specs}
        unknown = sorted(set(inputs) - expected)
        missing = sorted(expected - set(inputs))
        raise InferenceInputError(
            f"The model takes inputs {sorted(expected)}; missing {missing}, unknown "
            f"{unknown}. Send exactly the inputs the manifest lists.",
            input_name=(missing or unknown)[0],
        )
    # Arrays first, sizes checked before any conversion allocates more memory.
    arrays: dict[str, np.ndarray] = {}
    total = 0
    for spec in specs:
        array = _to_array(spec.name, inputs[spec.name], spec.dtype)
        arrays[spec.name] = array
        total += array.nbytes
    if total > policy.max_input_bytes:
        raise InferenceInputTooLargeError(
            f"The inputs hold {total} bytes, over the {policy.max_input_bytes}-byte limit "
            "for a try-call. Send fewer rows.",
            size=total,
            limit=policy.max_input_bytes,
        )
    bindings: dict[str, tuple[int, str]] = {}
    for spec in specs:
        array = arrays[spec.name]
        _check_shape(spec, array, bindings)
        arrays[spec.name] = _convert(spec.name, array, spec.dtype, policy, check_finite)
    return arrays


def decode_request(
    data: bytes | str,
    specs: Sequence[TensorSpec],
    policy: InputPolicy,
    *,
    check_finite: bool = True,
) -> dict[str, np.ndarray]:
    """Parse a JSON try-call request and check it against the manifest.

    The request is ``{"inputs": {"X": {"dtype": ..., "shape": ..., "data": [...]}}}``;
    an input may also be given as the bare nested list.

    Args:
        data: The JSON text.
        specs: The model's tensor inputs.
        policy: Size and non-finite limits.
        check_finite: As for `prepare_inputs`.

    Returns:
        Arrays ready for the runtime.

    Raises:
        InferenceInputTooLargeError: the request is over `policy.max_request_bytes`
            (checked before parsing) or its tensors over `policy.max_input_bytes`.
        InferenceInputError: not JSON, or not shaped like a request.
        InferenceInputTypeError: a declared `dtype` differs from the manifest's, or
            values cannot be converted.
        InferenceInputShapeError: a declared `shape` differs from the data's, or the
            data does not match the manifest.
        InferenceInputNonFiniteError: NaN or infinity where they are not allowed.
    """
    if len(data) > policy.max_request_bytes:
        raise InferenceInputTooLargeError(
            f"The request is {len(data)} bytes, over the {policy.max_request_bytes}-byte "
            "limit for a try-call. Send fewer rows.",
            size=len(data),
            limit=policy.max_request_bytes,
        )
    try:
        request = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InferenceInputError(f"The request is not valid JSON: {exc}.") from exc
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), dict):
        raise InferenceInputError(
            'The request must be a JSON object {"inputs": {"<name>": {"dtype": ..., '
            '"data": [...]}}}.'
        )
    by_name = {spec.name: spec for spec in specs}
    values: dict[str, Any] = {}
    for name, item in request["inputs"].items():
        if not isinstance(item, dict):
            values[name] = item
            continue
        if "data" not in item:
            raise InferenceInputError(f'Input {name!r} has no "data" field.', input_name=name)
        spec = by_name.get(name)
        dtype = item.get("dtype")
        if spec is not None and dtype is not None and dtype != spec.dtype:
            raise InferenceInputTypeError(
                f"Input {name!r} is declared {dtype!r}, but the model expects {spec.dtype!r}.",
                input_name=name,
            )
        array = _to_array(name, item["data"], spec.dtype if spec else "float32")
        shape = item.get("shape")
        if shape is not None and list(array.shape) != list(shape):
            raise InferenceInputShapeError(
                f"Input {name!r} is declared with shape {shape}, but its data has shape "
                f"{list(array.shape)}.",
                input_name=name,
            )
        values[name] = array
    return prepare_inputs(specs, values, policy, check_finite=check_finite)


def _json_value(array: np.ndarray) -> Any:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        # Strict JSON has no NaN; follow the protobuf JSON mapping's spelling.
        spelled = array.astype(object)
        spelled[np.isnan(array)] = "NaN"
        spelled[np.isposinf(array)] = "Infinity"
        spelled[np.isneginf(array)] = "-Infinity"
        return spelled.tolist()
    if array.dtype == object:
        return [str(v) for v in array.ravel()] if array.ndim else str(array.item())
    return array.tolist()


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: np.dtype[Any]) -> str:
    """The name an answer gives a tensor's dtype (`str(dtype)` costs ~4 us a call, and
    each try answer names every output's)."""
    return "string" if dtype.kind == "O" else str(dtype)


def encode_tensor(array: np.ndarray) -> dict[str, Any]:
    """Encode one output tensor as JSON-ready data.

    Args:
        array: The tensor.

    Returns:
        ``{"kind": "tensor", "dtype": ..., "shape": [...], "data": nested lists}``.
    """
    return {
        "kind": "tensor",
        "dtype": _dtype_name(array.dtype),
        "shape": list(array.shape),
        "data": _json_value(array),
    }


# ONNX Runtime returns sequences as lists, maps as dicts, and nests them at most twice
# (a ZipMap is a sequence of maps); anything deeper is not an ONNX output.
_MAX_NESTING = 4


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)


def _key_type(mapping: Mapping[Any, Any]) -> str:
    keys = iter(mapping)
    first = next(keys, None)
    return "string" if isinstance(first, str) else "int64"


def _describe(value: Any) -> dict[str, Any]:
    """The kind of a sequence's elements, read from its first element."""
    if isinstance(value, np.ndarray):
        return {"kind": "tensor", "dtype": "string" if value.dtype == object else str(value.dtype)}
    if isinstance(value, Mapping):
        return {"kind": "map", "key": _key_type(value)}
    if isinstance(value, (list, tuple)):
        return {"kind": "sequence"}
    return {"kind": "scalar"}


def _plain(value: Any, depth: int) -> Any:
    """A sequence element or map value as plain JSON (maps keyed by strings)."""
    if depth > _MAX_NESTING:
        raise InferenceRunError(
            f"The model's output nests sequences or maps more than {_MAX_NESTING} deep; "
            "the try-runtime cannot encode it."
        )
    if isinstance(value, np.ndarray):
        return _json_value(value)
    if isinstance(value, Mapping):
        return {str(_scalar(k)): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return _scalar(value)


def encode_output(value: Any) -> dict[str, Any]:
    """Encode one output of any ONNX kind as JSON-ready data.

    Every output has a ``kind``. Tensors are as `encode_tensor` gives them; a map is
    ``{"kind": "map", "key": "int64"|"string", "data": {"<key>": value}}`` (JSON keys are
    strings: ``key`` says what they were); a sequence is ``{"kind": "sequence",
    "element": {"kind": ...}, "data": [...]}`` with each element as plain JSON (a map
    as an object, a tensor as nested lists); an empty optional is
    ``{"kind": "optional", "data": null}``. A ZipMap classifier's probabilities are a
    sequence of maps, one map of label to probability per input row.

    Args:
        value: What the runtime returned for the output.

    Returns:
        The JSON-ready entry.

    Raises:
        InferenceRunError: the output nests deeper than any ONNX output does.
    """
    if isinstance(value, np.ndarray):
        return encode_tensor(value)
    if isinstance(value, Mapping):
        return {"kind": "map", "key": _key_type(value), "data": _plain(value, 1)}
    if isinstance(value, (list, tuple)):
        element = _describe(value[0]) if value else {"kind": "unknown"}
        return {"kind": "sequence", "element": element, "data": _plain(value, 1)}
    if value is None:
        return {"kind": "optional", "data": None}
    return {"kind": "scalar", "data": _scalar(value)}


def encode_outputs(model: str, outputs: Mapping[str, Any], elapsed_ms: float) -> bytes:
    """Encode a try-call's outputs as the JSON response.

    Args:
        model: The model's name.
        outputs: Outputs by name: tensors, and the lists and dicts ONNX Runtime gives
            for sequence and map outputs.
        elapsed_ms: Time spent in the worker.

    Returns:
        UTF-8 JSON ``{"model": ..., "outputs": {name: entry}, "elapsed_ms": ...}``, each
        entry as `encode_output` gives it.

    Raises:
        InferenceRunError: an output cannot be encoded (see `encode_output`).
    """
    encoded = {
        name: encode_tensor(value) if isinstance(value, np.ndarray) else encode_output(value)
        for name, value in outputs.items()
    }
    body = {"model": model, "outputs": encoded, "elapsed_ms": round(elapsed_ms, 3)}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
