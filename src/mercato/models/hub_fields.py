# SPDX-License-Identifier: AGPL-3.0-only
"""Model card fields the Hugging Face Hub writes, read into what the manifest keeps.

`model-index` (self-reported evaluation results), `widget` (example inputs),
`co2_eq_emissions`, the gating fields (`extra_gated_*`) and the custom licence's
`license_link`: each is read from the card's front matter, bounded and normalised.

Two rules for all of them:

- The manifest holds no floats (its bytes must be the same everywhere, see
  `mercato.models.manifest`), so numbers from the card are kept as their decimal text
  (`2.7`, `1e-05`); booleans and strings stay as they are.
- The card is public and shown on every model page: every list and string is capped,
  and a link is kept only when it is an http(s) address or a path inside the package,
  never `javascript:`, `data:` or any other scheme a browser would act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from mercato.errors import ModelCardError

MAX_STRING = 200  # a name, type, split, metric name...
MAX_LINK = 2048
MAX_RESULTS = 256  # evaluation results across all `model-index` entries
MAX_METRICS = 64  # metrics of one result
MAX_WIDGETS = 16
MAX_WIDGET_TEXT = 4096
MAX_WIDGET_ROWS = 16
MAX_GATE_TEXT = 8192
MAX_GATE_FIELDS = 32
MAX_GATE_OPTIONS = 64
_WEB_SCHEMES = ("http", "https")
_PATH = re.compile(r"[A-Za-z0-9._/-]+")


def _fail(message: str, path: str) -> ModelCardError:
    return ModelCardError(f"{message} Fix the YAML front matter of README.md.", path=path)


def text(value: object, key: str, path: str, limit: int = MAX_STRING) -> str:
    """One printable string of at most `limit` characters (line breaks allowed).

    Raises:
        ModelCardError: not a string (numbers are written as text), empty, or too long.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = number(value, key, path)
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"The model card field {key!r} must be text, got {value!r:.80}.", path)
    if len(value) > limit:
        raise _fail(f"The model card field {key!r} is over {limit} characters.", path)
    if any(not (c.isprintable() or c in "\n\t") for c in value):
        raise _fail(f"The model card field {key!r} holds control characters.", path)
    return value.strip()


def number(value: object, key: str, path: str) -> str:
    """A number from the card as its decimal text (`2.7`, `12`, `1e-05`).

    Raises:
        ModelCardError: not a finite number, or not a number at all.
    """
    if isinstance(value, str):  # a number written as text, e.g. by render_card
        try:
            parsed = float(value)
        except ValueError:
            parsed = math.nan
        if math.isfinite(parsed) and len(value) <= MAX_STRING:
            return value.strip()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(f"The model card field {key!r} must be a number, got {value!r:.80}.", path)
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(f"The model card field {key!r} must be a finite number.", path)
    return repr(value)


def value_text(value: object, key: str, path: str) -> str:
    """A metric value or table cell: a number (kept as its text) or a short string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value, key, path)
    return text(value, key, path)


def is_web_link(value: str) -> bool:
    """Whether `value` is an absolute http(s) address with a host (what a page may link to)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() in _WEB_SCHEMES and bool(parts.hostname)


def is_package_path(value: str) -> bool:
    """Whether `value` is a plain relative path inside a package (`LICENSE`, `docs/terms.md`)."""
    parts = value.split("/")
    return (
        bool(_PATH.fullmatch(value))
        and not value.startswith("/")
        and all(part not in ("", ".", "..") for part in parts)
    )


def link(value: object, key: str, path: str) -> str:
    """A link from the card: an http(s) address, or a path to a file of the package.

    Raises:
        ModelCardError: any other scheme (`javascript:`, `data:`, `file:`...), or a path
            with `..`, a leading `/` or unusual characters.
    """
    target = text(value, key, path, MAX_LINK)
    if is_web_link(target) or is_package_path(target):
        return target
    raise _fail(
        f"The model card field {key!r} is {target!r:.100}: give an http(s) address or the "
        "path of a file in the package (e.g. LICENSE).",
        path,
    )


def _mapping(value: object, key: str, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"The model card field {key!r} must be a mapping (key: value lines).", path)
    return value


