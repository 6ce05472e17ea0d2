# SPDX-License-Identifier: AGPL-3.0-only
from __future__ import annotations

import json

import numpy as np
import pytest

from mercato.errors import (
    InferenceInputError,
    InferenceInputNonFiniteError,
    InferenceInputShapeError,
    InferenceInputTooLargeError,
    InferenceInputTypeError,
    InferenceRunError,
)
from mercato.models.manifest import TensorSpec
from mercato.models.runtime.tensors import (
    InputPolicy,
    decode_request,
    encode_outputs,
    encode_tensor,
    non_finite_input,
    prepare_inputs,
)

X = TensorSpec("X", "float32", ("N", 4))
IDS = TensorSpec("ids", "int64", ("N", None))
POLICY = InputPolicy(max_input_bytes=1024 * 1024, max_request_bytes=4 * 1024 * 1024)


def test_lists_become_arrays_of_the_declared_dtype() -> None:
    out = prepare_inputs([X, IDS], {"X": [[1, 2, 3, 4]], "ids": [[1.0, 2.0, 3.0]]}, POLICY)
    assert out["X"].dtype == np.float32 and out["X"].shape == (1, 4)
    assert out["ids"].dtype == np.int64 and out["ids"].tolist() == [[1, 2, 3]]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([[1, 2, 3]], "axis 1 is 3, expected 4"),
        ([1, 2, 3, 4], "must have 2 dimensions"),
        ([[1, 2, 3, 4], [1, 2]], "ragged"),
    ],
)
def test_wrong_shapes(value: object, fragment: str) -> None:
    with pytest.raises(InferenceInputShapeError) as info:
        prepare_inputs([X], {"X": value}, POLICY)
    assert fragment in str(info.value)
    assert info.value.input_name == "X"
    assert info.value.code == "inference_input_shape"


def test_symbolic_dims_must_agree_between_inputs() -> None:
    with pytest.raises(InferenceInputShapeError, match="'N' is 2"):
        prepare_inputs([X, IDS], {"X": np.zeros((2, 4), "f4"), "ids": [[1]]}, POLICY)


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        (X, [["a", "b", "c", "d"]]),
        (X, [[True, False, True, False]]),
        (IDS, [[1.5]]),
        (IDS, [["7"]]),
        (TensorSpec("b", "bool", (1,)), [1]),
        (TensorSpec("u", "uint8", (1,)), [300]),
    ],
)
def test_wrong_element_types(spec: TensorSpec, value: object) -> None:
    with pytest.raises(InferenceInputTypeError) as info:
        prepare_inputs([spec], {spec.name: value}, POLICY)
    assert info.value.code == "inference_input_dtype"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_where_ints_are_expected(bad: float) -> None:
    with pytest.raises(InferenceInputNonFiniteError, match="integers") as info:
        prepare_inputs([IDS], {"ids": [[1.0, bad]]}, POLICY)
    assert info.value.code == "inference_input_non_finite"


def test_non_finite_floats_follow_the_policy() -> None:
    value = {"X": [[1.0, float("nan"), 0.0, 0.0]]}
    with pytest.raises(InferenceInputNonFiniteError):
        prepare_inputs([X], value, POLICY)
    # float64 overflow to float32 inf is caught too
    with pytest.raises(InferenceInputNonFiniteError):
        prepare_inputs([X], {"X": [[1e300, 0.0, 0.0, 0.0]]}, POLICY)
    allowed = prepare_inputs([X], value, InputPolicy(allow_non_finite=True))
    assert np.isnan(allowed["X"][0, 1])


def test_the_finite_check_can_be_left_to_the_pool() -> None:
    """The try pool checks whole batches; the inputs pass here and are caught there."""
    checked_later = prepare_inputs(
        [X], {"X": [[1.0, float("nan"), 0.0, 0.0]]}, POLICY, check_finite=False
    )
    assert np.isnan(checked_later["X"][0, 1])
    error = non_finite_input(checked_later)
    assert isinstance(error, InferenceInputNonFiniteError)
    assert error.input_name == "X" and "float32" in str(error)
    # Integers cannot hold NaN, so they are always checked before conversion.
    with pytest.raises(InferenceInputNonFiniteError, match="integers"):
        prepare_inputs([IDS], {"ids": [[1.0, float("nan")]]}, POLICY, check_finite=False)


def test_non_finite_input_names_the_first_bad_float_array() -> None:
    finite = np.zeros((2, 4), np.float32)
    assert non_finite_input({"X": finite, "ids": np.array([[1, 2]])}) is None
    error = non_finite_input({"X": finite, "Y": np.array([np.inf]), "Z": np.array([np.nan])})
    assert error is not None and error.input_name == "Y"


def test_missing_and_unknown_inputs() -> None:
    with pytest.raises(InferenceInputError, match="missing \\['X'\\]"):
        prepare_inputs([X], {}, POLICY)
    with pytest.raises(InferenceInputError, match="unknown \\['Y'\\]"):
        prepare_inputs([X], {"X": [[1, 2, 3, 4]], "Y": [1]}, POLICY)


