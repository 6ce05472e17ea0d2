# SPDX-License-Identifier: AGPL-3.0-only
"""The card's optional try fields: features, classes, example."""

from __future__ import annotations

import pytest

from mercato.errors import ModelCardError
from mercato.models.card import parse_card, render_card


def _card(extra: str) -> str:
    return f"---\nlicense: mit\n{extra}---\nText.\n"


def test_try_fields_parse_and_reach_the_manifest() -> None:
    card = parse_card(
        _card(
            "features: [sepal length, sepal width, petal length, petal width]\n"
            "classes: [setosa, versicolor, virginica]\n"
            "example: '{\"X\": [[5.1, 3.5, 1.4, 0.2]]}'\n"
        )
    )
    manifest = card.to_manifest()
    assert manifest["features"] == ["sepal length", "sepal width", "petal length", "petal width"]
    assert manifest["classes"] == ["setosa", "versicolor", "virginica"]
    assert manifest["example"] == '{"X": [[5.1, 3.5, 1.4, 0.2]]}'
    assert parse_card(render_card(card)) == card


def test_unset_try_fields_leave_the_manifest_as_it_was() -> None:
    manifest = parse_card(_card("")).to_manifest()
    assert not {"features", "classes", "example"} & set(manifest)


def test_features_by_input_name_integer_classes_and_a_yaml_example() -> None:
    card = parse_card(_card("features: {X: [a, b]}\nclasses: [0, 1]\nexample: {X: [[1.5, 2]]}\n"))
    assert card.features == {"X": ["a", "b"]}
    assert card.classes == ["0", "1"]
    assert card.example == '{"X":[[1.5,2]]}'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("classes: setosa\n", "list of 1 to 4096 names"),
        ("classes: [yes, no]\n", "Quote each name"),
        ("classes: [1.5]\n", "Quote each name"),
        ("features: [a, '']\n", "printable characters"),
        ('features: ["a\\u0007"]\n', "printable characters"),
        (f"features: [{'x' * 129}]\n", "printable characters"),
        ("features: {}\n", "map input names to lists"),
        ("features: {X: a}\n", "list of 1 to 4096 names"),
        ("example: ''\n", "'example' must be"),
        (f"example: '{'1,' * 40000}'\n", "'example' must be"),
    ],
)
def test_bad_try_fields_are_refused_with_a_fix(extra: str, message: str) -> None:
    with pytest.raises(ModelCardError, match=message):
        parse_card(_card(extra))
