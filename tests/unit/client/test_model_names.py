# SPDX-License-Identifier: AGPL-3.0-only
"""Model names come from --name or the card's title, never from the folder's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercato.client.models import card_name, load_named_package
from mercato.errors import ModelPackageError
from mercato.models.card import ModelCard
from mercato.models.samples import build_samples


def test_the_cards_title_names_the_model() -> None:
    assert card_name(ModelCard(license="MIT", text="# Iris  classifier\n\nText.")) == (
        "Iris-classifier"
    )
    assert card_name(ModelCard(license="MIT", text="No title here.\n## Sub\n")) is None


def test_the_folder_name_is_never_used(tmp_path: Path) -> None:
    root = build_samples(tmp_path, ["iris-logreg"])["iris-logreg"].root
    renamed = root.rename(tmp_path / "some-folder")
    assert load_named_package(renamed).name == "iris-logreg"  # the card's title
    assert load_named_package(renamed, "chosen").name == "chosen"
    card = renamed / "README.md"
    card.write_text(card.read_text().replace("# iris-logreg\n", ""))
    with pytest.raises(ModelPackageError, match="--name"):
        load_named_package(renamed)
