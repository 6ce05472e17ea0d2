# SPDX-License-Identifier: AGPL-3.0-only
"""From a model package to the bytes a version commits to, and back.

A version's artifact is a deterministic, uncompressed tar of the package's files (the
same package always gives the same bytes, hence the same CID); paid artifacts are
encrypted before they reach the store. Both the artifact and the manifest are imported
as CIDv0 (dag-pb root), so the 32-byte sha256 digest the chain keeps is enough to
rebuild the CID.

Content keys of the models a node sells live beside its store, bound to the model,
version and owner they were stored for, never looked up by CID alone (two models can
commit to the same public digests; only one owner made the key):

    <data dir>/keys/                          mode 0700, like every folder below
    ├── staged/
    │   └── <owner>/
    │       └── <artifact CID>.key            made before the model id exists (publish, upload)
    ├── <chain id>/
    │   └── <registry address>/
    │       └── <model id>/
    │           └── <version>.key             bound once the chain shows that owner published it
    └── <artifact CID>.key                    older layout: read only to migrate (see below)

Each file is mode 0600, written atomically, and holds JSON:
``{"owner": "0x…", "artifact_cid": "Qm…", "key": "<64 hex digits>"}``. Whether a key may
be bound to a version, and used for a sale, is decided in `mercato.client.sale_keys`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from multiformats import CID, multihash
from web3 import Web3

from mercato.crypto import StreamDecryptor
from mercato.crypto.keys import CONTENT_KEY_SIZE
from mercato.errors import (
    ConfigError,
    ContentKeyMissingError,
    DownloadError,
    InvalidKeyMaterialError,
    MercatoError,
)
from mercato.fsutil import atomic_write_bytes
from mercato.models.package import ModelPackage
from mercato.storage.blockstore import Blockstore
from mercato.storage.exporter import iter_file

_SHA2_256 = multihash.get("sha2-256")
_READ_SIZE = 1 << 20


def cid_digest(cid: CID) -> bytes:
    """The 32-byte sha256 digest inside a CID, as the chain stores it."""
    return bytes(multihash.unwrap(bytes(cid.digest)))


def cid_from_digest(digest: bytes) -> CID:
    """The CIDv0 of a dag-pb root whose sha256 digest the chain stores."""
    return CID("base58btc", 0, "dag-pb", _SHA2_256.wrap(bytes(digest)))


Progress = Callable[[int], None]  # called with the number of bytes just processed


def counted(pieces: Iterable[bytes], progress: Progress | None) -> Iterator[bytes]:
    """Passes `pieces` through, reporting each one's size to `progress`."""
    for piece in pieces:
        if progress is not None:
            progress(len(piece))
        yield piece


def package_tar_stream(package: ModelPackage) -> Iterator[bytes]:
    """Streams a deterministic tar of the package: sorted names, zeroed times and owners.

    Written header by header so memory stays constant whatever the file sizes.
    """
    for entry in sorted(package.files, key=lambda f: f.path):
        info = tarfile.TarInfo(entry.path)
        info.size = entry.size
        info.mode = 0o644
        info.mtime = 0
        yield info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8")
        with (package.root / entry.path).open("rb") as data:
            while chunk := data.read(_READ_SIZE):
                yield chunk
        yield bytes(-entry.size % tarfile.BLOCKSIZE)
    yield bytes(2 * tarfile.BLOCKSIZE)  # the end-of-archive marker


def extract_package_tar(tar_path: Path, dest: Path) -> None:
    """Unpacks a downloaded artifact into `dest`, refusing links and paths outside it.

    Raises:
        DownloadError: The archive holds something other than plain files inside `dest`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DownloadError(
            f"The downloaded package cannot be unpacked into {dest}: {exc}."
        ) from exc


def restore_package(
    store: Blockstore,
    artifact_cid: CID,
    key: bytes | None,
    expected_sha256: bytes,
    dest: Path,
    progress: Progress | None = None,
    *,
    private: bool = False,
) -> None:
    """Rebuilds a package directory from its stored artifact, all or nothing.

    The artifact is read block by block with hash checks, decrypted when `key` is given,
    checked against the sha256 the chain commits to, and unpacked; `dest` appears only
    once all of that succeeded.

    Args:
        store: The store holding the artifact's blocks.
        artifact_cid: The artifact.
        key: The content key of a paid model; None for a free one (stored in the clear).
        expected_sha256: The plaintext sha256 the chain commits to.
        dest: The package directory to create (absent or empty).
        progress: Told how many stored bytes were read, as they are.
        private: Make every folder 0700 and every file 0600 before `dest` appears (a
            seller's plaintext copy; a buyer's download keeps the archive's modes).

    Raises:
        BlockNotFoundError: The artifact is not (fully) in the store.
        CryptoError: Wrong key, tampered ciphertext or another plaintext sha256.
        DownloadError: A clear artifact with another sha256, or a package that cannot be unpacked.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mercato-restore-") as tmp:
        tar_path = Path(tmp) / "artifact.tar"
        pieces = counted((bytes(piece) for piece in iter_file(artifact_cid, store)), progress)
        with tar_path.open("wb") as out:
            if key is None:  # a free model is stored in the clear
                digest = hashlib.sha256()
                for piece in pieces:
                    digest.update(piece)
                    out.write(piece)
                if digest.digest() != expected_sha256:
                    raise DownloadError(
                        f"The artifact {artifact_cid} does not match the sha256 the chain "
                        "commits to; nothing was written."
                    )
            else:
                decryptor = StreamDecryptor(key, expected_sha256=expected_sha256)
                for piece in decryptor.decrypt(pieces):
                    out.write(piece)
        unpacked = Path(tmp) / "package"
        extract_package_tar(tar_path, unpacked)
        if private:
            _make_private(unpacked)
        if dest.exists():
            dest.rmdir()  # callers allow only an empty folder here
        os.replace(unpacked, dest)


def _make_private(root: Path) -> None:
    """Owner-only modes on a tree: plaintext model weights are as secret as their key."""
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o700)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o600)


