# SPDX-License-Identifier: AGPL-3.0-only
"""Where Mercato keeps its data, and the settings every component shares."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DATA_DIR_ENV = "MERCATO_DATA_DIR"


def default_data_dir() -> Path:
    """The data directory: `$MERCATO_DATA_DIR`, else the platform's user data folder."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("mercato", appauthor=False))
