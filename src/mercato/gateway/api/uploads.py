# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/uploads`: a creator's browser hands a model package to this node.

The node validates the package, stores it (encrypted under a fresh content key when
the model will be paid; the key stays in this node's key store so its agent can
deliver it) and answers with the three digests the creator's wallet then commits in
`Marketplace.publish`. The node never signs for the creator.

Files arrive as JSON (`{"name", "files": [{"path", "data"}], "encrypt"}`, data in
base64), so the page needs no multipart parser; a package is capped at 16 MiB here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from mercato.client.artifacts import cid_digest, package_tar_stream
from mercato.crypto import StreamEncryptor, generate_content_key
from mercato.errors import UploadError
from mercato.gateway.api.schemas import ErrorOut
from mercato.gateway.dependencies import RequiredSession, State
from mercato.gateway.state import GatewayState
from mercato.models.package import load_package
from mercato.storage.unixfs import import_file

router = APIRouter(
    prefix="/v1/uploads",
    tags=["uploads"],
    responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
MAX_UPLOAD = 16 * 1024 * 1024  # bytes of files in one package
MAX_FILES = 32


class UploadFile(BaseModel):
    path: str
    data: str  # base64


class UploadIn(BaseModel):
    name: str
    files: list[UploadFile]
    encrypt: bool


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


def _write_files(body: UploadIn, root: Path) -> None:
    if not body.files or len(body.files) > MAX_FILES:
        raise UploadError(f"send between 1 and {MAX_FILES} files")
    total = 0
    for item in body.files:
        relative = PurePosixPath(item.path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise UploadError(f"the path {item.path!r} leaves the package")
        try:
            data = base64.b64decode(item.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UploadError(f"{item.path} is not base64") from exc
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
        UploadError: A path leaves the package, a file is not base64, or it is too big.
        ModelPackageError: The package is invalid (not ONNX, no card, no license...).
    """
    market = state.market
    with tempfile.TemporaryDirectory(prefix="mercato-upload-") as tmp:
        root = Path(tmp) / "package"
        root.mkdir()
        _write_files(body, root)
        package = load_package(root, name=body.name)
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
    )


@router.post("", response_model=UploadOut)
async def upload(body: UploadIn, session: RequiredSession, state: State) -> UploadOut:
    """Stores a model package for the signed-in creator and returns what to publish."""
    # Only signed-in wallets may fill this node's store, and a key serves only its uploader.
    return await run_in_threadpool(store_upload, state, body, session.address)
