# SPDX-License-Identifier: AGPL-3.0-only
"""The model page's Hub fields from a manifest that may be hostile: links a browser could
act on never become an `href`, every text is escaped, a huge `model-index` is cut, and
tabular widget rows become ready-made try inputs. Rendered with the real template."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from mercato.gateway.card_view import MAX_ROWS, card_view
from mercato.gateway.seller_probe import Reachability
from mercato.gateway.try_form import try_examples, try_fields
from mercato.gateway.web import TEMPLATES

X4 = [{"name": "X", "kind": "tensor", "dtype": "float32", "shape": ["N", 4]}]


def _metric(i: int) -> dict[str, Any]:
    return {"type": "acc", "value": str(i)}


HOSTILE: dict[str, Any] = {
    "name": "evil",
    "inputs": X4,
    "outputs": [{"name": "Y", "kind": "tensor", "dtype": "float32", "shape": ["N", 1]}],
    "card": {
        "license": "other",
        "license_name": "<img src=x onerror=alert(1)>",
        "license_link": "javascript:alert(document.cookie)",
        "license_text": "</pre><script>alert(2)</script>",
        "extra_gated_prompt": "<b onclick=alert(3)>agree</b>",
        "co2_eq_emissions": {"emissions": "<i>5</i>"},
        "widget": [{"text": "<script>alert(4)</script>"}, "not a mapping", 7],
        "model-index": [
            {
                "name": "m",
                "results": [
                    {
                        "task": {"type": "t"},
                        "dataset": {"name": "<svg onload=alert(5)>"},
                        "metrics": [_metric(i) for i in range(MAX_ROWS + 50)],
                        "source": {"name": "s", "url": "javascript:alert(6)"},
                    },
                    "junk",
                    {"metrics": "not a list"},
                ],
            },
            "junk",
        ],
    },
}


def _render(manifest: dict[str, Any]) -> str:
    m = SimpleNamespace(
        model_id=9, name="evil", creator="0x" + "1" * 40, owner="0x" + "1" * 40, task=None,
        rating=0, rating_count=0, purchases=0, tags=[], price=10**18, latest_version=1,
        license_duration=0, license="other", for_sale=True,
    )  # fmt: skip
    return TEMPLATES.env.get_template("model.html").render(
        m=m, d=SimpleNamespace(library=None, versions=[]), seller=Reachability.UNCHECKED,
        Reachability=Reachability, card=manifest["card"], hub=card_view(manifest), body="",
        base_models=[], inputs=manifest["inputs"], outputs=manifest["outputs"],
        fields=try_fields(manifest), examples=try_examples(manifest), graph="", chart="",
        evaluations=[], reviews=[], times={},
        reports=SimpleNamespace(reporters=0, license_holders=0, by_reason={}),
        fee_bps=0, fee=0, royalty_bps=0, royalties=0, owns=False, latest=None,
        delivery_window=3600, licensed=False, refund_at=None, session=None, chain_id=31337,
    )  # fmt: skip


def test_hostile_links_never_become_hrefs() -> None:
    view = card_view(HOSTILE)
    assert view.license_url is None
    assert view.results[0].source_url is None
    page = _render(HOSTILE)
    assert 'href="javascript:' not in page
    assert '<span id="license-name">&lt;img src=x onerror=alert(1)&gt;</span>' in page


def test_hostile_card_text_is_escaped_everywhere_on_the_page() -> None:
    page = _render(HOSTILE)
    for raw in (
        "<img src=x onerror=alert(1)>",
        "<script>alert(2)</script>",
        "<b onclick=alert(3)>",
        "<i>5</i>",
        "<script>alert(4)</script>",
        "<svg onload=alert(5)>",
    ):
        assert raw not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_a_huge_model_index_is_cut_and_counted() -> None:
    view = card_view(HOSTILE)
    assert len(view.results) == MAX_ROWS
    assert view.more_results == 50
    page = _render(HOSTILE)
    table = page.split('id="self-reported"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == MAX_ROWS + 1
    assert "50 more results in the card, not shown." in page


def test_a_manifest_of_the_wrong_shape_gives_an_empty_view() -> None:
    for manifest in ({}, {"card": "x"}, {"card": {"model-index": "x", "widget": {}}}, None):
        view = card_view(manifest)
        assert view.results == [] and view.examples == [] and view.license.id == "unknown"


def test_widget_rows_fill_the_features_in_the_cards_order() -> None:
    manifest = {
        "inputs": X4,
        "card": {
            "features": ["a", "b", "c", "d"],
            "widget": [
                {"example_title": "two", "structured_data": {
                    "d": ["4", "8"], "c": ["3", "7"], "b": ["2", "6"], "a": ["1", "5"]}},
                {"structured_data": {"a": ["1"], "b": ["2"], "c": ["x"], "d": ["4"]}},
                {"structured_data": {"a": ["1"], "b": ["2"]}},
                {"text": "no table"},
            ],
        },
    }  # fmt: skip
    examples = try_examples(manifest)
    assert [(e.title, e.values) for e in examples] == [
        ("two (1)", {"in:X": ["1", "2", "3", "4"]}),
        ("two (2)", {"in:X": ["5", "6", "7", "8"]}),
    ]  # the row with a word, and the one missing columns, fit no field


def test_examples_are_safe_in_the_page_attribute() -> None:
    manifest = {
        **HOSTILE,
        "card": {
            "license": "mit",
            "features": ["a", "b", "c", "d"],
            "widget": [{"example_title": "<x>'\"", "structured_data": {
                "a": ["1"], "b": ["2"], "c": ["3"], "d": ["4"]}}],
        },
    }  # fmt: skip
    page = _render(manifest)
    assert """data-example='{"in:X": ["1", "2", "3", "4"]}'>&lt;x&gt;&#39;&#34;</button>""" in page
