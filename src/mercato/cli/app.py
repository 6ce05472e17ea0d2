# SPDX-License-Identifier: AGPL-3.0-only
"""The root Typer application; command modules register themselves below."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

DEBUG_ENV = "MERCATO_DEBUG"

app = typer.Typer(
    name="mercato",
    help="Mercato: a decentralized marketplace for AI models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help=f"Show the traceback of an unexpected error (or set {DEBUG_ENV}=1)."
        ),
    ] = False,
) -> None:
    """Mercato: a decentralized marketplace for AI models."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `app`.
    from mercato.cli import (  # noqa: F401
        federation,
        index,
        market,
        models,
        moderation,
        node,
        storage,
        store,
        wallet,
    )


def debug_enabled() -> bool:
    """Whether unexpected errors show their traceback (`--debug` or MERCATO_DEBUG)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def report_unexpected(error: BaseException, *, as_json: bool) -> None:
    """Tells the user, in one sentence, that a bug stopped the command, and how to see more."""
    message = (
        f"An unexpected internal error ({type(error).__name__}) stopped the command. "
        f"Run it again with --debug (or {DEBUG_ENV}=1) to see the traceback, and report it."
    )
    if as_json:
        typer.echo(json.dumps({"error": "internal_error", "message": message}), err=True)
    else:
        typer.echo(f"error: {message}", err=True)


def main() -> None:
    """Runs the command line; no exception ever reaches the user as a raw traceback.

    Errors Mercato raises on purpose become their sentence and exit code in each
    command (`mercato.cli.errors.handles_errors`); anything else is a bug, reported in
    one sentence with exit code 1 unless debugging is on.
    """
    _register_commands()
    try:
        app()
    except Exception as error:  # the last resort: every other path ends in a typed error
        if debug_enabled():
            raise
        report_unexpected(error, as_json="--json" in sys.argv[1:])
        sys.exit(1)
