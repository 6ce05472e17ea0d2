# SPDX-License-Identifier: AGPL-3.0-only
"""The web page's try form: fields built from the manifest, the request it posts, the result.

Each input gets, from what the card says (see docs/models.md):

- a table of features (up to `MAX_FIELDS`): one empty box per feature, named by the
  card's `features` or "feature 1…n", with the card's `example` as placeholders;
- a small picture (an image model, or a rank-3/4 input of at most `MAX_SIDE` pixels a
  side): one text field of comma-separated pixel values, which `static/try.js` fills
  from a drawing or an uploaded picture, scaled to the range of the card's example;
- anything else: one text field of comma-separated numbers.

The card's `widget` examples in the Hub's tabular form (`structured_data`: column name
to values) become ready-made inputs: `try_examples` maps each row onto the features of
an input, and `static/try.js` fills the boxes when one is picked.

The form works without JavaScript: every field is a plain text box.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mercato.errors import InferenceInputError, MercatoError
from mercato.models.runtime.answers import OutputView, present, read_answer
from mercato.models.runtime.inputs import try_request as typed_request

MAX_FIELDS = 64  # one box per feature up to this many; a single text field beyond
MAX_SIDE = 64  # pixels a side for the drawing canvas
MAX_ERROR_CHARS = 300
_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class TryField:
    """The form's part for one model input.

    Attributes:
        name: The input's name (the form field is ``in:<name>``).
        dtype: Its element type.
        kind: ``features`` (one box each), ``image`` (canvas + text) or ``text``.
        labels: Feature names, one per box (``features`` only).
        placeholders: The example's values, one per box; for the other kinds, one
            comma-separated string.
        width: Values the input takes per row.
        height, columns: The picture's size (``image`` only).
        scale: The value of full ink (``image`` only).
        integer: Whole numbers only.
    """

    name: str
    dtype: str
    kind: str
    width: int
    labels: list[str] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)
    height: int = 0
    columns: int = 0
    scale: float = 1.0
    integer: bool = False


def _flatten(data: Any) -> list[float] | None:
    """The numbers of nested lists, in order; None if anything else is in them."""
    out: list[float] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(float(item))
        else:
            return None
    return out


def _example_values(manifest: Mapping[str, Any]) -> dict[str, list[float]]:
    """Each input's values in the card's example, flattened (nothing if it has none)."""
    card = manifest.get("card") or {}
    text = card.get("example") if isinstance(card, Mapping) else None
    if not isinstance(text, str):
        return {}
    try:
        request = typed_request(text, manifest.get("inputs") or [])
    except InferenceInputError:
        return {}
    values: dict[str, list[float]] = {}
    for name, value in request["inputs"].items():
        data = value.get("data") if isinstance(value, dict) else value
        flat = _flatten(data)
        if flat is not None:
            values[str(name)] = flat
    return values


def _feature_names(manifest: Mapping[str, Any], name: str, width: int) -> list[str]:
    card = manifest.get("card") or {}
    features = card.get("features") if isinstance(card, Mapping) else None
    if isinstance(features, dict):
        features = features.get(name)
    elif isinstance(features, list) and len(manifest.get("inputs") or []) != 1:
        features = None
    if isinstance(features, list) and len(features) == width:
        return [str(f) for f in features]
    return [f"feature {i}" for i in range(1, width + 1)]


def _picture(spec: Mapping[str, Any], card: Mapping[str, Any]) -> tuple[int, int] | None:
    """(height, width) when the input is a small grayscale picture."""
    shape = _shape(spec)
    fixed = [d for d in shape[1:] if isinstance(d, int)]
    if len(fixed) != len(shape) - 1:
        return None
    size: tuple[int, int] | None = None
    if len(shape) == 4 and shape[1] == 1:  # N, 1, H, W
        size = (shape[2], shape[3])
    elif (len(shape) == 4 and shape[3] == 1) or len(shape) == 3:  # N, H, W(, 1)
        size = (shape[1], shape[2])
    elif len(shape) == 2 and str(card.get("pipeline_tag", "")).startswith("image"):
        side = math.isqrt(shape[1])
        size = (side, side) if side * side == shape[1] and side > 1 else None
    if size is None or not all(0 < s <= MAX_SIDE for s in size):
        return None
    return size


def _inputs(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The manifest's input entries that are objects (a manifest may come from anyone)."""
    inputs = manifest.get("inputs")
    return [i for i in inputs if isinstance(i, Mapping)] if isinstance(inputs, list) else []


def _shape(spec: Mapping[str, Any]) -> list[Any]:
    shape = spec.get("shape")
    return shape if isinstance(shape, list) else []


def try_fields(manifest: Mapping[str, Any]) -> list[TryField]:
    """The form's fields for a model, from its manifest.

    Args:
        manifest: The model's manifest (perhaps another node's: read defensively).

    Returns:
        One field per tensor input.
    """
    card = manifest.get("card") or {}
    card = card if isinstance(card, Mapping) else {}
    examples = _example_values(manifest)
    fields = []
    for spec in _inputs(manifest):
        if spec.get("kind", "tensor") != "tensor":
            continue
        name, dtype = str(spec.get("name")), str(spec.get("dtype", "float32"))
        shape = _shape(spec)
        width = math.prod(d for d in shape[1:] if isinstance(d, int)) if len(shape) > 1 else 1
        example = examples.get(name, [])[:width]  # the example's first row
        integer = dtype.startswith(("int", "uint"))
        shown = [f"{v:g}" for v in example]
        picture = _picture(spec, card)
        if picture is not None:
            scale = 255.0 if dtype == "uint8" else max([1.0, *example])
            fields.append(
                TryField(
                    name, dtype, "image", width, placeholders=[", ".join(shown)],
                    height=picture[0], columns=picture[1], scale=scale, integer=integer,
                )
            )  # fmt: skip
        elif 0 < width <= MAX_FIELDS and len(shape) <= 2:
            labels = _feature_names(manifest, name, width)
            if len(shown) != width:
                shown = [""] * width
            fields.append(TryField(name, dtype, "features", width, labels, shown, integer=integer))
        else:
            fields.append(TryField(name, dtype, "text", width, [], [", ".join(shown)]))
    return fields


