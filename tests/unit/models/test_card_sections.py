# SPDX-License-Identifier: AGPL-3.0-only
"""The sections a paid listing's card needs: intended uses and limitations."""

from __future__ import annotations

import pytest

from mercato.cli.errors import exit_code_for
from mercato.errors import CardSectionsMissingError, ModelCardError
from mercato.models.card import parse_card, require_buyer_sections
from mercato.models.sections import missing_sections

HUB_TEMPLATE = """# m

## Uses

### Direct Use

Transcribing English speech.

### Out-of-Scope Use

[More Information Needed]

## Bias, Risks, and Limitations

Accuracy drops on accented speech.
"""
TRAINER = "# m\n\n## Intended uses & limitations\n\nFor sentiment of English reviews only.\n"


@pytest.mark.parametrize("text", [HUB_TEMPLATE, TRAINER])
def test_hub_template_and_trainer_headings_count(text: str) -> None:
    assert missing_sections(text) == ()


def test_template_placeholders_do_not_count() -> None:
    text = (
        "# m\n\n## Uses\n\n### Direct Use\n\n[More Information Needed]\n\n"
        "## Bias, Risks, and Limitations\n\n<!-- fill this in -->\n"
    )
    assert missing_sections(text) == ("intended uses", "limitations")


def test_headings_inside_code_blocks_do_not_count() -> None:
    text = "# m\n\n```\n## Uses\nanything\n## Limitations\nanything\n```\n"
    assert missing_sections(text) == ("intended uses", "limitations")


def test_out_of_scope_alone_is_not_intended_uses() -> None:
    text = "# m\n\n## Out-of-Scope Use\n\nNot for medicine.\n\n## Limitations\n\nSmall.\n"
    assert missing_sections(text) == ("intended uses",)


def test_a_paid_card_without_sections_is_refused_saying_what_to_add() -> None:
    card = parse_card("---\nlicense: mit\n---\n# m\n\n## Limitations\n\nSmall data.\n")
    with pytest.raises(CardSectionsMissingError) as info:
        require_buyer_sections(card, path="pkg")
    error = info.value
    assert isinstance(error, ModelCardError) and isinstance(error, ValueError)
    assert error.missing == ("intended uses",)
    assert error.code == "model_card_sections_missing"
    assert "## Uses" in str(error) and "price 0" in str(error)
    assert exit_code_for(error) == 52


def test_require_buyer_sections_reads_a_manifest_card() -> None:
    require_buyer_sections({"license": "mit", "text": TRAINER})
    with pytest.raises(CardSectionsMissingError) as info:
        require_buyer_sections({"license": "mit"}, model_id=7)
    assert info.value.model_id == 7 and "Model 7" in str(info.value)
