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
    └── <artifact CID>.key                    older layout: only migrated (see sale_keys)

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
from pathlib import Path, PurePosixPath

from multiformats import CID, multihash
from web3 import Web3

from mercato.crypto import DEFAULT_CHUNK_SIZE, StreamDecryptor, ciphertext_size
from mercato.crypto.keys import CONTENT_KEY_SIZE
from mercato.errors import (
    ArtifactTooLargeError,
    ConfigError,
    ContentKeyMissingError,
    DownloadError,
    InvalidKeyMaterialError,
    MercatoError,
    UnsafeArchiveError,
)
from mercato.fsutil import atomic_write_bytes
from mercato.models.package import ModelPackage
from mercato.models.validate import PackageLimits
from mercato.storage.blockstore import Blockstore
from mercato.storage.exporter import declared_size, iter_file

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


MAX_ARCHIVE_MEMBERS = 2 * PackageLimits().max_files
"""Members (files and folders) a package archive may hold; a published one has one per file."""

_MAX_META_HEADER = 64 * 1024  # a pax or GNU long-name record: a path, a few fields


def tar_size_limit(total_size: int, files: int) -> int:
    """The most bytes `package_tar_stream` writes for files adding up to `total_size`.

    Each file takes its bytes rounded up to 512, one header and at most two more for a
    long or non-ASCII name (pax); the archive ends with two zero blocks.
    """
    return total_size + files * 4 * tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE


def artifact_size_limit(total_size: int, files: int, *, encrypted: bool) -> int:
    """The most bytes a version's artifact may hold for a package of that size.

    Args:
        total_size: The package's bytes (the manifest's `total_size`).
        files: How many files it has (the manifest's `files`).
        encrypted: The artifact is encrypted (a paid model).

    Returns:
        The limit, in stored (artifact) bytes.
    """
    tar = tar_size_limit(total_size, files)
    # The smallest chunk size Mercato encrypts with has the most overhead per byte.
    return ciphertext_size(tar, DEFAULT_CHUNK_SIZE) if encrypted else tar


MAX_ARTIFACT_BYTES = artifact_size_limit(
    PackageLimits().max_total_bytes, PackageLimits().max_files, encrypted=True
)
"""Whatever a manifest says, no artifact above this is restored (the largest package)."""


