# SPDX-License-Identifier: AGPL-3.0-only
"""Model packages: card, manifest, validation, sample models and the try-runtime.

The common calls::

    from mercato.models import TryPool, load_package

    package = load_package("iris-logreg/")      # validate + canonical manifest
    package.manifest_bytes()                     # the bytes a version commits to
    with TryPool(workers=2) as pool:
        result = pool.run(package, {"X": [[5.1, 3.5, 1.4, 0.2]]})

Names are imported on first use: a try-runtime worker process imports this package
and must not pay for onnx, jsonschema and the SPDX tables it never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mercato.models.card import ModelCard, load_card, parse_card
    from mercato.models.manifest import (
        MANIFEST_VERSION,
        TensorSpec,
        build_manifest,
        manifest_bytes,
        manifest_schema,
        parse_manifest,
        validate_manifest,
    )
    from mercato.models.package import ModelPackage, load_package
    from mercato.models.runtime import RuntimeLimits, TryPool, TryResult
    from mercato.models.validate import PackageFile, PackageLimits, validate_package

_EXPORTS = {
    "ModelCard": "card",
    "load_card": "card",
    "parse_card": "card",
    "MANIFEST_VERSION": "manifest",
    "TensorSpec": "manifest",
    "build_manifest": "manifest",
    "manifest_bytes": "manifest",
    "manifest_schema": "manifest",
    "parse_manifest": "manifest",
    "validate_manifest": "manifest",
    "ModelPackage": "package",
    "load_package": "package",
    "RuntimeLimits": "runtime",
    "TryPool": "runtime",
    "TryResult": "runtime",
    "PackageFile": "validate",
    "PackageLimits": "validate",
    "validate_package": "validate",
}

__all__ = [
    "MANIFEST_VERSION",
    "ModelCard",
    "ModelPackage",
    "PackageFile",
    "PackageLimits",
    "RuntimeLimits",
    "TensorSpec",
    "TryPool",
    "TryResult",
    "build_manifest",
    "load_card",
    "load_package",
    "manifest_bytes",
    "manifest_schema",
    "parse_card",
    "parse_manifest",
    "validate_manifest",
    "validate_package",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mercato.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mercato.models.{module}"), name)
