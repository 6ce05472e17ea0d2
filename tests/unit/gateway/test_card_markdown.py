# SPDX-License-Identifier: AGPL-3.0-only
"""A model card's Markdown is rendered on the model page, and its raw HTML never is."""

from __future__ import annotations

from pathlib import Path

from mercato.gateway.web import markdown
from mercato.models.card import parse_card
from mercato.models.manifest import validate_manifest
from mercato.models.samples import build_samples


def test_markdown_is_rendered() -> None:
    html = markdown("# Iris\n\nA **small** classifier:\n\n- setosa\n- virginica\n")
    assert "<h1>Iris</h1>" in html
    assert "<strong>small</strong>" in html
    assert "<li>setosa</li>" in html


def test_raw_html_and_scripts_are_escaped() -> None:
    html = markdown('Hi <script>alert("x")</script> <img src=x onerror=alert(1)>')
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html


def test_card_text_travels_in_the_public_manifest(tmp_path: Path) -> None:
    card = parse_card("---\nlicense: mit\n---\n# Iris\n\nClassifies flowers.\n")
    assert card.to_manifest()["text"] == "# Iris\n\nClassifies flowers.\n"
    assert "text" not in parse_card("---\nlicense: mit\n---\n").to_manifest()
    package = build_samples(tmp_path, ["iris-logreg"])["iris-logreg"]
    assert package.manifest["card"]["text"] == package.card.text
    validate_manifest(package.manifest)  # the published schema accepts it
