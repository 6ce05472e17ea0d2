# SPDX-License-Identifier: AGPL-3.0-only
"""Wallet: create, import, list, unlock, export and the default account."""

from __future__ import annotations

import json
import logging
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from mercato.config import Settings
from mercato.errors import (
    AccountExistsError,
    ExportTargetExistsError,
    InvalidAddressError,
    KeystoreInvalidError,
    KeystoreNotFoundError,
    NoDefaultAccountError,
    PasswordUnavailableError,
    PrivateKeyFileError,
    WrongPasswordError,
)
from mercato.wallet import PasswordSource, Wallet, keystore_dir

from .conftest import FAST_KDF, KNOWN_ADDRESS, KNOWN_KEY_HEX, PASSWORD

GETH_NAME = r"UTC--\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{9}Z--[0-9a-f]{40}"


def test_create_with_default_scrypt_round_trips(tmp_path: Path) -> None:
    wallet = Wallet(tmp_path / "keystore")  # geth's and MetaMask's default KDF and cost
    address = wallet.create(PASSWORD)
    path = wallet.keystore_path(address)
    data = json.loads(path.read_text())
    assert data["crypto"]["kdf"] == "scrypt"
    assert data["crypto"]["kdfparams"]["n"] == 2**18
    assert data["address"] == address[2:].lower()
    assert wallet.unlock(address, PASSWORD).address == address


