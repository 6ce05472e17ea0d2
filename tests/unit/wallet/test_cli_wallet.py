# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato wallet new|import|list|export|default`: output and exit codes."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from mercato.cli.app import _register_commands, app
from mercato.wallet import keystore as keystore_module
from mercato.wallet.keyfile import encrypt_key

from .conftest import KNOWN_ADDRESS, KNOWN_KEY_HEX, PASSWORD

_register_commands()
runner = CliRunner()


@pytest.fixture(autouse=True)
def fast_and_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The CLI always writes scrypt keystores; the KDF's cost is not what these tests are
    # about, so new keystores use a cheap PBKDF2 here.
    def cheap(key: bytes, password: str, kdf: Any = "scrypt", iterations: Any = None) -> Any:
        return encrypt_key(key, password, "pbkdf2", 2)

    monkeypatch.setattr(keystore_module, "encrypt_key", cheap)
    for name in ("MERCATO_PASSWORD", "MERCATO_ACCOUNT", "MERCATO_CONFIG", "MERCATO_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password.txt"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    path.write_text(f"0x{KNOWN_KEY_HEX}\n")
    return path


def run(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, ["wallet", *args, "--data-dir", str(data_dir)], env=env)


def new_account(data_dir: Path, password_file: Path) -> str:
    result = run(data_dir, "new", "--password-file", str(password_file), "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["address"])


def test_new_with_password_file(data_dir: Path, password_file: Path) -> None:
    result = run(data_dir, "new", "--password-file", str(password_file))
    assert result.exit_code == 0, result.output
    assert "Created account 0x" in result.stdout
    assert "default account" in result.stdout
    files = [p for p in (data_dir / "keystore").iterdir() if p.name.startswith("UTC--")]
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_new_json_with_environment_password(data_dir: Path) -> None:
    result = run(data_dir, "new", "--json", env={"MERCATO_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["default"] is True
    assert Path(payload["keystore"]).name.endswith(payload["address"][2:].lower())


def test_new_without_password_source_exits_15(data_dir: Path) -> None:
    result = run(data_dir, "new")  # CliRunner's stdin is not a terminal
    assert result.exit_code == 15
    assert "--password-file" in result.stderr
    assert not (data_dir / "keystore").exists()


def test_new_with_empty_password_exits_15(data_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert run(data_dir, "new", "--password-file", str(empty)).exit_code == 15


def test_import_private_key_file(data_dir: Path, key_file: Path, password_file: Path) -> None:
    args = ("import", "--private-key-file", str(key_file), "--password-file", str(password_file))
    result = run(data_dir, *args)
    assert result.exit_code == 0, result.output
    assert KNOWN_ADDRESS in result.stdout
    assert KNOWN_KEY_HEX not in result.output
    again = run(data_dir, *args)
    assert again.exit_code == 14
    assert "already in your wallet" in again.stderr


def test_import_bad_private_key_file_exits_17(
    data_dir: Path, tmp_path: Path, password_file: Path
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("deadbeef-not-a-key")
    result = run(
        data_dir, "import", "--private-key-file", str(bad), "--password-file", str(password_file)
    )
    assert result.exit_code == 17
    assert "deadbeef" not in result.output


@pytest.mark.parametrize("which", ["neither", "both"])
def test_import_needs_exactly_one_source(
    data_dir: Path, key_file: Path, tmp_path: Path, which: str
) -> None:
    args = ["import"]
    if which == "both":
        args += ["--private-key-file", str(key_file), "--keystore", str(tmp_path / "k.json")]
    result = run(data_dir, *args)
    assert result.exit_code == 2
    assert "exactly one" in result.output


def test_import_spec_keystore(
    data_dir: Path,
    vectors: dict[str, Any],
    write_keystore: Callable[..., Path],
    tmp_path: Path,
) -> None:
    source = write_keystore(vectors["pbkdf2"])
    result = run(
        data_dir,
        "import",
        "--keystore",
        str(source),
        "--json",
        env={"MERCATO_PASSWORD": "testpassword"},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["address"] == vectors["address"]


def test_import_keystore_wrong_password_exits_12(
    data_dir: Path, vectors: dict[str, Any], write_keystore: Callable[..., Path]
) -> None:
    source = write_keystore(vectors["pbkdf2"])
    result = run(
        data_dir, "import", "--keystore", str(source), "--json", env={"MERCATO_PASSWORD": "nope"}
    )
    assert result.exit_code == 12
    error = json.loads(result.stderr)
    assert error["error"] == "wrong_password"
    assert result.stdout == ""


def test_import_corrupted_keystore_exits_13(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 3, "crypto": ')
    result = run(data_dir, "import", "--keystore", str(bad), env={"MERCATO_PASSWORD": "x"})
    assert result.exit_code == 13
    assert str(bad) in result.stderr.replace("\n", "")


def test_list_json_is_one_document(data_dir: Path, password_file: Path) -> None:
    first = new_account(data_dir, password_file)
    second = new_account(data_dir, password_file)
    result = run(data_dir, "list", "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["default"] == first
    assert [a["address"] for a in payload["accounts"]] == [first, second]
    assert [a["default"] for a in payload["accounts"]] == [True, False]


def test_list_table_and_empty(data_dir: Path, password_file: Path) -> None:
    empty = run(data_dir, "list")
    assert empty.exit_code == 0
    assert "mercato wallet new" in empty.stdout
    address = new_account(data_dir, password_file)
    table = run(data_dir, "list")
    assert address in table.stdout  # shown whole, never truncated


def test_export(data_dir: Path, password_file: Path, tmp_path: Path) -> None:
    address = new_account(data_dir, password_file)
    dest = tmp_path / "exported.json"
    result = run(data_dir, "export", address, str(dest))
    assert result.exit_code == 0, result.output
    assert json.loads(dest.read_text())["address"] == address[2:].lower()
    assert run(data_dir, "export", address, str(dest)).exit_code == 18


def test_export_unknown_and_invalid_address(data_dir: Path, tmp_path: Path) -> None:
    missing = run(data_dir, "export", KNOWN_ADDRESS, str(tmp_path / "x.json"))
    assert missing.exit_code == 11
    assert "mercato wallet list" in missing.stderr
    assert run(data_dir, "export", "0xnope", str(tmp_path / "x.json")).exit_code == 17


def test_default_show_and_set(data_dir: Path, password_file: Path) -> None:
    first = new_account(data_dir, password_file)
    second = new_account(data_dir, password_file)
    shown = run(data_dir, "default")
    assert shown.stdout.strip() == first
    switched = run(data_dir, "default", second.lower(), "--json")
    assert switched.exit_code == 0
    assert json.loads(switched.stdout) == {"default": second}
    assert json.loads(run(data_dir, "list", "--json").stdout)["default"] == second


def test_default_unknown_account_exits_11(data_dir: Path, password_file: Path) -> None:
    new_account(data_dir, password_file)
    assert run(data_dir, "default", KNOWN_ADDRESS).exit_code == 11


def test_default_notes_an_overriding_setting(data_dir: Path, password_file: Path) -> None:
    first = new_account(data_dir, password_file)
    second = new_account(data_dir, password_file)
    result = run(data_dir, "default", second, env={"MERCATO_ACCOUNT": first})
    assert result.exit_code == 0
    assert "takes precedence" in result.stderr
    assert result.stdout.strip() == first