def test_100_mb_array_is_refused_before_conversion() -> None:
    huge = np.empty((25 * 1024 * 1024 // 4 * 4, 4), dtype=np.float32)  # 400 MB virtual
    huge = huge[: 100 * 1024 * 1024 // 16]  # 100 MB view, pages never touched
    with pytest.raises(InferenceInputTooLargeError) as info:
        prepare_inputs([X], {"X": huge}, POLICY)
    assert info.value.size == 100 * 1024 * 1024
    assert info.value.limit == POLICY.max_input_bytes


def test_100_mb_json_request_is_refused_before_parsing() -> None:
    request = b'{"inputs":{"X":[' + b"0," * (50 * 1024 * 1024) + b"0]}}"
    with pytest.raises(InferenceInputTooLargeError) as info:
        decode_request(request, [X], POLICY)
    assert info.value.size == len(request)


def test_json_request_checks_declared_dtype_and_shape() -> None:
    ok = decode_request(
        '{"inputs":{"X":{"dtype":"float32","shape":[1,4],"data":[[1,2,3,4]]}}}', [X], POLICY
    )
    assert ok["X"].dtype == np.float32
    with pytest.raises(InferenceInputTypeError, match="declared 'int64'"):
        decode_request('{"inputs":{"X":{"dtype":"int64","data":[[1,2,3,4]]}}}', [X], POLICY)
    with pytest.raises(InferenceInputShapeError, match="declared with shape"):
        decode_request('{"inputs":{"X":{"shape":[2,4],"data":[[1,2,3,4]]}}}', [X], POLICY)
    with pytest.raises(InferenceInputNonFiniteError):
        decode_request('{"inputs":{"ids":[[1, NaN]]}}', [IDS], POLICY)
    with pytest.raises(InferenceInputError, match="not valid JSON"):
        decode_request("{", [X], POLICY)
    with pytest.raises(InferenceInputError, match="must be a JSON object"):
        decode_request("[1]", [X], POLICY)


def test_outputs_encode_as_strict_json_with_dtypes() -> None:
    body = encode_outputs(
        "m",
        {"y": np.array([[1.0, np.nan, np.inf, -np.inf]], "f4"), "label": np.array([3])},
        1.23456,
    )
    decoded = json.loads(body)
    assert decoded["outputs"]["y"] == {
        "kind": "tensor",
        "dtype": "float32",
        "shape": [1, 4],
        "data": [[1.0, "NaN", "Infinity", "-Infinity"]],
    }
    assert decoded["outputs"]["label"] == {
        "kind": "tensor",
        "dtype": "int64",
        "shape": [1],
        "data": [3],
    }
    assert decoded["elapsed_ms"] == 1.235
    assert b"NaN," not in body


def test_zipmap_outputs_encode_as_a_sequence_of_maps() -> None:
    # What ONNX Runtime returns for a default skl2onnx classifier: a list of dicts.
    body = encode_outputs(
        "m",
        {
            "output_label": np.array([1, 0]),
            "output_probability": [{0: 0.25, 1: 0.75}, {0: 1.0, 1: 0.0}],
            "named": [{"setosa": 0.5, "virginica": float("nan")}],
        },
        0.5,
    )
    decoded = json.loads(body)
    assert decoded["outputs"]["output_probability"] == {
        "kind": "sequence",
        "element": {"kind": "map", "key": "int64"},
        "data": [{"0": 0.25, "1": 0.75}, {"0": 1.0, "1": 0.0}],
    }
    # A NaN inside a map is spelled as in tensors, so the answer stays strict JSON.
    assert decoded["outputs"]["named"] == {
        "kind": "sequence",
        "element": {"kind": "map", "key": "string"},
        "data": [{"setosa": 0.5, "virginica": "NaN"}],
    }


def test_map_sequence_of_tensors_and_empty_optional_encode_with_their_kind() -> None:
    outputs = {
        "m": {"a": np.float32(2.5)},
        "s": [np.array([1.0, 2.0], "f4"), np.array([[3]], "i8")],
        "o": None,
        "e": [],
    }
    decoded = json.loads(encode_outputs("m", outputs, 0.0))["outputs"]
    assert decoded["m"] == {"kind": "map", "key": "string", "data": {"a": 2.5}}
    assert decoded["s"] == {
        "kind": "sequence",
        "element": {"kind": "tensor", "dtype": "float32"},
        "data": [[1.0, 2.0], [[3]]],
    }
    assert decoded["o"] == {"kind": "optional", "data": None}
    assert decoded["e"] == {"kind": "sequence", "element": {"kind": "unknown"}, "data": []}


def test_an_output_nested_deeper_than_onnx_allows_is_a_run_error() -> None:
    deep: list[object] = [1.0]
    for _ in range(10):
        deep = [deep]
    with pytest.raises(InferenceRunError, match="nests sequences or maps"):
        encode_outputs("m", {"x": deep}, 0.0)


@pytest.mark.parametrize(
    ("array", "name"),
    [
        (np.array([1], ">i4"), ">i4"),  # str() of a big-endian dtype names its order
        (np.array([1.5], "f2"), "float16"),
        (np.array([True]), "bool"),
        (np.array(["a"], object), "string"),
        (np.array([1 + 2j], "c8"), "complex64"),
    ],
)
def test_each_dtype_keeps_its_name_however_often_it_is_encoded(
    array: np.ndarray, name: str
) -> None:
    # Names are remembered per dtype: a second answer must name it the same, and two
    # dtypes that compare unequal must never share a name.
    for _ in range(2):
        assert encode_tensor(array)["dtype"] == name
    assert encode_tensor(np.array([1], "<i4"))["dtype"] == "int32"
