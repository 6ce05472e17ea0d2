# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato cid PATH [--cid-version 1]`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mercato.cli.app import _register_commands, app

_register_commands()
runner = CliRunner()


def test_cid_v0(tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello")
    result = runner.invoke(app, ["cid", str(path)])
    assert result.exit_code == 0
    assert result.stdout.strip() == "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX"


def test_cid_v1(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    result = runner.invoke(app, ["cid", str(path), "--cid-version", "1"])
    assert result.stdout.strip() == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_missing_file_exits_30(tmp_path: Path) -> None:
    result = runner.invoke(app, ["cid", str(tmp_path / "nope")])
    assert result.exit_code == 30


def test_bad_version_exits_31(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    assert runner.invoke(app, ["cid", str(path), "--cid-version", "7"]).exit_code == 31
