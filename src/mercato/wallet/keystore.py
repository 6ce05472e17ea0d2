# SPDX-License-Identifier: AGPL-3.0-only
"""`Wallet`: the accounts of one data directory, as geth-compatible keystore files.

    <data dir>/keystore/                       mode 0700
    ├── UTC--2025-01-31T09-15-02.123456789Z--<address hex>   mode 0600, one per account
    ├── UTC--…--<address hex>
    └── default                                the default account's address, one line

The directory can be handed to geth (`--keystore`) as it is, and any file in it imported
into MetaMask ("Import account" > "JSON file") with its password.

The default account lives in `keystore/default` rather than in the settings file:
settings are a hand-written TOML file that a program should not rewrite (it would drop
the user's comments and layout), and keeping the choice next to the keys means copying
the keystore directory carries it along. The `account` setting (TOML, `MERCATO_ACCOUNT`
or a flag) still wins over it, so one command can act as another account.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress

from mercato.errors import (
    AccountExistsError,
    ExportTargetExistsError,
    InvalidAddressError,
    KeystoreInvalidError,
    KeystoreNotFoundError,
    NoDefaultAccountError,
    PrivateKeyFileError,
)
from mercato.wallet.keyfile import (
    MAX_KEYSTORE_BYTES,
    KdfName,
    check_keystore,
    declared_address,
    decrypt_keystore,
    encrypt_key,
    ensure_private_directory,
    keystore_file_name,
    parse_address,
    read_keystore,
    write_private_file,
)
from mercato.wallet.passwords import PasswordSource, require_new_password

if TYPE_CHECKING:
    from mercato.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_FILE = "default"


def keystore_dir(data_dir: Path) -> Path:
    """Where a data directory keeps its keystores.

    Args:
        data_dir: The data directory.

    Returns:
        `<data_dir>/keystore`.
    """
    return data_dir / "keystore"


@dataclass(frozen=True)
class AccountEntry:
    """One account in the wallet: its address and its keystore file (no secret)."""

    address: ChecksumAddress
    path: Path


class Wallet:
    """The keystore directory of one data directory.

    Example:
        wallet = Wallet.from_settings(load_settings())
        account = wallet.unlock(None, PasswordSource())   # the default account
    """

    def __init__(
        self,
        keystore_dir: Path,
        *,
        preferred_default: str | None = None,
        kdf: KdfName = "scrypt",
        iterations: int | None = None,
    ) -> None:
        """Opens (without creating) a keystore directory.

        Args:
            keystore_dir: The directory, usually `<data dir>/keystore`.
            preferred_default: An address that overrides the stored default (the
                `account` setting), or None.
            kdf: The KDF for keystores this wallet writes: "scrypt" (geth's and
                MetaMask's) or "pbkdf2".
            iterations: The KDF's cost (scrypt n, PBKDF2 c); None keeps eth-account's
                defaults. Lower it only in tests.

        Raises:
            InvalidAddressError: `preferred_default` is not an address.
        """
        self.keystore_dir = keystore_dir
        self._preferred = parse_address(preferred_default) if preferred_default else None
        self._kdf: KdfName = kdf
        self._iterations = iterations

    @classmethod
    def from_settings(cls, settings: Settings) -> Wallet:
        """The wallet of the settings' data directory, honouring the `account` setting.

        Args:
            settings: The settings.

        Returns:
            The wallet.

        Raises:
            InvalidAddressError: The `account` setting is not an address.
        """
        return cls(keystore_dir(settings.data_dir), preferred_default=settings.account)

    def __repr__(self) -> str:
        return f"Wallet({str(self.keystore_dir)!r})"

    # --- adding accounts -----------------------------------------------------------------

    def create(self, password: str | PasswordSource) -> ChecksumAddress:
        """Creates an account with a fresh random key. The first account becomes the default.

        Args:
            password: The new keystore's password, or where to ask for it.

        Returns:
            The new account's address.

        Raises:
            PasswordUnavailableError: No password could be had, or it is empty.
            KeystoreWriteError: The keystore could not be written.
        """
        secret = _new_password(password)
        account = Account.create()
        return self._store(encrypt_key(account.key, secret, self._kdf, self._iterations))

    def import_private_key(
        self, key: bytes | str, password: str | PasswordSource
    ) -> ChecksumAddress:
        """Adds an account from a raw private key, encrypted under a new password.

        Args:
            key: 32 bytes, or 64 hex digits with or without `0x`.
            password: The new keystore's password, or where to ask for it.

        Returns:
            The account's address.

        Raises:
            PrivateKeyFileError: The key is not a valid secp256k1 private key.
            AccountExistsError: The account is already in the wallet.
            PasswordUnavailableError: No password could be had, or it is empty.
            KeystoreWriteError: The keystore could not be written.
        """
        raw = _key_bytes(key, "the key given")
        address = Account.from_key(raw).address
        self._refuse_existing(address)
        secret = _new_password(password)
        return self._store(encrypt_key(raw, secret, self._kdf, self._iterations))

    def import_private_key_file(
        self, path: Path, password: str | PasswordSource
    ) -> ChecksumAddress:
        """Adds an account from a file holding a hex private key (never echoed anywhere).

        Args:
            path: A file with 64 hex digits (optionally `0x`-prefixed) and nothing else.
            password: The new keystore's password, or where to ask for it.

        Returns:
            The account's address.

        Raises:
            PrivateKeyFileError: The file cannot be read or does not hold one key.
            AccountExistsError: The account is already in the wallet.
            PasswordUnavailableError: No password could be had, or it is empty.
            KeystoreWriteError: The keystore could not be written.
        """
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise PrivateKeyFileError(str(path), "the file does not exist") from None
        except (OSError, UnicodeDecodeError):
            # `from None` and no detail: a decode error would quote the file's bytes.
            raise PrivateKeyFileError(str(path), "it cannot be read as text") from None
        return self.import_private_key(_key_bytes(text, str(path)), password)

    def import_keystore(self, path: Path, password: str | PasswordSource) -> ChecksumAddress:
        """Adds an account from a keystore file (geth, MetaMask, MyCrypto, eth-account).

        The file must open with its password before it is copied in, so a typo or a
        corrupt export is caught now rather than at the first purchase. It is stored as
        it is (same password, same KDF), with the `address` field added if it lacks one.

        Args:
            path: The keystore file.
            password: The keystore's password, or where to ask for it.

        Returns:
            The account's address.

        Raises:
            KeystoreInvalidError: The file is not a usable v3 keystore.
            WrongPasswordError: The password does not open it.
            AccountExistsError: The account is already in the wallet.
            PasswordUnavailableError: No password could be had.
            KeystoreWriteError: The keystore could not be written.
        """
        data = read_keystore(path)
        label = declared_address(data) or path.name
        if isinstance(password, PasswordSource):
            password = password.existing(f"Password of keystore {label}")
        account = decrypt_keystore(data, password, path)
        self._refuse_existing(account.address)
        data["address"] = account.address[2:].lower()
        return self._store(data)

    # --- reading and using accounts --------------------------------------------------------

    def list_accounts(self) -> list[AccountEntry]:
        """Every account with a readable keystore file, oldest first (by file name).

        Files that are not keystores (notes, the `default` file, half-written temporary
        files) are skipped, as geth skips them.

        Returns:
            The accounts; empty when the directory does not exist.
        """
        if not self.keystore_dir.is_dir():
            return []
        entries: list[AccountEntry] = []
        seen: set[str] = set()
        for path in sorted(self.keystore_dir.iterdir()):
            if path.name.startswith(".") or path.name == DEFAULT_FILE or not path.is_file():
                continue
            address = _peek_address(path)
            if address is None or address in seen:
                continue
            seen.add(address)
            entries.append(AccountEntry(address, path))
        return entries

    def keystore_path(self, address: str) -> Path:
        """The keystore file of an account.

        Args:
            address: The account's address (any letter case, `0x` optional).

        Returns:
            Its keystore file.

        Raises:
            InvalidAddressError: `address` is not an address.
            KeystoreNotFoundError: The wallet has no keystore for it.
        """
        wanted = parse_address(address)
        for entry in self.list_accounts():
            if entry.address == wanted:
                return entry.path
        # A damaged file is skipped by the listing, but its geth name still says whose it
        # is: hand it back so that reading it reports "damaged", not "missing".
        suffix = "--" + wanted[2:].lower()
        if self.keystore_dir.is_dir():
            for path in sorted(self.keystore_dir.iterdir()):
                if path.name.lower().endswith(suffix) and path.is_file():
                    return path
        raise KeystoreNotFoundError(wanted, str(self.keystore_dir))

    def unlock(self, address: str | None, password: str | PasswordSource) -> LocalAccount:
        """Decrypts an account's key into memory, ready to sign.

        Args:
            address: The account, or None for the default account.
            password: Its password, or where to ask for it.

        Returns:
            The account (eth-account's `LocalAccount`; its repr does not show the key).

        Raises:
            InvalidAddressError: `address` is not an address.
            NoDefaultAccountError: `address` is None and no default account is set.
            KeystoreNotFoundError: The wallet has no keystore for the account.
            KeystoreInvalidError: Its keystore file is damaged.
            WrongPasswordError: The password does not open it.
            PasswordUnavailableError: No password could be had.
        """
        wanted = self.resolve(address)
        path = self.keystore_path(wanted)
        data = read_keystore(path)
        if isinstance(password, PasswordSource):
            password = password.existing(f"Password for {wanted}")
        return decrypt_keystore(data, password, path)

    def export_keystore(self, address: str, dest: Path) -> Path:
        """Copies an account's keystore (still encrypted) out, e.g. for MetaMask or geth.

        Args:
            address: The account.
            dest: A file to create, or an existing directory to put the file in under
                its geth name.

        Returns:
            The file written (mode 0600).

        Raises:
            InvalidAddressError: `address` is not an address.
            KeystoreNotFoundError: The wallet has no keystore for the account.
            ExportTargetExistsError: `dest` (or the file in it) already exists.
            KeystoreWriteError: The file could not be written.
        """
        source = self.keystore_path(address)
        target = dest / source.name if dest.is_dir() else dest
        if target.exists():
            raise ExportTargetExistsError(str(target))
        data = read_keystore(source)
        try:
            write_private_file(target, _encode(data))
        except FileExistsError:
            raise ExportTargetExistsError(str(target)) from None
        return target

    # --- the default account -----------------------------------------------------------------

    def default_account(self) -> ChecksumAddress | None:
        """The account used when none is named.

        The `account` setting if given; else the address in `keystore/default`; else the
        only account, when there is exactly one.

        Returns:
            The address, or None when there is no way to choose.
        """
        if self._preferred is not None:
            return self._preferred
        stored = self._stored_default()
        if stored is not None:
            return stored
        accounts = self.list_accounts()
        return accounts[0].address if len(accounts) == 1 else None

    def set_default(self, address: str) -> ChecksumAddress:
        """Makes an account the default one (kept in `keystore/default`).

        Args:
            address: The account; it must be in the wallet.

        Returns:
            The checksummed address.

        Raises:
            InvalidAddressError: `address` is not an address.
            KeystoreNotFoundError: The wallet has no keystore for it.
            KeystoreWriteError: The file could not be written.
        """
        wanted = parse_address(address)
        self.keystore_path(wanted)
        write_private_file(self.keystore_dir / DEFAULT_FILE, f"{wanted}\n".encode(), replace=True)
        return wanted

    def resolve(self, address: str | None) -> ChecksumAddress:
        """The address to act as: the one given, else the default account.

        Args:
            address: An address, or None.

        Returns:
            The checksummed address.

        Raises:
            InvalidAddressError: `address` is not an address.
            NoDefaultAccountError: `address` is None and no default account is set.
        """
        if address is not None:
            return parse_address(address)
        chosen = self.default_account()
        if chosen is None:
            raise NoDefaultAccountError(str(self.keystore_dir), len(self.list_accounts()))
        return chosen

    # --- internals -------------------------------------------------------------------------

    def _store(self, data: dict[str, object]) -> ChecksumAddress:
        address = parse_address(str(data["address"]))
        self._refuse_existing(address)
        ensure_private_directory(self.keystore_dir)
        path = self.keystore_dir / keystore_file_name(address)
        try:
            write_private_file(path, _encode(data))
        except FileExistsError:
            raise AccountExistsError(address, str(path)) from None
        if self._stored_default() is None:
            self.set_default(address)
        return address

    def _refuse_existing(self, address: ChecksumAddress) -> None:
        try:
            existing = self.keystore_path(address)
        except KeystoreNotFoundError:
            return
        raise AccountExistsError(address, str(existing))

    def _stored_default(self) -> ChecksumAddress | None:
        path = self.keystore_dir / DEFAULT_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            logger.warning("cannot read %s; ignoring the stored default account", path)
            return None
        try:
            return parse_address(text)
        except InvalidAddressError:
            logger.warning("%s does not hold an address; ignoring it", path)
            return None


def _new_password(password: str | PasswordSource) -> str:
    if isinstance(password, PasswordSource):
        return password.new()
    # Same rule for callers that pass a string: an empty password protects nothing.
    return require_new_password(password)


def _key_bytes(key: bytes | str, where: str) -> bytes:
    if isinstance(key, bytes):
        raw = key
    else:
        text = key.strip()
        text = text[2:] if text[:2] in ("0x", "0X") else text
        if len(text) != 64:
            raise PrivateKeyFileError(where, "it is not 64 hex digits")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise PrivateKeyFileError(where, "it holds characters that are not hex") from None
    if len(raw) != 32:
        raise PrivateKeyFileError(where, "a private key is 32 bytes")
    try:
        Account.from_key(raw)
    except ValueError:
        raise PrivateKeyFileError(where, "the number is outside the secp256k1 range") from None
    return raw


def _peek_address(path: Path) -> ChecksumAddress | None:
    # Listing must not run the KDF, so it trusts the address field; unlock checks it.
    try:
        if path.stat().st_size > MAX_KEYSTORE_BYTES:
            return None
        data = json.loads(path.read_bytes())
        check_keystore(data, path)
    except (OSError, ValueError, KeystoreInvalidError):
        logger.debug("skipping %s: not a keystore", path)
        return None
    return declared_address(data)


def _encode(data: dict[str, object]) -> bytes:
    return json.dumps(data, indent=None, separators=(",", ":")).encode()
