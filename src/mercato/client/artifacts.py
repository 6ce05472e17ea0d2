# SPDX-License-Identifier: AGPL-3.0-only
"""From a model package to the bytes a version commits to, and back.

A version's artifact is a deterministic, uncompressed tar of the package's files (the
same package always gives the same bytes, hence the same CID); paid artifacts are
encrypted before they reach the store. Both the artifact and the manifest are imported
as CIDv0 (dag-pb root), so the 32-byte sha256 digest the chain keeps is enough to
rebuild the CID.

Content keys of the models a node sells live beside its store:

    <data dir>/keys/
    └── <artifact CID>.key     32 raw bytes, mode 0600
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from multiformats import CID, multihash

from mercato.crypto import StreamDecryptor
from mercato.errors import ContentKeyMissingError, DownloadError
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
        if dest.exists():
            dest.rmdir()  # callers allow only an empty folder here
        os.replace(unpacked, dest)


class KeyStore:
    """The content keys of the models this node sells (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / "keys"

    def save(self, artifact_cid: CID, key: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write_bytes(self.directory / f"{artifact_cid}.key", key)

    def load(self, artifact_cid: CID) -> bytes:
        """Raises: ContentKeyMissingError: this node does not hold the key."""
        path = self.directory / f"{artifact_cid}.key"
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ContentKeyMissingError(str(artifact_cid)) from exc
