# SPDX-License-Identifier: AGPL-3.0-only
"""The `mercato` command line: thin Typer commands over the SDK.

Each component adds its commands in a module of its own here and registers them in
`app.py`; nothing else imports this package.
"""

from mercato.cli.app import app, main

__all__ = ["app", "main"]
