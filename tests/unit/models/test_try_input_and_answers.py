# SPDX-License-Identifier: AGPL-3.0-only
"""The try input every front end shares, and how an answer reads for a person."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mercato.errors import (
    InferenceInputError,
    InferenceInputShapeError,
    InferenceInputTypeError,
    TryAnswerError,
)
from mercato.models.runtime.answers import clean_label, present, read_answer
from mercato.models.runtime.inputs import check_request, request_bytes, try_request

ONE_INPUT = [{"name": "X", "kind": "tensor", "dtype": "float32", "shape": ["N", 4]}]
TWO_INPUTS = [*ONE_INPUT, {"name": "Y", "kind": "tensor", "dtype": "float32", "shape": ["N", 1]}]


@pytest.mark.parametrize(
    "text",
    [
        '{"inputs": {"X": [[5.1, 3.5, 1.4, 0.2]]}}',
        '{"X": [[5.1, 3.5, 1.4, 0.2]]}',
        "[[5.1, 3.5, 1.4, 0.2]]",
        "[5.1, 3.5, 1.4, 0.2]",
        "5.1, 3.5, 1.4, 0.2",
        " 5.1 3.5\t1.4,0.2\n",
    ],
)
def test_every_form_of_try_input_gives_the_same_request(text: str) -> None:
    assert try_request(text, ONE_INPUT) == {"inputs": {"X": [[5.1, 3.5, 1.4, 0.2]]}}


def test_named_inputs_need_no_manifest() -> None:
    assert try_request('{"X": [[1]], "Y": [[2]]}', None) == {"inputs": {"X": [[1]], "Y": [[2]]}}


@pytest.mark.parametrize(
    ("text", "inputs", "message"),
    [
        ("[[1, 2]]", TWO_INPUTS, "inputs are \\['X', 'Y'\\]"),
        ("1, 2", None, "not known here"),
        ("five, six", ONE_INPUT, "neither JSON nor a list of numbers"),
        ("{}", ONE_INPUT, "names no input"),
        ('"text"', ONE_INPUT, "another kind"),
        ("true", ONE_INPUT, "another kind"),
    ],
)
def test_input_that_does_not_say_what_it_is_for_is_refused(
    text: str, inputs: list[dict[str, object]] | None, message: str
) -> None:
    with pytest.raises(InferenceInputError, match=message):
        try_request(text, inputs)


def test_nan_typed_in_is_refused_before_any_call() -> None:
    with pytest.raises(InferenceInputError, match="NaN or infinity"):
        request_bytes("[NaN, 1, 2, 3]", ONE_INPUT)
    assert json.loads(request_bytes("1,2,3,4", ONE_INPUT)) == {"inputs": {"X": [[1, 2, 3, 4]]}}


ZIPMAP_INT: dict[str, dict[str, Any]] = {
    "output_label": {"kind": "tensor", "dtype": "int64", "shape": [1], "data": [2]},
    "output_probability": {
        "kind": "sequence",
        "element": {"kind": "map", "key": "int64"},
        "data": [{"0": 0.1234, "1": 0.2, "2": 0.6766}],
    },
}
IRIS_CARD = {"card": {"classes": ["setosa", "versicolor", "virginica"]}}


def test_zipmap_with_int_labels_shows_the_cards_class_names_best_first() -> None:
    label, probabilities = present(ZIPMAP_INT, IRIS_CARD)
    assert label.text == "2 (virginica)"
    assert [(s.label, s.shown) for s in probabilities.rows[0]] == [
        ("virginica", "0.677"),
        ("versicolor", "0.200"),
        ("setosa", "0.123"),
    ]
    # Rounding is for people only: the score keeps full precision.
    assert probabilities.rows[0][0].probability == 0.6766


def test_zipmap_without_class_names_shows_its_own_labels() -> None:
    _, probabilities = present(ZIPMAP_INT, None)
    assert [s.label for s in probabilities.rows[0]] == ["2", "1", "0"]
    # Names that do not match the number of classes are not used.
    _, mismatched = present(ZIPMAP_INT, {"card": {"classes": ["a", "b"]}})
    assert [s.label for s in mismatched.rows[0]] == ["2", "1", "0"]


def test_zipmap_with_string_labels_keeps_them_over_the_card() -> None:
    outputs: dict[str, dict[str, Any]] = {
        "output_label": {"kind": "tensor", "dtype": "string", "shape": [1], "data": ["wine_b"]},
        "output_probability": {
            "kind": "sequence",
            "element": {"kind": "map", "key": "string"},
            "data": [{"wine_a": 0.25, "wine_b": 0.75}],
        },
    }
    label, probabilities = present(outputs, {"card": {"classes": ["x", "y"]}})
    assert [(s.label, s.shown) for s in probabilities.rows[0]] == [
        ("wine_b", "0.750"),
        ("wine_a", "0.250"),
    ]
    assert label.text == '["wine_b"]'


def test_a_probability_tensor_is_labelled_and_other_outputs_shown_as_values() -> None:
    outputs = {
        "probabilities": {
            "kind": "tensor",
            "dtype": "float32",
            "shape": [2, 3],
            "data": [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]],
        },
        "variable": {"kind": "tensor", "dtype": "float32", "shape": [1, 1], "data": [[151.5]]},
    }
    probabilities, variable = present(outputs, IRIS_CARD, top=2)
    assert [[s.label for s in row] for row in probabilities.rows] == [
        ["setosa", "versicolor"],
        ["virginica", "setosa"],
    ]
    assert variable.rows == [] and variable.text == "[[151.5]]"


def test_non_finite_probabilities_are_left_out_and_rows_are_capped() -> None:
    outputs = {
        "output_probability": {
            "kind": "sequence",
            "element": {"kind": "map", "key": "int64"},
            "data": [{"0": "NaN", "1": 1.0}] * 30,
        }
    }
    (view,) = present(outputs, None, max_rows=20)
    assert [s.label for s in view.rows[0]] == ["1"]
    assert len(view.rows) == 20 and view.more_rows == 10


def test_labels_from_someone_else_are_printable_and_bounded() -> None:
    outputs = {
        "output_probability": {
            "kind": "map",
            "key": "string",
            "data": {"\x1b[31mred\x1b[0m": 0.5, "x" * 500: 0.5},
        }
    }
    (view,) = present(outputs)
    labels = [s.label for s in view.rows[0]]
    assert labels[0] == "?[31mred?[0m"
    assert len(labels[1]) == 100 and labels[1].endswith("…")
    assert clean_label("a\nb") == "a?b"


@pytest.mark.parametrize(
    "answer",
    [b"<html>", b"[]", b'{"outputs": []}', b'{"outputs": {"y": 1}}', b"\xff"],
)
def test_an_answer_not_shaped_as_the_try_api_is_a_typed_error(answer: bytes) -> None:
    with pytest.raises(TryAnswerError):
        read_answer(answer)


@pytest.mark.parametrize("inputs", [{"X": 1}, "X", [1, "X"], [{"name": "X"}, "Y"]])
def test_a_manifest_not_shaped_as_the_schema_is_read_defensively(inputs: Any) -> None:
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        assert try_request("1, 2", inputs) == {"inputs": {"X": [[1, 2]]}}
    else:
        with pytest.raises(InferenceInputError, match="not known here"):
            try_request("1, 2", inputs)


def test_a_request_is_checked_against_the_manifest_before_any_call() -> None:
    check_request(request_bytes("1, 2, 3, 4", ONE_INPUT), ONE_INPUT)
    with pytest.raises(InferenceInputShapeError, match="axis 1 is 2, expected 4"):
        check_request(request_bytes("1, 2", ONE_INPUT), ONE_INPUT)
    with pytest.raises(InferenceInputTypeError):
        check_request(request_bytes('{"X": [["a", "b", "c", "d"]]}', ONE_INPUT), ONE_INPUT)
    # A manifest not shaped as the schema is left to the provider to judge.
    check_request(request_bytes("1, 2", ONE_INPUT), [{"name": 3, "dtype": "float32"}])
