# SPDX-License-Identifier: AGPL-3.0-only
"""The model card: a Hugging Face style README.md with YAML front matter.

The front matter is the metadata block between two `---` lines at the top of the file;
the rest is free text for people. Mercato reads the fields the Hub documents (license,
license_name, license_link, tags, pipeline_tag, datasets, metrics, base_model,
base_model_relation, language, library_name, model-index, widget, co2_eq_emissions and
the gating fields `extra_gated_*`, see `mercato.models.hub_fields`) and requires a
license a buyer can look up before paying: an id the Hub documents (kept as the Hub
writes it, see `mercato.models.licenses`), an SPDX expression, or `other` with the
card's own `license_name` (and its text in a LICENSE file or at `license_link`).

Three optional fields help a buyer try the model (see docs/models.md): `features`
names the columns of the input (a list, or a mapping from input name to list),
`classes` names what a classifier's probabilities are about (in the order of its
classes, scikit-learn's `classes_`), and `example` is a try input in the format
`mercato try` takes (a JSON string, or the same as YAML).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from license_expression import ExpressionError, Licensing, get_spdx_licensing

from mercato.errors import ModelCardError, ModelLicenseError
from mercato.models import hub_fields
from mercato.models.licenses import OTHER, hub_license
from mercato.models.sections import missing_sections
from mercato.models.terms import LicenseTerms, license_terms, require_buyer_sections

__all__ = [
    "CARD_FILENAME",
    "LicenseTerms",
    "ModelCard",
    "license_terms",
    "load_card",
    "normalize_license",
    "parse_card",
    "render_card",
    "require_buyer_sections",
    "split_front_matter",
]

CARD_FILENAME = "README.md"

# Fields whose value may be one string or a list of strings on the Hub; both become lists.
_LIST_FIELDS = ("language", "tags", "datasets", "metrics", "base_model")
_STRING_FIELDS = ("pipeline_tag", "library_name", "base_model_relation")
# Bounds on the try fields: a card is public and shown on every model page.
MAX_NAMES = 4096
MAX_NAME_CHARS = 128
MAX_EXAMPLE_CHARS = 64 * 1024
MAX_LICENSE_TEXT = 64 * 1024  # a custom licence's text, kept in the public manifest


@functools.cache
def _licensing() -> Licensing:
    # Building the SPDX symbol table takes a while; do it once per process.
    return get_spdx_licensing()


@dataclass(frozen=True)
class ModelCard:
    """The metadata of a model card, normalised.

    Attributes:
        license: A licence id the Hub documents, as the Hub writes it (`apache-2.0`,
            `llama3.1`, `other`), or an SPDX expression in SPDX's spelling
            (`MIT OR Apache-2.0`).
        license_name: The card's name for its licence (required with `other`).
        license_link: Where the licence's text is: an http(s) address, or a file of the
            package (`LICENSE`).
        license_text: A custom licence's text, read from the package's licence file
            when the license is `other` (see `validate_package`); None otherwise.
        language: Natural languages the model handles (ISO 639 codes), possibly empty.
        tags: Free-form tags.
        pipeline_tag: The Hub task name (`tabular-classification`, ...), if given.
        library_name: The library the model came from (`sklearn`, `pytorch`...), if given.
        datasets: Datasets the model was trained on.
        metrics: Names of the metrics the card reports.
        base_model: Models this one was derived from (fine-tuned, further trained...).
        base_model_relation: How it was derived (`finetune`, `adapter`...), if given.
        features: Names of the input's columns: a list (the model's only input), or a
            mapping from input name to list; empty when the card names none.
        classes: Names of a classifier's classes, in the order of its probabilities.
        example: A try input (JSON text, the format `mercato try` takes), or None.
        model_index: The card's `model-index`: evaluation results the creator reports.
        widget: The card's `widget` examples.
        co2_eq_emissions: Training emissions (`emissions` in grams, and how measured).
        gating: The `extra_gated_*` fields: what the creator asks of a user.
        text: The free text after the front matter.
    """

    license: str
    license_name: str | None = None
    license_link: str | None = None
    license_text: str | None = None
    language: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    datasets: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    base_model: list[str] = field(default_factory=list)
    base_model_relation: str | None = None
    features: list[str] | dict[str, list[str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    example: str | None = None
    model_index: list[dict[str, Any]] = field(default_factory=list)
    widget: list[dict[str, Any]] = field(default_factory=list)
    co2_eq_emissions: dict[str, str] | None = None
    gating: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def missing_sections(self) -> tuple[str, ...]:
        """The sections a paid listing needs that the card's text lacks.

        Returns:
            `intended uses`, `limitations`, both or neither (see `mercato.models.sections`).
        """
        return missing_sections(self.text)

    def to_manifest(self) -> dict[str, Any]:
        """Return the card fields that go into the canonical manifest.

        Returns:
            A JSON-ready mapping; optional fields that are unset are left out so that
            adding a field later does not change existing manifests.
        """
        out: dict[str, Any] = {"license": self.license}
        for name in ("license_name", "license_link", "license_text"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        for name in _LIST_FIELDS:
            out[name] = list(getattr(self, name))
        for name in _STRING_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        # Left out when unset, like the optional strings above.
        if self.features:
            out["features"] = (
                {k: list(v) for k, v in self.features.items()}
                if isinstance(self.features, dict)
                else list(self.features)
            )
        if self.classes:
            out["classes"] = list(self.classes)
        if self.example is not None:
            out["example"] = self.example
        # The Hub's own spellings, so a manifest reads like the card it came from.
        if self.model_index:
            out["model-index"] = self.model_index
        if self.widget:
            out["widget"] = self.widget
        if self.co2_eq_emissions is not None:
            out["co2_eq_emissions"] = self.co2_eq_emissions
        out.update(self.gating)
        # The card's free text is public, as on the Hub: a marketplace page shows it
        # before anyone buys (the artifact itself may be encrypted).
        if self.text.strip():
            out["text"] = self.text
        return out


def normalize_license(value: object, *, path: str = "") -> str:
    """Check that `value` names a licence a buyer can look up, and spell it one way.

    Args:
        value: The `license` field of the front matter.
        path: The card's path, for the error message.

    Returns:
        A Hub id as the Hub writes it (`Apache-2.0` -> `apache-2.0`, `Llama3.1` ->
        `llama3.1`), else the SPDX expression as SPDX spells it (`mit or gpl-2.0+` ->
        `MIT OR GPL-2.0-or-later`).

    Raises:
        ModelLicenseError: the value is missing, not a string, or neither a Hub id nor
            an SPDX expression.
    """
    if value is None or value == "":
        raise ModelLicenseError(
            "The model card names no license. Add a line such as 'license: apache-2.0' "
            "(a licence id the Hugging Face Hub documents, or an SPDX identifier) to the "
            "YAML front matter of README.md.",
            path=path,
        )
    if not isinstance(value, str):
        raise ModelLicenseError(
            f"The model card's license must be one licence id or SPDX expression, got "
            f"{value!r:.100}. Write it as a string, e.g. 'license: mit'.",
            path=path,
        )
    known = hub_license(value)
    if known is not None:
        return known.id
    try:
        expression = _licensing().parse(value, validate=True, strict=True)
    except ExpressionError as exc:
        raise ModelLicenseError(
            f"The model card's license {value!r:.100} is neither a licence id the Hugging "
            "Face Hub documents (apache-2.0, llama3.1, creativeml-openrail-m, cc-by-nc-4.0...) "
            f"nor an SPDX expression ({exc}). Use one of those (SPDX ids are listed at "
            "https://spdx.org/licenses/), or 'license: other' with 'license_name' and "
            "'license_link'.",
            path=path,
            license=value,
        ) from exc
    if expression is None:
        raise ModelLicenseError(
            "The model card's license is empty. Add an SPDX identifier such as 'mit'.",
            path=path,
            license=value,
        )
    return str(expression.render())


def _string_list(front: dict[str, Any], key: str, path: str) -> list[str]:
    value = front.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ModelCardError(
        f"The model card field {key!r} must be a string or a list of strings, "
        f"got {value!r}. Fix the YAML front matter of README.md.",
        path=path,
    )


def _optional_string(front: dict[str, Any], key: str, path: str) -> str | None:
    value = front.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ModelCardError(
        f"The model card field {key!r} must be a string, got {value!r}. "
        "Fix the YAML front matter of README.md.",
        path=path,
    )


def _names(value: object, key: str, path: str) -> list[str]:
    # YAML reads `[0, 1]` as numbers; whole numbers become their text, nothing else does.
    if not isinstance(value, list) or not value or len(value) > MAX_NAMES:
        raise ModelCardError(
            f"The model card field {key!r} must be a list of 1 to {MAX_NAMES} names, got "
            f"{value!r:.200}. Fix the YAML front matter of README.md.",
            path=path,
        )
    names = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ModelCardError(
                f"The model card field {key!r} holds {item!r:.100}, which is not a name. "
                "Quote each name in the YAML front matter of README.md.",
                path=path,
            )
        name = str(item)
        if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise ModelCardError(
                f"The model card field {key!r} holds the name {name!r:.150}; each name must "
                f"be 1-{MAX_NAME_CHARS} printable characters.",
                path=path,
            )
        names.append(name)
    return names


def _features(front: dict[str, Any], path: str) -> list[str] | dict[str, list[str]]:
    value = front.get("features")
    if value is None:
        return []
    if isinstance(value, dict):
        if not value or not all(isinstance(k, str) and k for k in value):
            raise ModelCardError(
                "The model card field 'features' must map input names to lists of names, "
                "e.g. 'features: {X: [age, height]}'.",
                path=path,
            )
        return {k: _names(v, f"features.{k}", path) for k, v in value.items()}
    return _names(value, "features", path)


def _example(front: dict[str, Any], path: str) -> str | None:
    value = front.get("example")
    if value is None:
        return None
    if not isinstance(value, str):
        try:  # given as YAML: kept as the equivalent JSON text
            value = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ModelCardError(
                f"The model card field 'example' cannot be written as JSON ({exc}). Give it "
                """as a JSON string, e.g. 'example: '{"X": [[5.1, 3.5, 1.4, 0.2]]}''.""",
                path=path,
            ) from exc
    if not value.strip() or len(value) > MAX_EXAMPLE_CHARS:
        raise ModelCardError(
            f"The model card field 'example' must be 1 to {MAX_EXAMPLE_CHARS} characters "
            "of try input, as 'mercato try' takes it.",
            path=path,
        )
    return value


def split_front_matter(text: str, *, path: str = "") -> tuple[dict[str, Any], str]:
    """Split a card into its YAML front matter and its free text.

    Args:
        text: The whole README.md.
        path: The card's path, for error messages.

    Returns:
        The parsed front matter (a mapping) and the text after it.

    Raises:
        ModelCardError: there is no front matter, it does not close, it is not valid
            YAML, or it is not a mapping.
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ModelCardError(
            "README.md has no YAML front matter. Start the file with a line '---', the "
            "metadata (license, tags, pipeline_tag...), and another line '---'.",
            path=path,
        )
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            header = "".join(lines[1:index])
            body = "".join(lines[index + 1 :])
            break
    else:
        raise ModelCardError(
            "README.md's YAML front matter never closes. Add a line '---' after the metadata.",
            path=path,
        )
    try:
        # safe_load: the card comes from strangers, never build Python objects from it.
        front = yaml.safe_load(header)
    except yaml.YAMLError as exc:
        raise ModelCardError(
            f"README.md's front matter is not valid YAML: {exc}. Fix the metadata block.",
            path=path,
        ) from exc
    if front is None:
        front = {}
    if not isinstance(front, dict):
        raise ModelCardError(
            "README.md's front matter must be a YAML mapping (key: value lines).",
            path=path,
        )
    return front, body


