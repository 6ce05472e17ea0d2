# SPDX-License-Identifier: AGPL-3.0-only
"""One Web3 Secret Storage v3 keystore file: checking, encrypting, decrypting, writing.

The format is the one geth, MetaMask and eth-account read and write (AES-128-CTR, a
keccak-256 MAC, and a scrypt or PBKDF2-HMAC-SHA256 key-derivation function). The
cryptography itself is eth-account's; this module adds what a command line needs
around it: a structural check with a readable reason before any work is done, limits on
the KDF's cost (a hostile file must not make us allocate gigabytes), typed errors that
tell a wrong password from a broken file, and crash-safe private file writes.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Literal, TypeGuard

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keyfile.exceptions import EthKeyfileValueError
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address

from mercato.errors import (
    InvalidAddressError,
    KeystoreInvalidError,
    KeystoreWriteError,
    WrongPasswordError,
)
from mercato.fsutil import atomic_write_bytes

logger = logging.getLogger(__name__)

KdfName = Literal["scrypt", "pbkdf2"]

# Bounds on what a keystore may ask of us before we run its KDF. geth's standard scrypt
# parameters (N=2^18, r=8, p=1) need 256 MiB; 1 GiB leaves room for stronger exports
# while refusing files built to exhaust memory.
MAX_SCRYPT_MEMORY = 1 << 30
MAX_SCRYPT_P = 16
MAX_PBKDF2_ITERATIONS = 10_000_000
# Real keystores are well under 1 KiB; anything this large is not one.
MAX_KEYSTORE_BYTES = 64 * 1024

_ADDRESS_RE = re.compile(r"^(0x)?[0-9a-fA-F]{40}$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]*$")


def parse_address(value: str) -> ChecksumAddress:
    """Turns user input into a checksummed address.

    Args:
        value: 40 hex digits, with or without `0x`, in any letter case.

    Returns:
        The EIP-55 checksummed address.

    Raises:
        InvalidAddressError: The value is not 40 hex digits.
    """
    text = value.strip()
    if not _ADDRESS_RE.match(text):
        raise InvalidAddressError(value)
    if not text.startswith("0x"):
        text = "0x" + text
    return to_checksum_address(text.lower())


def keystore_file_name(address: ChecksumAddress, now_ns: int | None = None) -> str:
    """geth's keystore file name: `UTC--2024-05-01T12-00-00.123456789Z--<address hex>`.

    Args:
        address: The account's address.
        now_ns: The creation time in nanoseconds since the epoch (default: now).

    Returns:
        The file name, which sorts in creation order.
    """
    ns = time.time_ns() if now_ns is None else now_ns
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(ns // 1_000_000_000))
    return f"UTC--{stamp}.{ns % 1_000_000_000:09d}Z--{address[2:].lower()}"


def read_keystore(path: Path) -> dict[str, Any]:
    """Reads and checks a keystore file without decrypting it.

    Args:
        path: The file.

    Returns:
        The parsed JSON object.

    Raises:
        KeystoreInvalidError: The file is missing, too large, not JSON or not a v3 keystore.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_KEYSTORE_BYTES + 1)
    except FileNotFoundError as exc:
        raise KeystoreInvalidError(str(path), "the file does not exist") from exc
    except OSError as exc:
        raise KeystoreInvalidError(str(path), f"it cannot be read ({exc.strerror})") from exc
    if len(raw) > MAX_KEYSTORE_BYTES:
        raise KeystoreInvalidError(str(path), "the file is far too large for a keystore")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeystoreInvalidError(str(path), "it is not JSON") from exc
    check_keystore(data, path)
    return data


def check_keystore(data: Any, path: Path) -> None:
    """Checks that a parsed keystore is a v3 keystore whose KDF we will run.

    Args:
        data: The parsed JSON.
        path: Where it came from, for the error message.

    Raises:
        KeystoreInvalidError: Naming the first problem found.
    """

    def bad(reason: str) -> KeystoreInvalidError:
        return KeystoreInvalidError(str(path), reason)

    if not isinstance(data, dict):
        raise bad("it is not a JSON object")
    if data.get("version") != 3:
        raise bad(f"its version is {data.get('version')!r}, not 3")
    # geth once wrote "Crypto"; Go's JSON decoding and eth-keyfile both accept either.
    crypto = data.get("crypto", data.get("Crypto"))
    if not isinstance(crypto, dict):
        raise bad("it has no 'crypto' section")
    if crypto.get("cipher") != "aes-128-ctr":
        raise bad(f"its cipher is {crypto.get('cipher')!r}, not 'aes-128-ctr'")
    params = crypto.get("cipherparams")
    if not isinstance(params, dict) or not _is_hex(params.get("iv"), 16):
        raise bad("its cipherparams.iv is not 16 hex-encoded bytes")
    if not _is_hex(crypto.get("ciphertext"), 32):
        raise bad("its ciphertext is not a hex-encoded 32-byte private key")
    if not _is_hex(crypto.get("mac"), 32):
        raise bad("its mac is not 32 hex-encoded bytes")
    _check_kdf(crypto.get("kdf"), crypto.get("kdfparams"), bad)
    if "address" in data and declared_address(data) is None:
        raise bad(f"its address field {data['address']!r} is not an address")


