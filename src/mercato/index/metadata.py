# SPDX-License-Identifier: AGPL-3.0-only
"""Model metadata: what the index reads from a version's manifest.

A model's name, card text, tags, task and license are not on-chain: `VersionAdded`
carries only the digest inside the manifest's CID, and the manifest's bytes reach this
node from storage, possibly later than the event. A `MetadataSource` answers "the
manifest for this digest, or None while it has not arrived"; the index holds versions
whose manifest is missing and applies them when it arrives.

Manifests follow `mercato/models/manifest.schema.json`, but this module is lenient on
purpose: a field of the wrong type is ignored and unknown fields are skipped, so a
manifest written by a newer (or older) Mercato still shows up in search.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_TEXT = 20_000  # characters of free text kept for search
MAX_TAGS = 64


class MetadataSource(Protocol):
    """Where manifests come from, by the sha256 digest inside their CID."""

    def manifest(self, digest: bytes) -> Mapping[str, Any] | None:
        """Returns the manifest document for `digest`, or None if not available yet.

        Args:
            digest: The 32-byte sha256 digest from `VersionAdded.manifest_cid_digest`.

        Returns:
            The decoded manifest JSON object, or None while its bytes have not arrived.
        """
        ...


class DictMetadataSource:
    """Manifests held in memory, keyed by digest: for tests and tools.

    The storage-backed source (fetch by CID, verify, decode) is wired by the SDK, which
    owns the storage clients; the index only needs this protocol.
    """

    def __init__(self, manifests: Mapping[bytes, Mapping[str, Any]] | None = None) -> None:
        self.manifests: dict[bytes, Mapping[str, Any]] = dict(manifests or {})
        self.task_specs: dict[bytes, Mapping[str, Any]] = {}

    def add(self, digest: bytes, manifest: Mapping[str, Any]) -> None:
        """Makes `manifest` available under `digest` (as if it had just arrived)."""
        self.manifests[bytes(digest)] = manifest

    def manifest(self, digest: bytes) -> Mapping[str, Any] | None:
        return self.manifests.get(bytes(digest))

    def add_task_spec(self, digest: bytes, spec: Mapping[str, Any]) -> None:
        """Makes a federated task's spec available under `digest` (as if it had arrived)."""
        self.task_specs[bytes(digest)] = spec

    def task_spec(self, digest: bytes, accounts: Sequence[str] = ()) -> Mapping[str, Any] | None:
        """The spec document for `digest` (see `mercato.index.federation.SpecSource`)."""
        return self.task_specs.get(bytes(digest))


@dataclass(frozen=True)
class ModelMetadata:
    """The searchable fields of a manifest.

    Attributes:
        valid: False when the document was not a JSON object or had no usable name.
        name: The model's name.
        license: The card's licence: a Hub id as the Hub writes it (`llama3.1`), or an
            SPDX expression (manifests published before Hub ids spell SPDX's way).
        task: The card's `pipeline_tag`.
        library: The card's `library_name`.
        tags: The card's tags, de-duplicated, in order.
        text: Free text: the card's text or a description, when the manifest has one.
    """

    valid: bool
    name: str | None = None
    license: str | None = None
    task: str | None = None
    library: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    text: str = ""


def _string(value: Any, limit: int = 200) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:limit]
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [s for s in (_string(v, 100) for v in value) if s is not None]


def _hub_terms(card: Mapping[str, Any]) -> list[str]:
    """Searchable words from the Hub fields newer manifests carry: a custom licence's name,
    and the datasets and metrics of self-reported results (bounded like the rest)."""
    terms = _strings(card.get("license_name"))
    models = card.get("model-index")
    for model in models[:MAX_TAGS] if isinstance(models, list) else []:
        results = model.get("results") if isinstance(model, Mapping) else None
        for result in results[:MAX_TAGS] if isinstance(results, list) else []:
            if not isinstance(result, Mapping):
                continue
            dataset = result.get("dataset")
            if isinstance(dataset, Mapping):
                terms += _strings(dataset.get("name")) + _strings(dataset.get("type"))
            metrics = result.get("metrics")
            for metric in metrics[:MAX_TAGS] if isinstance(metrics, list) else []:
                if isinstance(metric, Mapping):
                    terms += _strings(metric.get("type"))
    return list(dict.fromkeys(terms))[:MAX_TAGS]


def extract_metadata(document: Any) -> ModelMetadata:
    """Reads the searchable fields from a manifest document, tolerating any shape.

    Args:
        document: The decoded manifest (normally a dict).

    Returns:
        The fields; `valid` is False when there is no object or no name.
    """
    if not isinstance(document, Mapping):
        return ModelMetadata(valid=False)
    card = document.get("card")
    card = card if isinstance(card, Mapping) else {}
    tags = list(dict.fromkeys(_strings(card.get("tags"))))[:MAX_TAGS]
    # The card's free text is not part of manifest version 1; newer manifests may carry
    # it as card.text or a top-level description, and the ONNX metadata may hold a
    # doc string. Whatever is there is searched.
    texts = [
        card.get("text"),
        document.get("description"),
        card.get("description"),
    ]
    metadata = document.get("metadata")
    if isinstance(metadata, Mapping):
        texts.append(metadata.get("description"))
        texts.append(metadata.get("doc_string"))
    extra = [
        *_strings(card.get("datasets")),
        *_strings(card.get("metrics")),
        *_hub_terms(card),
    ]
    text_parts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    if extra:
        text_parts.append(" ".join(extra))
    name = _string(document.get("name"))
    return ModelMetadata(
        valid=name is not None,
        name=name,
        license=_string(card.get("license")),
        task=_string(card.get("pipeline_tag"), 100),
        library=_string(card.get("library_name"), 100),
        tags=tuple(tags),
        text="\n".join(text_parts)[:MAX_TEXT],
    )


def document_json(document: Any) -> str:
    """The document as stored in the index (canonical JSON, or its repr when not JSON)."""
    try:
        return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return json.dumps(repr(document))