def _list(value: object, key: str, path: str, limit: int) -> list[Any]:
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list):
        raise _fail(f"The model card field {key!r} must be a list.", path)
    if len(value) > limit:
        raise _fail(f"The model card field {key!r} has {len(value)} entries, over {limit}.", path)
    return value


def _strings_of(
    value: Mapping[str, Any], keys: tuple[str, ...], where: str, path: str
) -> dict[str, str]:
    out = {}
    for name in keys:
        if value.get(name) is not None:
            out[name] = text(value[name], f"{where}.{name}", path)
    return out


def model_index(value: object, path: str) -> list[dict[str, Any]]:
    """The card's `model-index`: evaluation results the creator reports about the model.

    Args:
        value: The front matter's `model-index`.
        path: The card's path, for messages.

    Returns:
        One entry per model: `name` and `results`, each result with `task`, `dataset`
        (type, name, config, split, revision), `metrics` (type, value, name, verified)
        and `source` (name, url) when the card gives them. Unknown keys are dropped.

    Raises:
        ModelCardError: a part is malformed, or there are more than `MAX_RESULTS`
            results (or `MAX_METRICS` metrics in one): a page could not show them.
    """
    models = _list(value, "model-index", path, MAX_RESULTS)
    out: list[dict[str, Any]] = []
    total = 0
    for i, entry in enumerate(models):
        where = f"model-index[{i}]"
        entry = _mapping(entry, where, path)
        results = _list(entry.get("results") or [], f"{where}.results", path, MAX_RESULTS)
        total += len(results)
        if total > MAX_RESULTS:
            raise _fail(f"The model card's model-index has over {MAX_RESULTS} results.", path)
        model: dict[str, Any] = {"results": [_result(r, f"{where}.results", path) for r in results]}
        if entry.get("name") is not None:
            model["name"] = text(entry["name"], f"{where}.name", path)
        out.append(model)
    return out


def _result(value: object, where: str, path: str) -> dict[str, Any]:
    result = _mapping(value, where, path)
    out: dict[str, Any] = {}
    task = _mapping(result.get("task") or {}, f"{where}.task", path)
    out["task"] = _strings_of(task, ("type", "name"), f"{where}.task", path)
    dataset = _mapping(result.get("dataset") or {}, f"{where}.dataset", path)
    out["dataset"] = _strings_of(
        dataset, ("type", "name", "config", "split", "revision"), f"{where}.dataset", path
    )
    metrics = []
    for metric in _list(result.get("metrics") or [], f"{where}.metrics", path, MAX_METRICS):
        metric = _mapping(metric, f"{where}.metrics", path)
        item: dict[str, Any] = _strings_of(metric, ("type", "name"), f"{where}.metrics", path)
        if "type" not in item:
            raise _fail(f"A metric of {where} has no 'type' (e.g. 'type: wer').", path)
        if metric.get("value") is None:
            raise _fail(f"The metric {item['type']!r} of {where} has no 'value'.", path)
        item["value"] = value_text(metric["value"], f"{where}.metrics.value", path)
        if isinstance(metric.get("verified"), bool):
            item["verified"] = metric["verified"]
        metrics.append(item)
    out["metrics"] = metrics
    if result.get("source") is not None:
        source = _mapping(result["source"], f"{where}.source", path)
        out["source"] = _strings_of(source, ("name",), f"{where}.source", path)
        if source.get("url") is not None:
            url = text(source["url"], f"{where}.source.url", path, MAX_LINK)
            if not is_web_link(url):
                raise _fail(f"The source url of {where} must be an http(s) address.", path)
            out["source"]["url"] = url
    return out


def widget(value: object, path: str) -> list[dict[str, Any]]:
    """The card's `widget` examples.

    Args:
        value: The front matter's `widget`: entries with `example_title` and one of
            `text` (or a sentence-similarity widget's `source_sentence`), `src` (an
            http(s) address of a sample file) or `structured_data` (column name to
            values, the Hub's form for tabular models).
        path: The card's path, for messages.

    Returns:
        The entries with those keys only; `structured_data` values as text. Entries
        with none of them (a chat widget's `messages`...) are left out.

    Raises:
        ModelCardError: an entry is malformed, too long, or links elsewhere than http(s).
    """
    out = []
    for i, entry in enumerate(_list(value, "widget", path, MAX_WIDGETS)):
        where = f"widget[{i}]"
        entry = _mapping(entry, where, path)
        item: dict[str, Any] = {}
        if entry.get("example_title") is not None:
            item["example_title"] = text(entry["example_title"], f"{where}.example_title", path)
        said = entry.get("text", entry.get("source_sentence"))
        if said is not None:
            item["text"] = text(said, f"{where}.text", path, MAX_WIDGET_TEXT)
        if entry.get("src") is not None:
            src = text(entry["src"], f"{where}.src", path, MAX_LINK)
            if not is_web_link(src):
                raise _fail(f"The model card's {where}.src must be an http(s) address.", path)
            item["src"] = src
        if entry.get("structured_data") is not None:
            item["structured_data"] = _table(entry["structured_data"], f"{where}", path)
        if item.keys() - {"example_title"}:
            out.append(item)
    return out