def test_create_writes_a_geth_named_0600_file_in_a_0700_directory(wallet: Wallet) -> None:
    address = wallet.create(PASSWORD)
    path = wallet.keystore_path(address)
    assert path.parent == wallet.keystore_dir
    assert path.name.endswith(address[2:].lower())
    assert re.fullmatch(GETH_NAME, path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(wallet.keystore_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((wallet.keystore_dir / "default").stat().st_mode) == 0o600
    # No temporary file is left behind by the atomic write.
    assert not [p for p in wallet.keystore_dir.iterdir() if p.name.startswith(".")]


def test_create_refuses_an_empty_password(wallet: Wallet) -> None:
    with pytest.raises(PasswordUnavailableError):
        wallet.create("")
    assert wallet.list_accounts() == []


def test_create_without_any_password_source_fails_fast(
    wallet: Wallet, no_tty_source: PasswordSource
) -> None:
    with pytest.raises(PasswordUnavailableError, match="no terminal"):
        wallet.create(no_tty_source)
    assert not wallet.keystore_dir.exists()


def test_list_accounts_in_creation_order_and_skips_non_keystores(wallet: Wallet) -> None:
    first = wallet.create(PASSWORD)
    second = wallet.create(PASSWORD)
    (wallet.keystore_dir / "notes.txt").write_text("my accounts")
    (wallet.keystore_dir / "broken.json").write_text("{")
    assert [e.address for e in wallet.list_accounts()] == [first, second]


def test_list_accounts_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert Wallet(tmp_path / "nowhere").list_accounts() == []


def test_unlock_wrong_password_carries_the_address(wallet: Wallet) -> None:
    address = wallet.create(PASSWORD)
    with pytest.raises(WrongPasswordError) as caught:
        wallet.unlock(address, "not it")
    assert caught.value.address == address
    assert caught.value.path == str(wallet.keystore_path(address))


def test_unlock_missing_address_says_how_to_fix(wallet: Wallet) -> None:
    wallet.create(PASSWORD)
    with pytest.raises(KeystoreNotFoundError) as caught:
        wallet.unlock(KNOWN_ADDRESS.lower(), PASSWORD)
    assert caught.value.address == KNOWN_ADDRESS
    assert "mercato wallet list" in str(caught.value)
    assert str(wallet.keystore_dir) in str(caught.value)


def test_unlock_invalid_address(wallet: Wallet) -> None:
    with pytest.raises(InvalidAddressError):
        wallet.unlock("0x1234", PASSWORD)


def test_unlock_corrupted_file_is_invalid_not_missing(wallet: Wallet) -> None:
    address = wallet.create(PASSWORD)
    path = wallet.keystore_path(address)
    path.write_text(path.read_text()[:40])
    with pytest.raises(KeystoreInvalidError) as caught:
        wallet.unlock(address, PASSWORD)
    assert caught.value.path == str(path)


def test_unlock_asks_the_source_with_the_address(wallet: Wallet) -> None:
    address = wallet.create(PASSWORD)
    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return PASSWORD

    source = PasswordSource(environ={}, prompt=prompt, is_interactive=lambda: True)
    assert wallet.unlock(None, source).address == address
    assert asked == [f"Password for {address}: "]


def test_first_account_becomes_default_and_stays(wallet: Wallet) -> None:
    first = wallet.create(PASSWORD)
    wallet.create(PASSWORD)
    assert wallet.default_account() == first
    assert (wallet.keystore_dir / "default").read_text() == f"{first}\n"
    assert wallet.unlock(None, PASSWORD).address == first


def test_set_default_switches_and_checks_the_account(wallet: Wallet) -> None:
    wallet.create(PASSWORD)
    second = wallet.create(PASSWORD)
    assert wallet.set_default(second.lower()) == second
    assert wallet.default_account() == second
    with pytest.raises(KeystoreNotFoundError):
        wallet.set_default(KNOWN_ADDRESS)
    assert wallet.default_account() == second


def test_default_without_file_is_the_only_account(wallet: Wallet) -> None:
    address = wallet.create(PASSWORD)
    (wallet.keystore_dir / "default").unlink()
    assert wallet.default_account() == address


def test_no_default_with_several_accounts(wallet: Wallet) -> None:
    wallet.create(PASSWORD)
    wallet.create(PASSWORD)
    (wallet.keystore_dir / "default").unlink()
    with pytest.raises(NoDefaultAccountError) as caught:
        wallet.unlock(None, PASSWORD)
    assert caught.value.count == 2
    assert "mercato wallet default" in str(caught.value)


def test_no_default_in_an_empty_wallet(wallet: Wallet) -> None:
    with pytest.raises(NoDefaultAccountError, match="mercato wallet new"):
        wallet.unlock(None, PASSWORD)


def test_garbage_default_file_is_ignored(wallet: Wallet) -> None:
    address = wallet.create(PASSWORD)
    (wallet.keystore_dir / "default").write_text("not an address")
    assert wallet.default_account() == address  # falls back to the only account


def test_settings_account_overrides_the_stored_default(tmp_path: Path) -> None:
    plain = Wallet(keystore_dir(tmp_path), **FAST_KDF)
    first = plain.create(PASSWORD)
    second = plain.create(PASSWORD)
    assert plain.default_account() == first
    preferred = Wallet.from_settings(Settings(data_dir=tmp_path, account=second.lower()))
    assert preferred.keystore_dir == tmp_path / "keystore"
    assert preferred.default_account() == second
    assert preferred.unlock(None, PASSWORD).address == second


def test_import_private_key_round_trip(wallet: Wallet) -> None:
    address = wallet.import_private_key("0x" + KNOWN_KEY_HEX, PASSWORD)
    assert address == KNOWN_ADDRESS
    account = wallet.unlock(address, PASSWORD)
    assert account.key == bytes.fromhex(KNOWN_KEY_HEX)
    assert KNOWN_KEY_HEX not in wallet.keystore_path(address).read_text()


def test_import_private_key_twice_is_refused(wallet: Wallet) -> None:
    wallet.import_private_key(bytes.fromhex(KNOWN_KEY_HEX), PASSWORD)
    with pytest.raises(AccountExistsError) as caught:
        wallet.import_private_key(KNOWN_KEY_HEX, "another")
    assert caught.value.address == KNOWN_ADDRESS
    assert len(wallet.list_accounts()) == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("abc", "64 hex digits"),
        ("zz" * 32, "not hex"),
        ("00" * 32, "secp256k1"),
        ("ff" * 32, "secp256k1"),
    ],
)
def test_import_private_key_file_refuses_garbage_without_quoting_it(
    wallet: Wallet, tmp_path: Path, content: str, reason: str
) -> None:
    path = tmp_path / "key.txt"
    path.write_text(content)
    with pytest.raises(PrivateKeyFileError) as caught:
        wallet.import_private_key_file(path, PASSWORD)
    assert reason in caught.value.reason
    assert content not in str(caught.value)
    assert caught.value.__cause__ is None


def test_import_private_key_file_with_newline(wallet: Wallet, tmp_path: Path) -> None:
    path = tmp_path / "key.txt"
    path.write_text(f"0x{KNOWN_KEY_HEX}\n")
    assert wallet.import_private_key_file(path, PASSWORD) == KNOWN_ADDRESS


