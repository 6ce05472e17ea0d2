# SPDX-License-Identifier: AGPL-3.0-only
"""Reading a try answer for a person: labelled probabilities, best first.

The JSON answer (see `tensors.encode_output`) keeps every number at full precision;
this module is what the CLI's table and the web page's result show instead. A
classifier's probabilities come as a tensor (``[N, classes]``) or, from a default
scikit-learn export, as a ZipMap: a sequence of maps from label to probability. Labels
are the ZipMap's own keys when they are strings, else the card's `classes` (in the
order of the probabilities), else the class index.

An answer may come from another node, so nothing in it is trusted: its shape is
checked, and labels are cut to printable text of bounded length.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mercato.errors import TryAnswerError

MAX_LABEL_CHARS = 100
MAX_TEXT_CHARS = 2000


@dataclass(frozen=True)
class Score:
    """One class of one row, with its probability.

    Attributes:
        label: The class's name (printable text).
        probability: At full precision; `shown` rounds it.
    """

    label: str
    probability: float

    @property
    def shown(self) -> str:
        """The probability rounded for people: ``0.973``."""
        return f"{self.probability:.3f}"


@dataclass(frozen=True)
class OutputView:
    """One output of a try answer, as a person reads it.

    Attributes:
        name: The output's name.
        rows: For probabilities: one list per input row, best first (at most `top`
            classes); empty for other outputs.
        text: For other outputs: their values as compact JSON (cut to
            `MAX_TEXT_CHARS`), with class names after labels when the card has them.
        more_rows: Rows left out of `rows`.
    """

    name: str
    rows: list[list[Score]] = field(default_factory=list)
    text: str = ""
    more_rows: int = 0


def read_answer(data: bytes | str) -> dict[str, dict[str, Any]]:
    """Parse a try answer and check its shape.

    Args:
        data: The JSON a provider answered.

    Returns:
        Its outputs: name to entry (``kind``, ``data``...).

    Raises:
        TryAnswerError: not JSON, or not ``{"outputs": {name: {...}}}``.
    """
    try:
        answer = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TryAnswerError(f"The try answer is not JSON ({exc}).") from exc
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, dict) or not all(isinstance(v, dict) for v in outputs.values()):
        raise TryAnswerError('The try answer is not shaped {"outputs": {"<name>": {...}}}.')
    return outputs


def clean_label(value: object) -> str:
    """Printable text of bounded length for a label someone else chose."""
    text = "".join(c if c.isprintable() else "?" for c in str(value)[: MAX_LABEL_CHARS + 1])
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _classes(manifest: Mapping[str, Any] | None) -> list[str]:
    card = manifest.get("card") if isinstance(manifest, Mapping) else None
    classes = card.get("classes") if isinstance(card, Mapping) else None
    if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
        return [clean_label(c) for c in classes]
    return []


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None  # "NaN" and friends are spelled as strings: not a probability
    return float(value) if math.isfinite(value) else None


def _row(pairs: Sequence[tuple[str, object]], top: int) -> list[Score]:
    scores = [Score(label, p) for label, value in pairs if (p := _number(value)) is not None]
    scores.sort(key=lambda s: -s.probability)  # stable: ties keep the model's order
    return scores[:top]


def _map_row(
    row: Mapping[str, Any], string_keys: bool, classes: list[str], top: int
) -> list[Score]:
    keys = list(row)
    # Integer labels come in the model's class order, which the card's names follow.
    named = not string_keys and len(classes) == len(keys)
    labels = classes if named else [clean_label(k) for k in keys]
    return _row(list(zip(labels, row.values(), strict=True)), top)


def _is_probabilities(name: str, entry: Mapping[str, Any], classes: list[str]) -> bool:
    data = entry.get("data")
    if entry.get("kind", "tensor") != "tensor" or not str(entry.get("dtype", "")).startswith(
        "float"
    ):
        return False
    if not isinstance(data, list) or not data or not isinstance(data[0], list):
        return False
    width = len(data[0])
    return width >= 2 and ("prob" in name.lower() or len(classes) == width)


def _label_text(data: object, order: list[str], classes: list[str]) -> str | None:
    """``0 (setosa), 2 (virginica)`` for a label tensor when the card names the classes."""
    if not classes or not isinstance(data, list):
        return None
    parts = []
    for value in data:
        if isinstance(value, str):  # string labels name themselves
            return None
        key = str(value)
        if order and key in order:
            position = order.index(key)
        elif isinstance(value, int) and not isinstance(value, bool):
            position = value
        else:
            return None
        if not 0 <= position < len(classes):
            return None
        parts.append(f"{clean_label(value)} ({classes[position]})")
    return ", ".join(parts)


def present(
    outputs: Mapping[str, Mapping[str, Any]],
    manifest: Mapping[str, Any] | None = None,
    *,
    top: int = 10,
    max_rows: int = 20,
) -> list[OutputView]:
    """What a person reads from a try answer's outputs.

    Args:
        outputs: From `read_answer`.
        manifest: The model's manifest, for the card's class names; None if unknown.
        top: Classes shown per row.
        max_rows: Rows shown per output.

    Returns:
        One view per output, in the answer's order.
    """
    classes = _classes(manifest)
    order: list[str] = []  # the class order a ZipMap shows, for label outputs
    for entry in outputs.values():
        first = entry.get("data")
        if entry.get("kind") == "sequence" and isinstance(first, list) and first:
            first = first[0]
        if entry.get("kind") in ("sequence", "map") and isinstance(first, dict):
            order = [str(k) for k in first]
            break
    views: list[OutputView] = []
    for raw_name, entry in outputs.items():
        name = clean_label(raw_name)
        data = entry.get("data")
        kind = entry.get("kind", "tensor")
        rows: list[list[Score]] | None = None
        if kind in ("sequence", "map"):
            maps = data if kind == "sequence" else [data]
            if isinstance(maps, list) and maps and all(isinstance(m, dict) for m in maps):
                key = entry.get("element", {}) if kind == "sequence" else entry
                string_keys = isinstance(key, dict) and key.get("key") == "string"
                rows = [_map_row(m, string_keys, classes, top) for m in maps[:max_rows]]
                total = len(maps)
        elif _is_probabilities(name, entry, classes) and isinstance(data, list):
            width = len(data[0])
            labels = classes if len(classes) == width else [str(i) for i in range(width)]
            rows = [
                _row(list(zip(labels, row, strict=False)), top)
                for row in data[:max_rows]
                if isinstance(row, list)
            ]
            total = len(data)
        if rows is not None:
            views.append(OutputView(name, rows=rows, more_rows=max(0, total - len(rows))))
            continue
        text = _label_text(data, order, classes) if "label" in name.lower() else None
        if text is None:
            text = json.dumps(data, separators=(", ", ": "), ensure_ascii=False)
        if len(text) > MAX_TEXT_CHARS:
            text = text[: MAX_TEXT_CHARS - 1] + "…"
        views.append(OutputView(name, text=clean_text(text)))
    return views


def clean_text(text: str) -> str:
    """`text` with any character that is not printable replaced (no terminal escapes)."""
    return "".join(c if c.isprintable() else "?" for c in text)
