# SPDX-License-Identifier: AGPL-3.0-only
"""The try-before-you-buy runtime: ONNX Runtime in a pool of limited worker processes.

Kept import-light: a worker process imports this package before its own module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mercato.models.runtime.calls import TryResult
    from mercato.models.runtime.limits import RuntimeLimits
    from mercato.models.runtime.pool import TryPool
    from mercato.models.runtime.tensors import InputPolicy, decode_request, prepare_inputs

_EXPORTS = {
    "RuntimeLimits": "limits",
    "TryPool": "pool",
    "TryResult": "calls",
    "InputPolicy": "tensors",
    "decode_request": "tensors",
    "prepare_inputs": "tensors",
}

__all__ = [
    "InputPolicy",
    "RuntimeLimits",
    "TryPool",
    "TryResult",
    "decode_request",
    "prepare_inputs",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mercato.models.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mercato.models.runtime.{module}"), name)
