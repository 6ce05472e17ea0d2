# SPDX-License-Identifier: AGPL-3.0-only
"""The root Typer application; command modules register themselves below."""

import typer

app = typer.Typer(
    name="mercato",
    help="Mercato: a decentralized marketplace for AI models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `app`.
    from mercato.cli import market, models, node, storage, store, wallet  # noqa: F401


def main() -> None:
    _register_commands()
    app()
