# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/uploads`: a creator's browser hands a model package to this node.

The node validates the package, stores it (encrypted under a fresh content key when
the model will be paid; the key stays in this node's key store so its agent can
deliver it) and answers with the three digests the creator's wallet then commits in
`Marketplace.publish`. The node never signs for the creator.

Files arrive as JSON (`{"name", "files": [{"path", "data"}], "encrypt"}`, data in
base64), so the page needs no multipart parser; a package is capped at 16 MiB here.
Uploads are limited per client address and per wallet (`state.UPLOADS_PER_HOUR`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mercato.chain.contracts import MAX_PRICE
from mercato.client.artifacts import cid_digest, package_tar_stream
from mercato.client.license_terms import page_terms_digest
from mercato.client.token_metadata import store_token_metadata
from mercato.crypto import StreamEncryptor, generate_content_key
from mercato.errors import RateLimitedError, UploadError, UploadPathError
from mercato.gateway.api.schemas import ErrorOut
from mercato.gateway.dependencies import RequiredSession, State
from mercato.gateway.state import GatewayState
from mercato.models.card import require_buyer_sections
from mercato.models.package import load_package
from mercato.storage.unixfs import import_file

router = APIRouter(
    prefix="/v1/uploads",
    tags=["uploads"],
    responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
MAX_UPLOAD = 16 * 1024 * 1024  # bytes of files in one package
MAX_FILES = 32
# Below every common file system's limits, so a name is refused here, not by the OS.
MAX_PATH_BYTES = 1024
MAX_PATH_PARTS = 32
MAX_NAME_BYTES = 255


class UploadFile(BaseModel):
    path: str
    data: str  # base64


class UploadIn(BaseModel):
    name: str
    files: list[UploadFile]
    encrypt: bool
    # The price the creator will list at, in base units: the ERC-721 metadata shows it.
    price: int = Field(default=0, ge=0, le=MAX_PRICE)


class UploadOut(BaseModel):
    name: str
    artifact_cid: str
    manifest_cid: str
    artifact_cid_digest: str
    plaintext_sha256: str
    manifest_cid_digest: str
    encrypted: bool
    inputs: list[dict[str, object]]
    outputs: list[dict[str, object]]
    terms_digest: str  # the card's licence terms, which the listing commits to
    metadata_digest: str  # the ERC-721 metadata document tokenURI will name


def upload_path(text: str) -> PurePosixPath:
    """A file path from an upload, if it is a plain relative path inside the package.

    Raises:
        UploadPathError: The path is empty, absolute, climbs out with '..', holds a NUL,
            control character or backslash, or is too long for a file system.
    """
    if not text or text.strip("/.") == "":
        raise UploadPathError(text, "is empty")
    try:
        encoded = text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate, which JSON's \u escapes allow
        raise UploadPathError(text, "is not valid Unicode text") from exc
    if len(encoded) > MAX_PATH_BYTES:
        raise UploadPathError(text, f"is longer than {MAX_PATH_BYTES} bytes")
    if "\0" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise UploadPathError(text, "holds a NUL or control character")
    if "\\" in text:
        raise UploadPathError(text, "holds a backslash (use '/' between folders)")
    if text.startswith("/"):
        raise UploadPathError(text, "is absolute")
    relative = PurePosixPath(text)
    if ".." in relative.parts:
        raise UploadPathError(text, "leaves the package ('..')")
    if len(relative.parts) > MAX_PATH_PARTS:
        raise UploadPathError(text, f"is more than {MAX_PATH_PARTS} folders deep")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in relative.parts):
        raise UploadPathError(text, f"has a name longer than {MAX_NAME_BYTES} bytes")
    return relative


def _package_paths(body: UploadIn) -> list[PurePosixPath]:
    """Every file's path, checked before anything is written."""
    paths = [upload_path(item.path) for item in body.files]
    files = {str(p) for p in paths}
    folders = {str(parent) for p in paths for parent in p.parents if str(parent) != "."}
    if len(files) != len(paths):
        raise UploadPathError(next(str(p) for p in paths if paths.count(p) > 1), "is sent twice")
    clash = files & folders
    if clash:
        raise UploadPathError(min(clash), "names both a file and a folder")
    return paths


def _write_files(body: UploadIn, root: Path) -> None:
    if not body.files or len(body.files) > MAX_FILES:
        raise UploadError(f"send between 1 and {MAX_FILES} files")
    total = 0
    for item, relative in zip(body.files, _package_paths(body), strict=True):
        try:
            data = base64.b64decode(item.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UploadError(f"{str(relative)[:80]!r} is not base64") from exc
        total += len(data)
        if total > MAX_UPLOAD:
            raise UploadError("the package is over 16 MiB; publish it with the command line")
        target = root.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _hashing(pieces: Iterator[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for piece in pieces:
        digest.update(piece)
        yield piece


def store_upload(state: GatewayState, body: UploadIn, owner: str) -> UploadOut:
    """Validates and stores an uploaded package (see the module docstring).

    The content key is staged for `owner`, the signed-in wallet: this node's agent binds
    it only to a version that wallet itself publishes (see `mercato.client.sale_keys`).

    Raises:
        UploadPathError: A file path is not a plain relative path inside the package.
        UploadError: A file is not base64, or the package is too big.
        ModelPackageError: The package is invalid (not ONNX, no card, no license...).
    """
    market = state.market
    with tempfile.TemporaryDirectory(prefix="mercato-upload-") as tmp:
        root = Path(tmp) / "package"
        root.mkdir()
        _write_files(body, root)
        package = load_package(root, name=body.name)
        if body.price > 0 or body.encrypt:
            # A buyer must be able to read what the model is for and where it fails,
            # before paying: as the command line and the SDK refuse.
            require_buyer_sections(package.card)
        store = market.store
        manifest = import_file([package.manifest_bytes()], store)
        if body.encrypt:
            key = generate_content_key()
            encryptor = StreamEncryptor(key)
            artifact = import_file(encryptor.encrypt(package_tar_stream(package)), store)
            sha256 = encryptor.result.plaintext_sha256 if encryptor.result else b""
            market.keys.stage(artifact.cid, key, owner)
        else:
            digest = hashlib.sha256()
            artifact = import_file(_hashing(package_tar_stream(package), digest), store)
            sha256 = digest.digest()
        document = package.manifest
        metadata = store_token_metadata(
            store, document, price=body.price, version=1, artifact_cid=artifact.cid
        )
    return UploadOut(
        name=body.name,
        artifact_cid=str(artifact.cid),
        manifest_cid=str(manifest.cid),
        artifact_cid_digest=cid_digest(artifact.cid).hex(),
        plaintext_sha256=sha256.hex(),
        manifest_cid_digest=cid_digest(manifest.cid).hex(),
        encrypted=body.encrypt,
        inputs=list(document.get("inputs", [])),
        outputs=list(document.get("outputs", [])),
        terms_digest=page_terms_digest(document).removeprefix("0x"),
        metadata_digest=metadata.hex(),
    )


@router.post("", response_model=UploadOut, responses={429: {"model": ErrorOut}})
async def upload(
    body: UploadIn, request: Request, session: RequiredSession, state: State
) -> UploadOut:
    """Stores a model package for the signed-in creator and returns what to publish."""
    client = request.client.host if request.client else "unknown"
    wait = state.uploads_by_address.allow(client) or state.uploads_by_wallet.allow(
        session.address.lower()
    )
    if wait:
        raise RateLimitedError("uploads", wait)
    # Only signed-in wallets may fill this node's store, and a key serves only its uploader.
    return await run_in_threadpool(store_upload, state, body, session.address)
