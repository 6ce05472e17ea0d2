# SPDX-License-Identifier: AGPL-3.0-only
"""The model page: the card's Markdown is rendered (its raw HTML never is), CIDs are shown."""

from __future__ import annotations

from pathlib import Path

from mercato.gateway.web import cid, markdown
from mercato.models.card import parse_card
from mercato.models.manifest import validate_manifest
from mercato.models.samples import build_samples
from mercato.storage.unixfs import only_hash


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


def test_version_table_shows_the_cid_ipfs_prints() -> None:
    digest = "0x" + only_hash([b"hello"]).digest.hex()[4:]
    assert cid(digest) == "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"