def extract_package_tar(
    tar_path: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_ARTIFACT_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
) -> None:
    """Unpacks a package archive into `dest`: plain files and folders only, bounded.

    Refused, before anything is written: links, devices, FIFOs, sparse files, absolute
    paths and `..`, more than `max_members` members, pax or long-name records above
    64 KiB. Refused while writing: more than `max_bytes` bytes in all (counted as they
    are copied, whatever the headers say).

    Args:
        tar_path: The archive (restored and checked against the chain's sha256).
        dest: The folder to unpack into (created; callers pass a fresh one).
        max_bytes: The most bytes all files together may hold.
        max_members: The most members the archive may have.

    Raises:
        UnsafeArchiveError: A member is not a plain file or folder inside `dest`, or the
            archive has too many members or an oversized header record.
        ArtifactTooLargeError: The files add up to more than `max_bytes`.
        DownloadError: The archive is malformed or cannot be written.
    """
    members = _scan_tar_headers(tar_path, max_members)
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > members:
                    raise UnsafeArchiveError(
                        f"The package archive has more members than its headers showed "
                        f"({member.name!r}); nothing was kept.",
                        member=member.name,
                    )
                target = dest / _safe_member_path(member)
                if member.isdir():
                    target.mkdir(mode=0o755, parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise UnsafeArchiveError(
                        f"{member.name!r} in the package archive has no data.", member=member.name
                    )
                mode = 0o755 if member.mode & 0o100 else 0o644
                with source, open(target, "wb") as out:
                    while chunk := source.read(_READ_SIZE):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ArtifactTooLargeError(
                                f"The package archive unpacks to more than {max_bytes} bytes, "
                                "more than its manifest allows; nothing was kept.",
                                cid="",
                                size=written,
                                limit=max_bytes,
                            )
                        out.write(chunk)
                os.chmod(target, mode)
    except (tarfile.TarError, OSError) as exc:
        raise DownloadError(
            f"The downloaded package cannot be unpacked into {dest}: {exc}."
        ) from exc


def _safe_member_path(member: tarfile.TarInfo) -> Path:
    """The member's path inside the package, or why it is refused."""
    name = member.name
    if not (member.isreg() or member.isdir()) or member.issparse():
        kind = "a link" if member.issym() or member.islnk() else "not a plain file"
        raise UnsafeArchiveError(
            f"{name!r} in the package archive is {kind}; packages hold only files and "
            "folders, so nothing was unpacked.",
            member=name,
        )
    parts = PurePosixPath(name).parts
    if (
        not parts
        or name.startswith(("/", "\\"))
        or "\x00" in name
        or "\\" in name
        or any(part in ("..", "") for part in parts)
        or (len(parts[0]) >= 2 and parts[0][1] == ":")  # a drive letter
    ):
        raise UnsafeArchiveError(
            f"{name!r} in the package archive points outside the package; nothing was unpacked.",
            member=name,
        )
    return Path(*parts)


def _tar_number(field: bytes) -> int:
    """A tar header number: NUL/space-ended octal, or GNU base-256 (first byte 0x80/0xff).

    Raises:
        DownloadError: The field is neither.
    """
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * (len(field) - 1))) if field[:1] == b"\xff" else value
    text = field.split(b"\x00", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise DownloadError(
            "The package archive has a malformed header (a size that is not a number)."
        ) from None


def _scan_tar_headers(tar_path: Path, max_members: int) -> int:
    """Walk the archive's 512-byte headers without reading data: count the members and
    refuse oversized meta records, which `tarfile` would read whole into memory.

    Returns:
        How many members (not counting pax and long-name records) the archive has.

    Raises:
        UnsafeArchiveError: Too many members or an oversized meta record.
        DownloadError: A header is malformed.
    """
    members = 0
    with tar_path.open("rb") as fh:
        while True:
            header = fh.read(tarfile.BLOCKSIZE)
            if len(header) < tarfile.BLOCKSIZE or header == bytes(tarfile.BLOCKSIZE):
                return members
            size = _tar_number(header[124:136])
            kind = header[156:157]
            if kind in (b"x", b"g", b"L", b"K"):
                if size > _MAX_META_HEADER:
                    raise UnsafeArchiveError(
                        f"The package archive has a {size}-byte header record; nothing was "
                        "unpacked.",
                        member="",
                    )
            else:
                members += 1
                if members > max_members:
                    raise UnsafeArchiveError(
                        f"The package archive has more than {max_members} members; nothing "
                        "was unpacked.",
                        member="",
                    )
            if size < 0:
                raise DownloadError("The package archive has a header with a negative size.")
            fh.seek(-(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE, os.SEEK_CUR)


def restore_package(
    store: Blockstore,
    artifact_cid: CID,
    key: bytes | None,
    expected_sha256: bytes,
    dest: Path,
    progress: Progress | None = None,
    *,
    private: bool = False,
    max_size: int | None = None,
) -> None:
    """Rebuilds a package directory from its stored artifact, all or nothing.

    The artifact is read block by block with hash checks, decrypted when `key` is given,
    checked against the sha256 the chain commits to, and unpacked; `dest` appears only
    once all of that succeeded. Before a byte is written, the size the artifact's root
    declares must fit `max_size` and MAX_ARTIFACT_BYTES; the read then never passes it
    (each DAG node is checked against its parent's claim before it streams), and the
    unpacking is bounded the same way (see `extract_package_tar`).

    Args:
        store: The store holding the artifact's blocks.
        artifact_cid: The artifact.
        key: The content key of a paid model; None for a free one (stored in the clear).
        expected_sha256: The plaintext sha256 the chain commits to.
        dest: The package directory to create (absent or empty).
        progress: Told how many stored bytes were read, as they are.
        private: Make every folder 0700 and every file 0600 before `dest` appears (a
            seller's plaintext copy; a buyer's download keeps the archive's modes).
        max_size: The most bytes the artifact may hold (`artifact_size_limit` of what
            the version's manifest declares); MAX_ARTIFACT_BYTES caps it.

    Raises:
        BlockNotFoundError: The artifact is not (fully) in the store.
        CryptoError: Wrong key, tampered ciphertext or another plaintext sha256.
        ArtifactTooLargeError: The artifact declares more than the limit allows.
        UnsafeArchiveError: The package holds links, devices, paths outside it, or too
            many members.
        DagFormatError: The artifact's DAG is malformed or its sizes disagree.
        DownloadError: A clear artifact with another sha256, or a package that cannot be unpacked.
    """
    limit = min(max_size if max_size is not None else MAX_ARTIFACT_BYTES, MAX_ARTIFACT_BYTES)
    size = declared_size(artifact_cid, store)
    if size > limit:
        raise ArtifactTooLargeError(
            f"The artifact {artifact_cid} declares {size} bytes, more than the {limit} its "
            "manifest and this node allow; nothing was written.",
            cid=str(artifact_cid),
            size=size,
            limit=limit,
        )
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
        extract_package_tar(tar_path, unpacked, max_bytes=size)
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
