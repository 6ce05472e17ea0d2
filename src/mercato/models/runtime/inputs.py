# SPDX-License-Identifier: AGPL-3.0-only
"""The try input a person types, the same for every front end.

`mercato try` (a deployed model), `mercato model try` (a local package) and a card's
`example` all take the same text:

- a request, ``{"inputs": {"X": {"data": [[...]]}}}`` (what the provider's API takes);
- inputs by name, ``{"X": [[5.1, 3.5, 1.4, 0.2]]}``;
- for a model with one input, its value alone: ``[[5.1, 3.5, 1.4, 0.2]]``, one row
  ``[5.1, 3.5, 1.4, 0.2]``, or the numbers of one row separated by commas or spaces,
  ``5.1, 3.5, 1.4, 0.2``.

Everything here only reshapes text into a request; the runtime checks the values
against the manifest (`tensors.decode_request`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mercato.errors import InferenceInputError

_NUMBERS = re.compile(r"[\s,]+")


def _numbers(text: str) -> list[float | int] | None:
    """The numbers of ``5.1, 3.5 1.4`` as a list, or None when it is not just numbers."""
    parts = [p for p in _NUMBERS.split(text.strip()) if p]
    if not parts:
        return None
    values: list[float | int] = []
    for part in parts:
        try:
            values.append(int(part))
        except ValueError:
            try:
                values.append(float(part))
            except ValueError:
                return None
    return values


def _rank(spec: Mapping[str, Any]) -> int | None:
    shape = spec.get("shape")
    return len(shape) if isinstance(shape, list) else None


def try_request(text: str, inputs: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """Turn typed try input into a request for the provider's try API.

    Args:
        text: The input in any of the forms the module docstring lists.
        inputs: The model's inputs from its manifest (``name``, ``shape``...), needed
            only for the forms that do not name the input; None when unknown.

    Returns:
        ``{"inputs": {...}}``, ready for `json.dumps`.

    Raises:
        InferenceInputError: the text is none of the forms, or does not name the input
            of a model that has several (or whose manifest is unknown).
    """
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = _numbers(text)
        if value is None:
            raise InferenceInputError(
                "The try input is neither JSON nor a list of numbers. Give "
                "'{\"X\": [[5.1, 3.5, 1.4, 0.2]]}' or, for a model with one input, "
                "'5.1, 3.5, 1.4, 0.2'."
            ) from None
    if isinstance(value, dict):
        if isinstance(value.get("inputs"), dict):
            return {"inputs": value["inputs"]}
        if not value:
            raise InferenceInputError(
                "The try input names no input. Give '{\"X\": [[...]]}' with the model's "
                "input names (see its signature)."
            )
        return {"inputs": value}
    if not isinstance(value, (list, int, float)) or isinstance(value, bool):
        raise InferenceInputError(
            "The try input must be a JSON object of inputs by name, or the numbers of one "
            "row; got a JSON value of another kind. Give '{\"X\": [[...]]}'."
        )
    # The manifest may be another creator's: use only entries shaped as the schema says.
    specs = [s for s in inputs if isinstance(s, Mapping)] if isinstance(inputs, list) else []
    names = [str(spec.get("name")) for spec in specs]
    if len(names) != 1:
        known = f"its inputs are {names}" if names else "its inputs are not known here"
        raise InferenceInputError(
            f"The try input does not say which input it is for, and {known}. Name it: "
            "'{\"<input name>\": [[...]]}'."
        )
    if not isinstance(value, list):
        value = [value]
    spec = specs[0]
    flat = all(not isinstance(v, list) for v in value)
    if flat and (_rank(spec) or 2) >= 2:
        value = [value]  # the numbers of one row
    return {"inputs": {names[0]: value}}


def request_bytes(text: str, inputs: Sequence[Mapping[str, Any]] | None) -> bytes:
    """`try_request` encoded as the JSON body of a try call.

    Raises:
        InferenceInputError: as `try_request`, or the numbers are not finite.
    """
    request = try_request(text, inputs)
    try:
        return json.dumps(request, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # NaN or infinity typed in: JSON has no spelling for them
        raise InferenceInputError(
            "The try input holds NaN or infinity; send finite numbers."
        ) from exc


def check_request(body: bytes, inputs: Sequence[Mapping[str, Any]]) -> None:
    """Check a try request against the model's inputs here, before it goes anywhere.

    The same checks the provider's runtime makes (names, element types, shapes), so a
    mistake is reported with its full explanation and costs no call; size limits are
    the provider's to apply.

    Args:
        body: From `request_bytes`.
        inputs: The model's inputs from its manifest.

    Raises:
        InferenceInputError: (and its subclasses) the request does not fit the inputs.
    """
    from mercato.models.manifest import tensor_specs
    from mercato.models.runtime.tensors import InputPolicy, decode_request

    entries: list[Mapping[str, Any]] = [i for i in inputs if isinstance(i, Mapping)]
    if not all(isinstance(i.get("name"), str) and isinstance(i.get("dtype", ""), str)
               for i in entries):  # fmt: skip
        return  # a manifest not shaped as the schema: let the provider judge
    unlimited = InputPolicy(max_input_bytes=2**62, max_request_bytes=2**62)
    decode_request(body, tensor_specs(entries), unlimited)