MAX_EXAMPLES = 16


@dataclass(frozen=True)
class TryExample:
    """A ready-made input from the card's widget.

    Attributes:
        title: The card's `example_title`, or "Example n".
        values: Form field (``in:<name>``) to the values of its boxes, in order.
    """

    title: str
    values: dict[str, list[str]]


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def try_examples(manifest: Mapping[str, Any]) -> list[TryExample]:
    """The card's tabular widget examples as values for the try form's boxes.

    A row is offered when every `features` box of the form gets a number from the
    example's column of the same name; examples that fit no field are left out.

    Args:
        manifest: The model's manifest (perhaps another node's: read defensively).

    Returns:
        At most `MAX_EXAMPLES` examples, one per row of each widget entry.
    """
    card = manifest.get("card") or {}
    widget = card.get("widget") if isinstance(card, Mapping) else None
    targets = [f for f in try_fields(manifest) if f.kind == "features"]
    if not isinstance(widget, list) or not targets:
        return []
    examples: list[TryExample] = []
    for entry in widget:
        table = entry.get("structured_data") if isinstance(entry, Mapping) else None
        if not isinstance(table, Mapping):
            continue
        columns = {str(k): v for k, v in table.items() if isinstance(v, list)}
        rows = min((len(v) for v in columns.values()), default=0)
        title = entry.get("example_title")
        for row in range(rows):
            values: dict[str, list[str]] = {}
            for target in targets:
                cells = [columns.get(label, [None] * rows)[row] for label in target.labels]
                texts = [str(c) for c in cells if isinstance(c, (str, int, float))]
                if len(texts) == target.width and all(_is_number(t) for t in texts):
                    values[f"in:{target.name}"] = texts
            if len(values) != len(targets) or len(examples) >= MAX_EXAMPLES:
                continue
            name = str(title)[:80] if isinstance(title, str) and title.strip() else ""
            label = name or f"Example {len(examples) + 1}"
            examples.append(TryExample(label if rows == 1 else f"{label} ({row + 1})", values))
    return examples


def _number(text: str, integer: bool, where: str) -> float | int:
    try:
        value: float | int = int(text) if integer else float(text)
    except ValueError:
        raise InferenceInputError(
            f"{where} must be {'a whole number' if integer else 'a number'}, got {text[:40]!r}."
        ) from None
    if not math.isfinite(value):
        raise InferenceInputError(f"{where} must be a finite number, got {text[:40]!r}.")
    return value


def _nest(values: list[float | int], shape: Sequence[Any]) -> Any:
    """One row of `values` shaped as the input wants (batch of one)."""
    dims = [d if isinstance(d, int) else 1 for d in shape[1:]]
    data: Any = values
    for size in reversed(dims[1:]):
        data = [data[i : i + size] for i in range(0, len(data), size)]
    return [data] if shape else data


def try_request(manifest: Mapping[str, Any], form: Mapping[str, list[str]]) -> bytes:
    """The JSON try request for a form built by `try_fields` (one row per input).

    Args:
        manifest: The model's manifest.
        form: The posted form (``in:<name>`` fields).

    Returns:
        The request body for the provider's try API.

    Raises:
        InferenceInputError: a field is empty or not a number, or an input has the
            wrong number of values.
    """
    shapes = {str(spec.get("name")): _shape(spec) for spec in _inputs(manifest)}
    body: dict[str, Any] = {}
    for spec in try_fields(manifest):
        posted = form.get(f"in:{spec.name}", [])
        if spec.kind != "features":
            posted = [p for p in _SEPARATORS.split(" ".join(posted).strip()) if p]
        values = []
        for index, text in enumerate(posted):
            label = spec.labels[index] if index < len(spec.labels) else f"value {index + 1}"
            where = f"{label} of {spec.name}" if spec.kind == "features" else f"{spec.name}"
            if not text.strip():
                raise InferenceInputError(f"Fill in {where}.", input_name=spec.name)
            values.append(_number(text.strip(), spec.integer, where))
        if len(values) != spec.width:
            raise InferenceInputError(
                f"{spec.name} takes {spec.width} numbers, got {len(values)}.",
                input_name=spec.name,
            )
        body[spec.name] = {"dtype": spec.dtype, "data": _nest(values, shapes[spec.name])}
    return json.dumps({"inputs": body}).encode()


def try_views(answer: bytes, manifest: Mapping[str, Any]) -> list[OutputView]:
    """A try answer as the result fragment shows it: labelled probabilities first.

    Raises:
        TryAnswerError: the answer is not shaped as the try API answers.
    """
    views = present(read_answer(answer), manifest)
    return sorted(views, key=lambda view: not view.rows)  # stable: keeps the model's order


def one_line(error: MercatoError) -> str:
    """An error as one short line for the page (ONNX Runtime's messages span many)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
