# SPDX-License-Identifier: AGPL-3.0-only
"""Deterministic test data for the storage tests."""

from __future__ import annotations

import hashlib


def pseudo_random(size: int, seed: bytes = b"mercato") -> bytes:
    """Deterministic bytes that do not compress or repeat (sha256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])
