# SPDX-License-Identifier: AGPL-3.0-only
"""The web try form: fields from the card, the request it posts, one-line errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mercato.errors import InferenceInputError, InferenceRunError, TryAnswerError
from mercato.gateway.try_form import one_line, try_fields, try_request, try_views

IRIS: dict[str, Any] = {
    "card": {
        "features": ["sepal length", "sepal width", "petal length", "petal width"],
        "classes": ["setosa", "versicolor", "virginica"],
        "example": '{"X": [[5.1, 3.5, 1.4, 0.2]]}',
    },
    "inputs": [{"name": "X", "kind": "tensor", "dtype": "float32", "shape": ["N", 4]}],
}
DIGITS: dict[str, Any] = {
    "card": {"pipeline_tag": "image-classification", "example": json.dumps([[0, 16] * 32])},
    "inputs": [{"name": "X", "kind": "tensor", "dtype": "float32", "shape": ["N", 64]}],
}


def test_features_are_named_by_the_card_with_its_example_as_placeholders() -> None:
    (field,) = try_fields(IRIS)
    assert field.kind == "features"
    assert field.labels == ["sepal length", "sepal width", "petal length", "petal width"]
    assert field.placeholders == ["5.1", "3.5", "1.4", "0.2"]


def test_without_card_fields_features_are_numbered_and_boxes_have_no_hint() -> None:
    (field,) = try_fields({"card": {}, "inputs": IRIS["inputs"]})
    assert field.labels == ["feature 1", "feature 2", "feature 3", "feature 4"]
    assert field.placeholders == ["", "", "", ""]


@pytest.mark.parametrize(
    ("manifest", "size", "scale"),
    [
        (DIGITS, (8, 8), 16.0),
        ({"card": {}, "inputs": [{"name": "X", "dtype": "float32", "shape": ["N", 1, 28, 28]}]},
         (28, 28), 1.0),
        ({"card": {}, "inputs": [{"name": "X", "dtype": "uint8", "shape": ["N", 12, 10, 1]}]},
         (12, 10), 255.0),
    ],
)  # fmt: skip
def test_small_pictures_get_a_canvas_scaled_to_their_range(
    manifest: dict[str, Any], size: tuple[int, int], scale: float
) -> None:
    (field,) = try_fields(manifest)
    assert (field.kind, (field.height, field.columns), field.scale) == ("image", size, scale)


def test_a_wide_or_large_input_gets_one_text_field() -> None:
    wide = {"card": {}, "inputs": [{"name": "X", "dtype": "float32", "shape": ["N", 300]}]}
    big = {"card": {}, "inputs": [{"name": "X", "dtype": "float32", "shape": ["N", 1, 96, 96]}]}
    assert [f.kind for f in try_fields(wide) + try_fields(big)] == ["text", "text"]


def test_the_form_posts_one_row_shaped_as_the_input() -> None:
    body = try_request(IRIS, {"in:X": ["5.1", "3.5", "1.4", " 0.2 "]})
    assert json.loads(body) == {
        "inputs": {"X": {"dtype": "float32", "data": [[5.1, 3.5, 1.4, 0.2]]}}
    }
    picture = {"card": {}, "inputs": [{"name": "X", "dtype": "int64", "shape": ["N", 1, 2, 3]}]}
    body = try_request(picture, {"in:X": ["1, 2, 3\n4 5 6"]})
    assert json.loads(body)["inputs"]["X"]["data"] == [[[[1, 2, 3], [4, 5, 6]]]]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"in:X": ["5.1", "", "1.4", "0.2"]}, "Fill in sepal width of X"),
        ({"in:X": ["5.1", "abc", "1.4", "0.2"]}, "sepal width of X must be a number"),
        ({"in:X": ["5.1", "nan", "1.4", "0.2"]}, "must be a finite number"),
        ({"in:X": ["5.1", "3.5"]}, "X takes 4 numbers, got 2"),
        ({}, "X takes 4 numbers, got 0"),
    ],
)
def test_a_bad_form_is_a_typed_error_naming_the_field(
    form: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(InferenceInputError, match=message):
        try_request(IRIS, form)


def test_probabilities_come_first_labelled_and_a_bad_answer_is_typed() -> None:
    answer = {
        "outputs": {
            "output_label": {"kind": "tensor", "dtype": "int64", "shape": [1], "data": [0]},
            "output_probability": {
                "kind": "sequence",
                "element": {"kind": "map", "key": "int64"},
                "data": [{"0": 0.9, "1": 0.1, "2": 0.0}],
            },
        }
    }
    probabilities, label = try_views(json.dumps(answer).encode(), IRIS)
    assert probabilities.name == "output_probability" and probabilities.rows[0][0].label == "setosa"
    assert label.text == "0 (setosa)"
    with pytest.raises(TryAnswerError):
        try_views(b"<html>500</html>", IRIS)


def test_errors_show_as_one_short_line() -> None:
    error = InferenceRunError("ONNX Runtime failed\n  at node 3\n" + "x" * 1000)
    assert one_line(error) == "ONNX Runtime failed"
    assert len(one_line(InferenceRunError("y" * 1000))) == 300


@pytest.mark.parametrize(
    "inputs",
    [
        "X",
        {"X": 1},
        ["X", 3],
        [{"name": "X", "dtype": "float32", "shape": "N, 4"}],
        [{"name": "X", "dtype": "float32", "shape": {"a": 1}}],
        [{"name": "X", "dtype": "float32", "shape": ["N", 10**12]}],
    ],
)
def test_a_malformed_manifest_from_another_node_never_breaks_the_form(inputs: object) -> None:
    manifest = {"card": ["not", "a", "card"], "inputs": inputs}
    fields = try_fields(manifest)
    assert all(f.kind in ("features", "text") for f in fields)
    if fields:  # a field that exists takes numbers, or says how many it needs
        with pytest.raises(InferenceInputError, match=r"X takes|of X must be a number"):
            try_request(manifest, {"in:X": ["1, 2"]})
    else:
        assert json.loads(try_request(manifest, {"in:X": ["1"]})) == {"inputs": {}}
