# SPDX-License-Identifier: AGPL-3.0-only
"""Help lists only commands that exist."""

from __future__ import annotations

from typer.testing import CliRunner

from mercato.cli.app import _register_commands, app
from mercato.cli.models import model_app


def test_model_help_names_no_phantom_command() -> None:
    _register_commands()
    existing = {command.name for command in model_app.registered_commands}
    assert "validate" not in existing
    result = CliRunner().invoke(app, ["model", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "validate," not in result.output
    assert {"inspect", "samples", "try"} <= existing


def test_new_commands_are_listed() -> None:
    _register_commands()
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in ("earnings", "withdraw"):
        assert command in result.output


def test_fl_run_takes_a_retry_window_and_refuses_one_out_of_range() -> None:
    _register_commands()
    env = {"COLUMNS": "200"}
    shown = CliRunner().invoke(app, ["fl", "run", "--help"], env=env)
    assert shown.exit_code == 0
    assert "--retry-seconds" in shown.output
    refused = CliRunner().invoke(app, ["fl", "run", "1", "--retry-seconds", "0"], env=env)
    assert refused.exit_code == 2  # refused before any chain or SuperLink is touched
    assert "--retry-seconds" in refused.output
