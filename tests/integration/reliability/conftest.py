# SPDX-License-Identifier: AGPL-3.0-only
"""Fixtures of the reliability tests: the index tier's deployment and databases."""

from tests.integration.index.conftest import (  # noqa: F401 (fixtures used by name)
    index_url,
    market,
    postgres_server,
)