def _table(value: object, where: str, path: str) -> dict[str, list[str]]:
    from mercato.models.card import MAX_NAMES  # the card's bound on column names

    table = _mapping(value, f"{where}.structured_data", path)
    if not table or len(table) > MAX_NAMES:
        raise _fail(
            f"The model card's {where}.structured_data must have 1-{MAX_NAMES} columns.", path
        )
    out: dict[str, list[str]] = {}
    for column, cells in table.items():
        name = text(column, f"{where}.structured_data", path)
        values = _list(cells, f"{where}.structured_data.{name}", path, MAX_WIDGET_ROWS)
        out[name] = [value_text(v, f"{where}.structured_data.{name}", path) for v in values]
    return out


def co2(value: object, path: str) -> dict[str, str]:
    """The card's `co2_eq_emissions`: grams of CO2 emitted training the model.

    Args:
        value: A number (grams), or the Hub's mapping (emissions, source, training_type,
            geographical_location, hardware_used).
        path: The card's path, for messages.

    Returns:
        The mapping, every value as text.

    Raises:
        ModelCardError: no emissions figure, or a value is malformed.
    """
    if not isinstance(value, Mapping):
        return {"emissions": number(value, "co2_eq_emissions", path)}
    if value.get("emissions") is None:
        raise _fail("The model card's co2_eq_emissions has no 'emissions' (grams).", path)
    out = {"emissions": number(value["emissions"], "co2_eq_emissions.emissions", path)}
    keys = ("source", "training_type", "geographical_location", "hardware_used")
    out.update(_strings_of(value, keys, "co2_eq_emissions", path))
    return out


GATE_TEXTS = (
    "extra_gated_heading",
    "extra_gated_description",
    "extra_gated_prompt",
    "extra_gated_button_content",
)


def gating(front: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The card's gating fields: what the creator asks of whoever gets the model.

    Args:
        front: The front matter (`extra_gated_prompt`, `extra_gated_fields`...).
        path: The card's path, for messages.

    Returns:
        The texts as given, and `extra_gated_fields` as a list of `{name, type}` (with
        `options` for a select); empty when the card has none.

    Raises:
        ModelCardError: a field is malformed or too long.
    """
    out: dict[str, Any] = {}
    for key in GATE_TEXTS:
        if front.get(key) is not None:
            out[key] = text(front[key], key, path, MAX_GATE_TEXT)
    fields = front.get("extra_gated_fields")
    if fields is None:
        return out
    table = _mapping(fields, "extra_gated_fields", path)
    if len(table) > MAX_GATE_FIELDS:
        raise _fail(f"The model card's extra_gated_fields has over {MAX_GATE_FIELDS} fields.", path)
    listed = []
    for name, kind in table.items():
        label = text(name, "extra_gated_fields", path)
        item: dict[str, Any] = {"name": label}
        if isinstance(kind, Mapping):
            item["type"] = text(kind.get("type"), f"extra_gated_fields.{label}.type", path)
            options = _list(
                kind.get("options") or [], f"extra_gated_fields.{label}", path, MAX_GATE_OPTIONS
            )
            if options:
                item["options"] = [_option(o, label, path) for o in options]
        else:
            item["type"] = text(kind, f"extra_gated_fields.{label}", path)
        listed.append(item)
    out["extra_gated_fields"] = listed
    return out


def _option(value: object, label: str, path: str) -> str:
    # An option is a string, or {label, value} as the Hub also takes.
    if isinstance(value, Mapping):
        value = value.get("label", value.get("value"))
    return text(value, f"extra_gated_fields.{label}.options", path)
