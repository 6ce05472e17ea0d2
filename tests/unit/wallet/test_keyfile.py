# SPDX-License-Identifier: AGPL-3.0-only
"""One keystore file: the spec's vectors, structural checks, naming and private writes."""

from __future__ import annotations

import copy
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from mercato.errors import (
    InvalidAddressError,
    KeystoreInvalidError,
    KeystoreWriteError,
    WrongPasswordError,
)
from mercato.wallet.keyfile import (
    check_keystore,
    decrypt_keystore,
    encrypt_key,
    keystore_file_name,
    parse_address,
    write_private_file,
)

from .conftest import KNOWN_ADDRESS, KNOWN_KEY_HEX

HERE = Path("vector.json")


@pytest.mark.parametrize("kdf", ["pbkdf2", "scrypt"])
def test_spec_vector_decrypts_to_published_key(vectors: dict[str, Any], kdf: str) -> None:
    data = vectors[kdf]
    check_keystore(data, HERE)
    account = decrypt_keystore(data, vectors["password"], HERE)
    assert account.key.hex().removeprefix("0x") == vectors["private_key"]
    assert account.address == vectors["address"]


def test_spec_vector_wrong_password(vectors: dict[str, Any]) -> None:
    with pytest.raises(WrongPasswordError) as caught:
        decrypt_keystore(vectors["pbkdf2"], "testpassword2", HERE)
    assert caught.value.path == str(HERE)
    assert "Wrong password" in str(caught.value)


def test_capitalised_crypto_section_is_accepted(vectors: dict[str, Any]) -> None:
    data = copy.deepcopy(vectors["pbkdf2"])
    data["Crypto"] = data.pop("crypto")
    check_keystore(data, HERE)
    assert decrypt_keystore(data, "testpassword", HERE).address == vectors["address"]


def test_altered_ciphertext_reads_as_wrong_password(vectors: dict[str, Any]) -> None:
    # The MAC covers the ciphertext, so the format cannot tell tampering from a typo.
    data = copy.deepcopy(vectors["pbkdf2"])
    data["crypto"]["ciphertext"] = "00" + data["crypto"]["ciphertext"][2:]
    with pytest.raises(WrongPasswordError):
        decrypt_keystore(data, "testpassword", HERE)


def test_address_field_that_lies_is_refused(vectors: dict[str, Any]) -> None:
    data = copy.deepcopy(vectors["pbkdf2"])
    data["address"] = KNOWN_ADDRESS[2:].lower()
    with pytest.raises(KeystoreInvalidError) as caught:
        decrypt_keystore(data, "testpassword", HERE)
    assert KNOWN_ADDRESS in caught.value.reason


def _mutated(vectors: dict[str, Any], change: Any) -> dict[str, Any]:
    data = copy.deepcopy(vectors["scrypt"])
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(version=4), "version is 4"),
        (lambda d: d.pop("crypto"), "no 'crypto'"),
        (lambda d: d["crypto"].update(cipher="aes-128-cbc"), "cipher"),
        (lambda d: d["crypto"]["cipherparams"].update(iv="zz"), "iv"),
        (lambda d: d["crypto"].update(ciphertext="abcd"), "ciphertext"),
        (lambda d: d["crypto"].update(mac=None), "mac"),
        (lambda d: d["crypto"].update(kdf="argon2"), "'argon2'"),
        (lambda d: d["crypto"]["kdfparams"].update(n=1000), "power of two"),
        (lambda d: d["crypto"]["kdfparams"].update(n=2**30), "too much"),
        (lambda d: d["crypto"]["kdfparams"].update(n=4, r=2**22), "too much"),
        (lambda d: d["crypto"]["kdfparams"].update(dklen=16), "dklen"),
        (lambda d: d.update(address="not-an-address"), "address"),
    ],
)
def test_check_keystore_names_the_problem(
    vectors: dict[str, Any], change: Any, reason: str
) -> None:
    data = _mutated(vectors, change)
    started = time.monotonic()
    with pytest.raises(KeystoreInvalidError) as caught:
        check_keystore(data, HERE)
    assert reason in caught.value.reason
    # Refused by arithmetic, before any KDF work.
    assert time.monotonic() - started < 0.5


def test_pbkdf2_with_another_prf_is_refused(vectors: dict[str, Any]) -> None:
    data = copy.deepcopy(vectors["pbkdf2"])
    data["crypto"]["kdfparams"]["prf"] = "hmac-sha512"
    with pytest.raises(KeystoreInvalidError, match="hmac-sha512"):
        check_keystore(data, HERE)


def test_not_an_object_is_refused() -> None:
    with pytest.raises(KeystoreInvalidError, match="not a JSON object"):
        check_keystore(["crypto"], HERE)


def test_encrypt_key_round_trip_does_not_contain_the_key() -> None:
    data = encrypt_key(bytes.fromhex(KNOWN_KEY_HEX), "pw", "pbkdf2", 2)
    assert KNOWN_KEY_HEX not in str(data)
    assert data["address"] == KNOWN_ADDRESS[2:].lower()
    check_keystore(data, HERE)
    assert decrypt_keystore(data, "pw", HERE).address == KNOWN_ADDRESS


@pytest.mark.parametrize(
    "text",
    [KNOWN_ADDRESS, KNOWN_ADDRESS.lower(), KNOWN_ADDRESS[2:].upper(), f"  {KNOWN_ADDRESS}\n"],
)
def test_parse_address_accepts_any_case(text: str) -> None:
    assert parse_address(text) == KNOWN_ADDRESS


@pytest.mark.parametrize("text", ["", "0x123", KNOWN_ADDRESS + "00", "0x" + "g" * 40])
def test_parse_address_refuses_non_addresses(text: str) -> None:
    with pytest.raises(InvalidAddressError) as caught:
        parse_address(text)
    assert caught.value.value == text


def test_keystore_file_name_is_geths() -> None:
    ns = 1_700_000_000 * 1_000_000_000 + 123_456_789
    name = keystore_file_name(parse_address(KNOWN_ADDRESS), ns)
    assert name == ("UTC--2023-11-14T22-13-20.123456789Z--f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
    assert re.fullmatch(r"UTC--[0-9T\-]+\.\d{9}Z--[0-9a-f]{40}", keystore_file_name(KNOWN_ADDRESS))  # type: ignore[arg-type]


def test_write_private_file_is_0600_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_private_file(path, b"data")
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["secret"]


def test_write_private_file_refuses_to_replace_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_private_file(path, b"old")
    with pytest.raises(FileExistsError):
        write_private_file(path, b"new")
    assert path.read_bytes() == b"old"
    write_private_file(path, b"new", replace=True)
    assert path.read_bytes() == b"new"


def test_write_private_file_into_missing_directory_is_typed(tmp_path: Path) -> None:
    with pytest.raises(KeystoreWriteError) as caught:
        write_private_file(tmp_path / "missing" / "secret", b"x")
    assert caught.value.path.endswith("secret")
