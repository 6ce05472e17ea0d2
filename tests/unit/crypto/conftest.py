# SPDX-License-Identifier: AGPL-3.0-only
"""Shared fixtures for the crypto tests."""

from __future__ import annotations

import pytest

from mercato.crypto import generate_content_key


@pytest.fixture
def content_key() -> bytes:
    return generate_content_key()
