# SPDX-License-Identifier: AGPL-3.0-only
"""Every error Mercato raises on purpose.

One root, `MercatoError`; each subclass also inherits the standard-library base that
fits, carries the data a caller needs (ids, CIDs, transaction hashes) and has a
`code`: a stable, machine-readable name that never changes meaning once released.
The message is a sentence a person can act on.
"""

from __future__ import annotations


class MercatoError(Exception):
    """Root of every error Mercato raises on purpose."""

    code: str = "mercato_error"


# --- configuration -------------------------------------------------------------------


class ConfigError(MercatoError, ValueError):
    """A setting is missing or malformed."""

    code = "config_error"
