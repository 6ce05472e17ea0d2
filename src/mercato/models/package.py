# SPDX-License-Identifier: AGPL-3.0-only
"""A validated model package with its manifest: what the rest of Mercato handles."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mercato.models.card import ModelCard
from mercato.models.manifest import TensorSpec, build_manifest, manifest_bytes, tensor_specs
from mercato.models.validate import PackageFile, PackageLimits, validate_package


@dataclass(frozen=True)
class ModelPackage:
    """A package that passed validation, with its canonical manifest.

    Attributes:
        root: The package directory.
        name: The model's name (the manifest's `name`).
        entry: The ONNX entry's path relative to `root`.
        card: The parsed model card.
        files: Every file with size, SHA-256 and role.
        manifest: The manifest (schema-checked).
    """

    root: Path
    name: str
    entry: str
    card: ModelCard
    files: tuple[PackageFile, ...]
    manifest: dict[str, Any]

    @property
    def entry_path(self) -> Path:
        """The ONNX file on disk."""
        return self.root / self.entry

    @property
    def total_size(self) -> int:
        """All files' sizes added up."""
        return int(self.manifest["total_size"])

    @functools.cached_property
    def inputs(self) -> list[TensorSpec]:
        """The tensor inputs a caller feeds, in graph order."""
        return tensor_specs(self.manifest["inputs"])

    @property
    def outputs(self) -> list[TensorSpec]:
        """The tensor outputs, in graph order (non-tensor outputs are left out)."""
        return tensor_specs(self.manifest["outputs"])

    @functools.cached_property
    def model_sha256(self) -> str:
        """The ONNX entry's SHA-256; the runtime keys its session cache on it."""
        return next(f.sha256 for f in self.files if f.role == "model")

    @functools.cached_property
    def session_key(self) -> tuple[str, str]:
        """(cache key, ONNX path) a try-runtime worker needs; computed once per package."""
        return f"{self.model_sha256}:{self.entry_path}", str(self.entry_path)

    def manifest_bytes(self) -> bytes:
        """The canonical manifest bytes (see `mercato.models.manifest.manifest_bytes`).

        Returns:
            UTF-8 JSON, keys sorted, no insignificant whitespace.
        """
        return manifest_bytes(self.manifest)


def load_package(
    path: str | Path,
    *,
    name: str | None = None,
    entry: str | None = None,
    limits: PackageLimits | None = None,
) -> ModelPackage:
    """Validate a package directory and build its manifest.

    Args:
        path: The package directory (ONNX entry + README.md + optional extra files).
        name: The model's name; defaults to the directory's name.
        entry: The ONNX entry's relative path, when the package holds several.
        limits: Size limits; defaults to `PackageLimits()`.

    Returns:
        The package with its manifest.

    Raises:
        PackagePathError: a path leaves the package or `path` is not a directory.
        ModelTooLargeError: a size or count limit is exceeded.
        ModelCardError: README.md is missing or malformed.
        ModelLicenseError: the card names no SPDX license.
        UnsafeModelFormatError: a file is a pickle, code, or a Keras Lambda model.
        OnnxModelError: no single ONNX entry, or it fails the checker.
        ModelPackageError: the name is not allowed.
    """
    validated = validate_package(Path(path), entry=entry, limits=limits)
    manifest = build_manifest(validated, name)
    return ModelPackage(
        root=validated.root,
        name=manifest["name"],
        entry=validated.entry,
        card=validated.card,
        files=validated.files,
        manifest=manifest,
    )