@dataclass(frozen=True)
class StoredKey:
    """A content key and what it was stored for.

    Attributes:
        owner: The checksummed address that stored it (the model's owner at the time).
        artifact_cid: The encrypted artifact the key opens.
        key: The 32-byte content key.
    """

    owner: str
    artifact_cid: CID
    key: bytes = field(repr=False)


class KeyStore:
    """The content keys of the models this node sells (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "keys"

    def stage(self, artifact_cid: CID, key: bytes, owner: str) -> Path:
        """Keeps a new content key for `owner` until the chain names its model.

        Args:
            artifact_cid: The encrypted artifact the key opens.
            key: The 32-byte content key.
            owner: The account that will publish it; only a version this account
                published can ever be bound to the key.

        Returns:
            The file written.

        Raises:
            InvalidKeyMaterialError: `key` is not 32 bytes.
            ConfigError: `owner` is not an address.
            OSError: The key cannot be written; nothing is left behind.
        """
        record = StoredKey(_checksum(owner), artifact_cid, _content_key(key))
        path = self.staged_path(artifact_cid, record.owner)
        self._write(path, record)
        return path

    def bind(
        self, chain_id: int, registry: str, model_id: int, version: int, record: StoredKey
    ) -> Path:
        """Binds a key to one version of one model (callers check the chain first).

        Returns:
            The file written.

        Raises:
            OSError: The key cannot be written; nothing is left behind.
        """
        path = self.bound_path(chain_id, registry, model_id, version)
        self._write(path, record)
        return path

    def load_bound(
        self, chain_id: int, registry: str, model_id: int, version: int
    ) -> StoredKey | None:
        """The key bound to a model version, or None when there is none.

        Raises:
            ContentKeyMissingError: The file exists but is not a key record.
        """
        return self._read(self.bound_path(chain_id, registry, model_id, version))

    def load_staged(self, artifact_cid: CID, owner: str) -> StoredKey | None:
        """The key `owner` staged for an artifact, or None.

        Raises:
            ContentKeyMissingError: The file exists but is not a key record.
        """
        return self._read(self.staged_path(artifact_cid, _checksum(owner)))

    def load_legacy(self, artifact_cid: CID) -> bytes | None:
        """A key of the older layout (one file per artifact CID, no owner), or None."""
        try:
            data = (self.directory / f"{artifact_cid}.key").read_bytes()
        except FileNotFoundError:
            return None
        return data if len(data) == CONTENT_KEY_SIZE else None

    def legacy_files(self) -> list[Path]:
        """The key files of the older layout still in the key directory."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.key") if p.is_file())

    def bound_path(self, chain_id: int, registry: str, model_id: int, version: int) -> Path:
        return (
            self.directory
            / str(int(chain_id))
            / _checksum(registry)
            / str(int(model_id))
            / f"{int(version)}.key"
        )

    def staged_path(self, artifact_cid: CID, owner: str) -> Path:
        return self.directory / "staged" / owner / f"{CID.decode(str(artifact_cid))}.key"

    def _write(self, path: Path, record: StoredKey) -> None:
        private_dirs(self.directory, path.parent)
        document = {
            "owner": record.owner,
            "artifact_cid": str(record.artifact_cid),
            "key": record.key.hex(),
        }
        atomic_write_bytes(path, json.dumps(document).encode())

    @staticmethod
    def _read(path: Path) -> StoredKey | None:
        try:
            document = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ContentKeyMissingError(str(path.stem)) from exc
        try:
            return StoredKey(
                _checksum(document["owner"]),
                CID.decode(document["artifact_cid"]),
                _content_key(bytes.fromhex(document["key"])),
            )
        except (KeyError, TypeError, ValueError, MercatoError) as exc:
            raise ContentKeyMissingError(str(path.stem)) from exc


def _checksum(address: str) -> str:
    if not isinstance(address, str) or not Web3.is_address(address):
        raise ConfigError(f"{address!r} is not an account address.")
    return str(Web3.to_checksum_address(address))


def _content_key(key: bytes) -> bytes:
    key = bytes(key)
    if len(key) != CONTENT_KEY_SIZE:
        raise InvalidKeyMaterialError("content key", CONTENT_KEY_SIZE, len(key))
    return key


def private_dirs(root: Path, leaf: Path) -> None:
    """Creates `leaf` and every folder from `root` down to it with mode 0700."""
    root.parent.mkdir(parents=True, exist_ok=True)
    folders = [root]
    for part in leaf.relative_to(root).parts:
        folders.append(folders[-1] / part)
    for folder in folders:
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)  # made by an older version with the default umask