def _check_kdf(kdf: Any, params: Any, bad: Any) -> None:
    if not isinstance(params, dict):
        raise bad("it has no kdfparams")
    salt, dklen = params.get("salt"), params.get("dklen")
    if not isinstance(salt, str) or not salt or not _is_hex(salt, None):
        raise bad("its KDF salt is not hex")
    if not _is_int(dklen) or not 32 <= dklen <= 64:
        raise bad(f"its KDF dklen is {dklen!r}, not 32")
    if kdf == "scrypt":
        n, r, p = params.get("n"), params.get("r"), params.get("p")
        if not (_is_int(n) and _is_int(r) and _is_int(p)) or n < 2 or r < 1 or p < 1:
            raise bad("its scrypt parameters n, r, p are not positive integers")
        if n & (n - 1):
            raise bad(f"its scrypt n = {n} is not a power of two")
        # scrypt holds the 128*r*N table plus 128*r*p of working blocks.
        if 128 * r * (n + p) > MAX_SCRYPT_MEMORY or p > MAX_SCRYPT_P:
            raise bad(f"its scrypt parameters (n = {n}, r = {r}, p = {p}) would need too much")
    elif kdf == "pbkdf2":
        c = params.get("c")
        if params.get("prf") != "hmac-sha256":
            raise bad(f"its PBKDF2 prf is {params.get('prf')!r}, not 'hmac-sha256'")
        if not _is_int(c) or not 1 <= c <= MAX_PBKDF2_ITERATIONS:
            raise bad(f"its PBKDF2 iteration count {c!r} is out of range")
    else:
        raise bad(f"its KDF is {kdf!r}; only 'scrypt' and 'pbkdf2' are defined")


def declared_address(data: dict[str, Any]) -> ChecksumAddress | None:
    """The address a keystore says it holds (the field is optional in the spec).

    Args:
        data: The parsed keystore.

    Returns:
        The checksummed address, or None when the field is absent or malformed.
    """
    value = data.get("address")
    if not isinstance(value, str):
        return None
    try:
        return parse_address(value)
    except InvalidAddressError:
        return None


def decrypt_keystore(data: dict[str, Any], password: str, path: Path) -> LocalAccount:
    """Opens a checked keystore with its password.

    Args:
        data: A keystore that passed `check_keystore`.
        password: Its password.
        path: Where it came from, for error messages.

    Returns:
        The account, holding the private key in memory only.

    Raises:
        WrongPasswordError: The MAC does not match: the password is wrong (or the
            ciphertext was altered, which the format cannot tell apart).
        KeystoreInvalidError: The file decrypts to a key that is not the address it
            declares, or is otherwise unusable.
    """
    address = declared_address(data)
    try:
        key = Account.decrypt(data, password)
    except EthKeyfileValueError as exc:
        if str(exc) == "MAC mismatch":
            raise WrongPasswordError(address or "this account", str(path)) from None
        raise KeystoreInvalidError(str(path), "eth-account refused it") from None
    except (ValueError, KeyError, TypeError):
        # `from None`: the chained exception could quote key material.
        raise KeystoreInvalidError(str(path), "eth-account could not decrypt it") from None
    try:
        account: LocalAccount = Account.from_key(key)
    except ValueError:
        raise KeystoreInvalidError(str(path), "it decrypts to an invalid private key") from None
    if address is not None and account.address != address:
        raise KeystoreInvalidError(
            str(path), f"it says it holds {address} but its key belongs to {account.address}"
        )
    return account


def encrypt_key(
    key: bytes, password: str, kdf: KdfName = "scrypt", iterations: int | None = None
) -> dict[str, Any]:
    """Encrypts a private key into a keystore (eth-account; geth's defaults for scrypt).

    Args:
        key: The 32-byte private key.
        password: The password that will open it.
        kdf: "scrypt" (the default of geth and MetaMask) or "pbkdf2".
        iterations: scrypt's n or PBKDF2's c; None uses eth-account's defaults
            (n = 2^18, r = 8, p = 1 for scrypt).

    Returns:
        The keystore as a JSON object, with the lowercase `address` field geth writes.
    """
    data = Account.encrypt(key, password, kdf=kdf, iterations=iterations)
    # eth-account writes the address in EIP-55 case; geth writes (and most tools expect)
    # lowercase hex.
    data["address"] = str(data["address"]).lower()
    return data


def write_private_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Writes a file only its owner can read (0600), atomically.

    The bytes go to a temporary file in the same directory, are flushed to disk, and
    the file is renamed into place, so a crash leaves the old file or the new one, never
    half a keystore.

    Args:
        path: The destination; its directory must exist.
        data: The content.
        replace: Whether an existing file may be replaced.

    Raises:
        FileExistsError: `path` exists and `replace` is False.
        KeystoreWriteError: The file system refused the write.
    """
    try:
        atomic_write_bytes(path, data, replace=replace)
    except FileExistsError:
        raise
    except OSError as exc:
        raise KeystoreWriteError(str(path), exc.strerror or str(exc)) from exc


def ensure_private_directory(directory: Path) -> None:
    """Creates a directory only its owner can enter (0700), if it does not exist.

    Args:
        directory: The directory.

    Raises:
        KeystoreWriteError: It cannot be created.
    """
    try:
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode is filtered by the umask; set it outright.
            directory.chmod(0o700)
    except OSError as exc:
        raise KeystoreWriteError(str(directory), exc.strerror or str(exc)) from exc


def _is_hex(value: Any, length: int | None) -> bool:
    if not isinstance(value, str) or len(value) % 2 or not _HEX_RE.match(value):
        return False
    return length is None or len(value) == 2 * length


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