def parse_card(text: str, *, path: str = "") -> ModelCard:
    """Parse a model card.

    Args:
        text: The whole README.md.
        path: The card's path, for error messages.

    Returns:
        The normalised card.

    Raises:
        ModelCardError: the front matter is missing or malformed.
        ModelLicenseError: the license is missing or not SPDX.
    """
    front, body = split_front_matter(text, path=path)
    lists = {key: _string_list(front, key, path) for key in _LIST_FIELDS}
    strings = {key: _optional_string(front, key, path) for key in _STRING_FIELDS}
    license = normalize_license(front.get("license"), path=path)
    license_name = front.get("license_name")
    if license_name is not None:
        license_name = hub_fields.text(license_name, "license_name", path)
    elif license == OTHER:
        raise ModelLicenseError(
            "The model card says 'license: other' but gives no 'license_name'. Name the "
            "licence ('license_name: my-licence') and give its text in a LICENSE file or "
            "at 'license_link'.",
            path=path,
            license=license,
        )
    link = front.get("license_link")
    co2 = front.get("co2_eq_emissions")
    return ModelCard(
        license=license,
        license_name=license_name,
        license_link=hub_fields.link(link, "license_link", path) if link is not None else None,
        language=lists["language"],
        tags=lists["tags"],
        pipeline_tag=strings["pipeline_tag"],
        library_name=strings["library_name"],
        datasets=lists["datasets"],
        metrics=lists["metrics"],
        base_model=lists["base_model"],
        base_model_relation=strings["base_model_relation"],
        features=_features(front, path),
        classes=_names(front["classes"], "classes", path) if front.get("classes") else [],
        example=_example(front, path),
        model_index=hub_fields.model_index(front["model-index"], path)
        if front.get("model-index") is not None
        else [],
        widget=hub_fields.widget(front["widget"], path) if front.get("widget") is not None else [],
        co2_eq_emissions=hub_fields.co2(co2, path) if co2 is not None else None,
        gating=hub_fields.gating(front, path),
        text=body,
    )


