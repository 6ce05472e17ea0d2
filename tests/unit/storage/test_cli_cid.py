# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato cid PATH [--cid-version 1]`."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_cid_with_the_unixfs_v1_2025_profile(tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world")
    result = runner.invoke(app, ["cid", str(path), "--profile", "unixfs-v1-2025"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def test_cid_profile_comes_from_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello world")
    monkeypatch.setenv("MERCATO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MERCATO_CID_PROFILE", "unixfs-v1-2025")
    assert runner.invoke(app, ["cid", str(path)]).stdout.strip().startswith("bafkrei")
    # The flag wins over the setting.
    result = runner.invoke(app, ["cid", str(path), "--profile", "unixfs-v0-2015"])
    assert result.stdout.strip() == "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"


def test_unknown_profile_exits_31(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    result = runner.invoke(app, ["cid", str(path), "--profile", "unixfs-v9"])
    assert result.exit_code == 31
    assert "unixfs-v0-2015, unixfs-v1-2025" in result.stderr


def test_profile_and_contradicting_version_exit_31(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    args = ["cid", str(path), "--profile", "unixfs-v1-2025", "--cid-version", "0"]
    assert runner.invoke(app, args).exit_code == 31
