# SPDX-License-Identifier: AGPL-3.0-only
"""Licences as the Hugging Face Hub writes them, SPDX expressions, and `license: other`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mercato.errors import ModelCardError, ModelLicenseError
from mercato.models.card import LicenseTerms, license_terms, parse_card
from mercato.models.licenses import HUB_LICENSES, hub_license
from mercato.models.validate import validate_package


def _card(front: str) -> str:
    return f"---\n{front}---\n# m\n"


@pytest.mark.parametrize(
    "hub_id",
    ["llama3.1", "gemma", "creativeml-openrail-m", "bigscience-openrail-m", "cc-by-nc-4.0",
     "apache-2.0", "openrail++", "llama4", "deepfloyd-if-license", "unknown"],
)  # fmt: skip
def test_every_hub_id_the_issue_names_is_accepted_as_written(hub_id: str) -> None:
    assert parse_card(_card(f"license: {hub_id}\n")).license == hub_id


def test_the_whole_hub_table_parses_and_names_each_licence() -> None:
    for entry in HUB_LICENSES:
        front = f"license: '{entry.id}'\n"
        if entry.id == "other":
            front += "license_name: x\n"
        card = parse_card(_card(front))
        assert card.license == entry.id
        assert license_terms(card).name == (entry.name if entry.id != "other" else "x")


def test_spdx_spelling_of_a_hub_licence_becomes_the_hub_id() -> None:
    assert parse_card(_card("license: Apache-2.0\n")).license == "apache-2.0"
    assert parse_card(_card("license: CC-BY-NC-4.0\n")).license == "cc-by-nc-4.0"
    assert hub_license("GPL-3.0-only") is not None and hub_license("gpl-3.0-only").id == "gpl-3.0"  # type: ignore[union-attr]


def test_spdx_ids_outside_the_hub_table_and_expressions_keep_spdx_spelling() -> None:
    assert parse_card(_card("license: gpl-3.0-or-later\n")).license == "GPL-3.0-or-later"
    card = parse_card(_card("license: mit or apache-2.0\n"))
    assert card.license == "MIT OR Apache-2.0"
    terms = license_terms(card)
    assert terms.link is None and terms.name == "MIT OR Apache-2.0"
    single = license_terms(parse_card(_card("license: 0BSD\n")))
    assert single.link == "https://spdx.org/licenses/0BSD.html"


def test_a_made_up_licence_is_refused_naming_what_to_use() -> None:
    with pytest.raises(ModelLicenseError) as info:
        parse_card(_card("license: my-own-license\n"))
    assert info.value.license == "my-own-license"
    assert "llama3.1" in str(info.value) and "license: other" in str(info.value)


def test_other_without_a_name_is_refused() -> None:
    with pytest.raises(ModelLicenseError) as info:
        parse_card(_card("license: other\nlicense_link: https://example.org/terms\n"))
    assert "license_name" in str(info.value)


def test_other_keeps_the_cards_name_and_link() -> None:
    card = parse_card(
        _card("license: other\nlicense_name: qwen\nlicense_link: https://example.org/LICENSE\n")
    )
    assert (card.license_name, card.license_link) == ("qwen", "https://example.org/LICENSE")
    assert license_terms(card) == LicenseTerms("other", "qwen", "https://example.org/LICENSE")
    manifest = card.to_manifest()
    assert manifest["license_name"] == "qwen"
    assert manifest["license_link"] == "https://example.org/LICENSE"


@pytest.mark.parametrize(
    "link",
    ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<b>x</b>", "file:///etc/passwd",
     "../outside", "/etc/passwd", "https://", "vbscript:msgbox", " javascript:x"],
)  # fmt: skip
def test_a_licence_link_that_is_not_http_or_a_package_file_is_refused(link: str) -> None:
    with pytest.raises(ModelCardError) as info:
        parse_card(_card(f"license: other\nlicense_name: x\nlicense_link: {json.dumps(link)}\n"))
    assert "license_link" in str(info.value)


def test_a_hub_licence_is_named_and_linked_from_our_table_not_the_card() -> None:
    card = parse_card(
        _card("license: apache-2.0\nlicense_name: Apache\nlicense_link: https://evil.example/\n")
    )
    terms = license_terms(card)
    assert terms == LicenseTerms(
        "apache-2.0", "Apache license 2.0", "https://spdx.org/licenses/Apache-2.0.html"
    )


def test_license_terms_bytes_are_canonical_and_spelling_independent() -> None:
    new = license_terms({"license": "apache-2.0"})
    old = license_terms({"license": "Apache-2.0"})  # a manifest published before Hub ids
    assert new.canonical_bytes() == old.canonical_bytes()
    assert json.loads(new.canonical_bytes()) == {
        "id": "apache-2.0",
        "link": "https://spdx.org/licenses/Apache-2.0.html",
        "name": "Apache license 2.0",
        "text": "",
    }
    assert new.canonical_bytes().startswith(b'{"id":"apache-2.0","link":"https://')
    other = license_terms({"license": "other", "license_name": "n", "license_text": "Terms é"})
    assert other.canonical_bytes() == (
        '{"id":"other","link":null,"name":"n","text":"Terms é"}'.encode()
    )
    assert (
        other.canonical_bytes()
        != license_terms(
            {"license": "other", "license_name": "n", "license_text": "Terms e"}
        ).canonical_bytes()
    )


def test_license_terms_of_a_hostile_manifest_drop_an_unsafe_link() -> None:
    terms = license_terms(
        {"license": "other", "license_name": "n", "license_link": "javascript:alert(1)"}
    )
    assert terms.link is None
    assert license_terms({"license": 5}).id == "unknown"


OTHER_CARD = "---\nlicense: other\nlicense_name: acme-model-licence\n{link}---\n# m\n"


def test_other_licence_text_comes_from_the_license_file(make_package) -> None:  # type: ignore[no-untyped-def]
    root = make_package(card=OTHER_CARD.format(link="license_link: LICENSE\n"))
    (root / "LICENSE").write_text("ACME terms: research only.\n")
    package = validate_package(root)
    assert package.card.license_text == "ACME terms: research only.\n"
    assert license_terms(package.card).text == "ACME terms: research only.\n"
    assert package.card.to_manifest()["license_text"] == "ACME terms: research only.\n"


def test_other_licence_without_text_or_link_is_refused(make_package) -> None:  # type: ignore[no-untyped-def]
    root = make_package(card=OTHER_CARD.format(link=""))
    with pytest.raises(ModelLicenseError) as info:
        validate_package(root)
    assert "LICENSE" in str(info.value)


def test_other_licence_link_to_a_missing_file_is_refused(make_package) -> None:  # type: ignore[no-untyped-def]
    root = make_package(card=OTHER_CARD.format(link="license_link: TERMS.md\n"))
    with pytest.raises(ModelLicenseError) as info:
        validate_package(root)
    assert "TERMS.md" in str(info.value)


def test_other_licence_with_a_web_link_needs_no_file(make_package) -> None:  # type: ignore[no-untyped-def]
    root = make_package(card=OTHER_CARD.format(link="license_link: https://example.org/t\n"))
    assert validate_package(root).card.license_text is None


def test_hub_licence_package_keeps_no_text(tmp_path: Path, make_package) -> None:  # type: ignore[no-untyped-def]
    root = make_package(card="---\nlicense: llama3.1\n---\n# m\n")
    (root / "LICENSE").write_text("Llama terms\n")
    assert validate_package(root).card.license_text is None