def load_card(path: Path) -> ModelCard:
    """Read and parse the card at `path`.

    Args:
        path: A README.md file.

    Returns:
        The normalised card.

    Raises:
        ModelCardError: the file is missing, not UTF-8, or malformed.
        ModelLicenseError: the license is missing or not SPDX.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ModelCardError(
            f"The package has no {CARD_FILENAME}. Add a model card: a README.md that "
            "starts with YAML front matter naming at least the license.",
            path=str(path),
        ) from exc
    except UnicodeDecodeError as exc:
        raise ModelCardError(
            f"{CARD_FILENAME} is not UTF-8 text. Save it as UTF-8.", path=str(path)
        ) from exc
    return parse_card(text, path=str(path))


def render_card(card: ModelCard) -> str:
    """Write a card back as README.md text, front matter first.

    Args:
        card: The card to render.

    Returns:
        README.md text; the same card always renders to the same bytes.
    """
    front: dict[str, Any] = {"license": card.license}
    for name in ("license_name", "license_link"):
        if getattr(card, name) is not None:
            front[name] = getattr(card, name)
    for name in ("language", "library_name", "pipeline_tag", "tags", "datasets", "metrics"):
        value = getattr(card, name)
        if value:
            front[name] = value
    if card.base_model:
        front["base_model"] = card.base_model[0] if len(card.base_model) == 1 else card.base_model
    if card.base_model_relation:
        front["base_model_relation"] = card.base_model_relation
    if card.features:
        front["features"] = card.features
    if card.classes:
        front["classes"] = card.classes
    if card.example is not None:
        front["example"] = card.example
    if card.model_index:
        front["model-index"] = card.model_index
    if card.widget:
        front["widget"] = card.widget
    if card.co2_eq_emissions is not None:
        front["co2_eq_emissions"] = card.co2_eq_emissions
    for key, value in card.gating.items():
        if key == "extra_gated_fields":  # back to the Hub's mapping of name to type
            value = {
                f["name"]: {"type": f["type"], "options": f["options"]} if "options" in f
                else f["type"]
                for f in value
            }  # fmt: skip
        front[key] = value
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f"---\n{header}---\n{card.text}"
