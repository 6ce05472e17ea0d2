# SPDX-License-Identifier: AGPL-3.0-only
"""What the model page shows of a card's Hub fields, read from a manifest.

The manifest may be another node's and was written by whoever published the model, so
everything here is read defensively: wrong types are skipped, lists are cut at the
page's limits, and a link is kept only when it is an http(s) address (the template
escapes every string; a `javascript:` or `data:` link never becomes an `href`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mercato.models.card import LicenseTerms, license_terms
from mercato.models.hub_fields import is_web_link

MAX_ROWS = 100  # self-reported results shown; the rest are counted
MAX_TEXT = 200
MAX_LONG_TEXT = 8192
MAX_EXAMPLES = 16


@dataclass(frozen=True)
class ReportedResult:
    """One self-reported evaluation result (`model-index`), as a table row."""

    model: str
    task: str
    dataset: str
    split: str
    metric: str
    value: str
    verified: bool
    source: str
    source_url: str | None


@dataclass(frozen=True)
class CardView:
    """The card's Hub fields, ready for the template.

    Attributes:
        license: The licence terms (name, link, custom text).
        license_url: The licence's link when a browser may follow it (http(s) only).
        results: Self-reported evaluation results, at most `MAX_ROWS`.
        more_results: How many results were left out.
        examples: The widget's text examples (title, text).
        co2: Training emissions, as given.
        gating: Gating texts (heading, description, prompt, button) as given.
        gated_fields: What the creator asks of a user: (name, type, options).
        base_model_relation: How the model derives from its base model.
    """

    license: LicenseTerms
    license_url: str | None
    results: list[ReportedResult] = field(default_factory=list)
    more_results: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)
    co2: dict[str, str] = field(default_factory=dict)
    gating: dict[str, str] = field(default_factory=dict)
    gated_fields: list[tuple[str, str, list[str]]] = field(default_factory=list)
    base_model_relation: str | None = None


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value).strip()[:limit]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _results(card: Mapping[str, Any]) -> tuple[list[ReportedResult], int]:
    rows: list[ReportedResult] = []
    total = 0
    for model in _list(card.get("model-index")):
        name = _text(_mapping(model).get("name"))
        for result in _list(_mapping(model).get("results")):
            result = _mapping(result)
            task, dataset = _mapping(result.get("task")), _mapping(result.get("dataset"))
            source = _mapping(result.get("source"))
            url = _text(source.get("url"), 2048)
            for metric in _list(result.get("metrics")):
                metric = _mapping(metric)
                total += 1
                if len(rows) >= MAX_ROWS:
                    continue  # counted, not shown: a card cannot make the page huge
                rows.append(
                    ReportedResult(
                        model=name,
                        task=_text(task.get("name")) or _text(task.get("type")),
                        dataset=_text(dataset.get("name")) or _text(dataset.get("type")),
                        split=_text(dataset.get("split")),
                        metric=_text(metric.get("name")) or _text(metric.get("type")),
                        value=_text(metric.get("value")),
                        verified=metric.get("verified") is True,
                        source=_text(source.get("name")),
                        source_url=url if is_web_link(url) else None,
                    )
                )
    return rows, total - len(rows)


def card_view(manifest: Mapping[str, Any] | None) -> CardView:
    """The Hub fields of a manifest's card, for the model page.

    Args:
        manifest: The model's manifest (perhaps another node's: read defensively).

    Returns:
        What the page shows; empty parts where the card has nothing (or nothing usable).
    """
    card = _mapping(_mapping(manifest).get("card"))
    terms = license_terms(card)
    results, more = _results(card)
    examples = []
    for n, entry in enumerate(_list(card.get("widget"))[:MAX_EXAMPLES], start=1):
        entry = _mapping(entry)
        if _text(entry.get("text")):
            title = _text(entry.get("example_title")) or f"Example {n}"
            examples.append((title, _text(entry.get("text"), MAX_LONG_TEXT)))
    co2 = {k: _text(v) for k, v in _mapping(card.get("co2_eq_emissions")).items() if _text(v)}
    gating = {}
    for key in ("heading", "description", "prompt", "button_content"):
        value = _text(card.get(f"extra_gated_{key}"), MAX_LONG_TEXT)
        if value:
            gating[key] = value
    fields = []
    for item in _list(card.get("extra_gated_fields"))[:32]:
        item = _mapping(item)
        if _text(item.get("name")):
            options = [_text(o) for o in _list(item.get("options"))[:64] if _text(o)]
            fields.append((_text(item.get("name")), _text(item.get("type")), options))
    return CardView(
        license=terms,
        license_url=terms.link if terms.link and is_web_link(terms.link) else None,
        results=results,
        more_results=more,
        examples=examples,
        co2=co2,
        gating=gating,
        gated_fields=fields,
        base_model_relation=_text(card.get("base_model_relation")) or None,
    )