@pytest.mark.parametrize("kdf", ["pbkdf2", "scrypt"])
def test_import_keystore_made_by_eth_account(
    wallet: Wallet,
    eth_account_keystore: Callable[[str], dict[str, Any]],
    write_keystore: Callable[..., Path],
    kdf: str,
) -> None:
    source = write_keystore(eth_account_keystore(kdf))
    assert wallet.import_keystore(source, PASSWORD) == KNOWN_ADDRESS
    stored = json.loads(wallet.keystore_path(KNOWN_ADDRESS).read_text())
    assert stored["crypto"]["kdf"] == kdf  # kept as it was: same password, same KDF
    assert wallet.unlock(KNOWN_ADDRESS, PASSWORD).key == bytes.fromhex(KNOWN_KEY_HEX)


def test_import_spec_vector_without_address_field(
    wallet: Wallet, vectors: dict[str, Any], write_keystore: Callable[..., Path]
) -> None:
    source = write_keystore(vectors["pbkdf2"])
    address = wallet.import_keystore(
        source, PasswordSource(password_file=_pw(source, "testpassword"))
    )
    assert address == vectors["address"]
    stored = json.loads(wallet.keystore_path(address).read_text())
    assert stored["address"] == vectors["address"][2:].lower()
    assert (
        wallet.unlock(None, "testpassword").key.hex().removeprefix("0x") == vectors["private_key"]
    )


def _pw(near: Path, password: str) -> Path:
    path = near.parent / "password.txt"
    path.write_text(password + "\n")
    return path


def test_import_keystore_with_wrong_password_writes_nothing(
    wallet: Wallet, vectors: dict[str, Any], write_keystore: Callable[..., Path]
) -> None:
    source = write_keystore(vectors["pbkdf2"])
    with pytest.raises(WrongPasswordError):
        wallet.import_keystore(source, "wrong")
    assert wallet.list_accounts() == []


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"version": 3}'])
def test_import_invalid_keystore_carries_the_path(
    wallet: Wallet, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(KeystoreInvalidError) as caught:
        wallet.import_keystore(path, PASSWORD)
    assert caught.value.path == str(path)
    assert wallet.list_accounts() == []


def test_import_keystore_already_present(
    wallet: Wallet,
    eth_account_keystore: Callable[[str], dict[str, Any]],
    write_keystore: Callable[..., Path],
) -> None:
    wallet.import_private_key(KNOWN_KEY_HEX, PASSWORD)
    with pytest.raises(AccountExistsError):
        wallet.import_keystore(write_keystore(eth_account_keystore("pbkdf2")), PASSWORD)


def test_export_to_directory_and_file(wallet: Wallet, tmp_path: Path) -> None:
    address = wallet.create(PASSWORD)
    out = tmp_path / "out"
    out.mkdir()
    in_dir = wallet.export_keystore(address, out)
    assert in_dir == out / wallet.keystore_path(address).name
    named = wallet.export_keystore(address, out / "for-metamask.json")
    for path in (in_dir, named):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = json.loads(path.read_text())
        assert Account.from_key(Account.decrypt(data, PASSWORD)).address == address


def test_export_refuses_to_overwrite(wallet: Wallet, tmp_path: Path) -> None:
    address = wallet.create(PASSWORD)
    dest = tmp_path / "taken.json"
    dest.write_text("keep me")
    with pytest.raises(ExportTargetExistsError) as caught:
        wallet.export_keystore(address, dest)
    assert caught.value.path == str(dest)
    assert dest.read_text() == "keep me"


def test_export_unknown_account(wallet: Wallet, tmp_path: Path) -> None:
    with pytest.raises(KeystoreNotFoundError):
        wallet.export_keystore(KNOWN_ADDRESS, tmp_path / "x.json")


def test_secrets_never_in_repr_or_logs(
    wallet: Wallet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "key.txt"
    key_file.write_text(KNOWN_KEY_HEX)
    address = wallet.import_private_key_file(key_file, PASSWORD)
    (wallet.keystore_dir / "default").write_text("garbage")  # provokes a warning log
    account = wallet.unlock(None, PASSWORD)  # reads the default file, then falls back
    assert account.address == address
    for text in (
        repr(wallet),
        repr(account),
        str(account),
        repr(wallet.list_accounts()),
        caplog.text,
    ):
        assert KNOWN_KEY_HEX not in text.lower()
        assert PASSWORD not in text
    assert "ignoring" in caplog.text  # the log did run
