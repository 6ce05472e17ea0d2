# SPDX-License-Identifier: AGPL-3.0-only
from __future__ import annotations

from pathlib import Path

import pytest

from mercato.errors import ModelCardError, ModelLicenseError
from mercato.models.card import ModelCard, load_card, parse_card, render_card


def test_parse_card_reads_hub_fields_and_keeps_the_hub_license_id() -> None:
    card = parse_card(
        "---\nlicense: apache-2.0\nlanguage: en\ntags: [a, b]\npipeline_tag: text-classification\n"
        "datasets: imdb\nmetrics: [accuracy, f1]\nbase_model: org/base\n"
        "base_model_relation: finetune\nlibrary_name: transformers\n---\n# Title\nBody\n"
    )
    assert card.license == "apache-2.0"  # the Hub's spelling, as the card wrote it
    assert card.language == ["en"]
    assert card.tags == ["a", "b"]
    assert card.datasets == ["imdb"]
    assert card.metrics == ["accuracy", "f1"]
    assert card.base_model == ["org/base"]
    assert card.base_model_relation == "finetune"
    assert card.pipeline_tag == "text-classification"
    assert card.text == "# Title\nBody\n"


def test_parse_card_accepts_spdx_expression() -> None:
    assert parse_card("---\nlicense: mit OR apache-2.0\n---\n").license == "MIT OR Apache-2.0"


@pytest.mark.parametrize("front", ["tags: [x]\n", "license: ''\n", "license:\n"])
def test_parse_card_without_license_is_refused(front: str) -> None:
    with pytest.raises(ModelLicenseError) as info:
        parse_card(f"---\n{front}---\ntext\n")
    assert info.value.code == "model_card_license"
    assert "SPDX" in str(info.value)


def test_parse_card_with_unknown_license_is_refused() -> None:
    with pytest.raises(ModelLicenseError) as info:
        parse_card("---\nlicense: my-own-license\n---\n")
    assert info.value.license == "my-own-license"
    assert "spdx.org/licenses" in str(info.value)


def test_parse_card_with_list_license_is_refused() -> None:
    with pytest.raises(ModelLicenseError):
        parse_card("---\nlicense: [mit, apache-2.0]\n---\n")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("# Just a title\n", "no YAML front matter"),
        ("---\nlicense: mit\n", "never closes"),
        ("---\nlicense: [mit\n---\n", "not valid YAML"),
        ("---\n- a\n- b\n---\n", "must be a YAML mapping"),
        ("---\nlicense: mit\ntags: {a: 1}\n---\n", "'tags'"),
        ("---\nlicense: mit\npipeline_tag: [a]\n---\n", "'pipeline_tag'"),
    ],
)
def test_parse_card_malformed_front_matter(text: str, fragment: str) -> None:
    with pytest.raises(ModelCardError) as info:
        parse_card(text)
    assert fragment in str(info.value)
    assert info.value.code == "model_card_invalid"


def test_parse_card_does_not_build_python_objects() -> None:
    with pytest.raises(ModelCardError):
        parse_card("---\nlicense: !!python/object/apply:os.system ['true']\n---\n")


def test_load_card_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError) as info:
        load_card(tmp_path / "README.md")
    assert "README.md" in str(info.value)


def test_render_card_round_trips() -> None:
    card = ModelCard(
        license="apache-2.0",
        tags=["t"],
        datasets=["d"],
        base_model=["parent"],
        base_model_relation="finetune",
        text="# Hello\n",
    )
    text = render_card(card)
    assert text.startswith("---\nlicense: apache-2.0\n")
    assert parse_card(text) == card
    assert render_card(card) == text
