# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato node ...`: run the local node."""

import typer

from mercato.cli.app import app

node_app = typer.Typer(help="Run a Mercato node.", no_args_is_help=True)
app.add_typer(node_app, name="node")
