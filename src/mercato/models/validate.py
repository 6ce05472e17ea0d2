# SPDX-License-Identifier: AGPL-3.0-only
"""Validate a model package before Mercato builds a manifest for it or runs it.

A package is a directory::

    my-model/
    ├── README.md            model card: YAML front matter (license, tags...) + text
    ├── model.onnx           the runnable entry
    ├── model.onnx.data      external tensor data the entry points to (optional)
    └── ...                  extra files (safetensors, configs, images), never run

Checks, in order: the walk (no symlink out of the package, size and count limits), the
card, every file's format (no pickles or code), the ONNX entry's external-data
locations (confined to the package), then `onnx.checker` with `full_check=True`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import onnx
from google.protobuf.message import DecodeError
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from mercato.errors import ModelLicenseError, ModelTooLargeError, OnnxModelError, PackagePathError
from mercato.models.card import CARD_FILENAME, MAX_LICENSE_TEXT, ModelCard, load_card
from mercato.models.formats import check_file
from mercato.models.hub_fields import is_package_path
from mercato.models.licenses import OTHER

# Directories a checkout may carry that are never part of the model.
_SKIPPED_DIRS = {".git"}
# Where the Hub asks for a custom licence's text (`license: other`), besides license_link.
LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt")


@dataclass(frozen=True)
class PackageLimits:
    """Size limits a package must meet.

    Attributes:
        max_total_bytes: All files together.
        max_file_bytes: Any one file.
        max_files: How many files.
    """

    max_total_bytes: int = 4 * 1024**3
    max_file_bytes: int = 4 * 1024**3
    max_files: int = 256


@dataclass(frozen=True)
class PackageFile:
    """One file of a package, as the manifest lists it.

    Attributes:
        path: POSIX path relative to the package root.
        size: Size in bytes.
        sha256: Hex SHA-256 of the contents.
        role: `model` (the ONNX entry), `external_data`, `card` or `extra`.
    """

    path: str
    size: int
    sha256: str
    role: str


@dataclass(frozen=True)
class ValidatedPackage:
    """A package that passed every check.

    Attributes:
        root: The package directory.
        entry: The ONNX entry's path relative to `root`.
        card: The parsed model card.
        files: Every file, sorted by path.
        model: The ONNX model, loaded without its external data.
    """

    root: Path
    entry: str
    card: ModelCard
    files: tuple[PackageFile, ...]
    model: onnx.ModelProto


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _inside(root: Path, target: Path) -> bool:
    return target == root or root in target.parents


def walk_package(root: Path, limits: PackageLimits) -> list[str]:
    """List a package's files, refusing symlinks out of it and oversize content.

    Args:
        root: The package directory.
        limits: Size and count limits.

    Returns:
        POSIX paths relative to `root`, sorted.

    Raises:
        PackagePathError: `root` is not a directory, or a symlink leads out of it or
            to something other than a regular file.
        ModelTooLargeError: a file, the total or the file count is over its limit.
    """
    if not root.is_dir():
        raise PackagePathError(
            f"{root} is not a directory. A model package is a directory with the .onnx "
            f"file and a {CARD_FILENAME} model card.",
            path=str(root),
            location=str(root),
        )
    real_root = root.resolve()
    found: list[str] = []
    total = 0
    for current, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(current)
        for name in list(dirnames):
            if name in _SKIPPED_DIRS and here == root:
                dirnames.remove(name)
            elif (here / name).is_symlink():
                rel = (here / name).relative_to(root).as_posix()
                raise PackagePathError(
                    f"{rel} is a symlink to a directory; packages may not link "
                    "directories. Copy the files in instead.",
                    path=rel,
                    location=os.readlink(here / name),
                )
        for name in filenames:
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = path.resolve()
                if not _inside(real_root, target) or not target.is_file():
                    raise PackagePathError(
                        f"{rel} is a symlink that leads out of the package "
                        f"({os.readlink(path)}). Copy the file into the package instead.",
                        path=rel,
                        location=os.readlink(path),
                    )
            size = path.stat().st_size
            if size > limits.max_file_bytes:
                raise ModelTooLargeError(
                    f"{rel} is {size} bytes, over the {limits.max_file_bytes}-byte limit "
                    "for one file. Quantize or prune the model, or split tensors into "
                    "several external-data files.",
                    path=rel,
                    size=size,
                    limit=limits.max_file_bytes,
                )
            total += size
            found.append(rel)
    if len(found) > limits.max_files:
        raise ModelTooLargeError(
            f"The package has {len(found)} files, over the limit of {limits.max_files}. "
            "Keep tensors in fewer external-data files and remove files the model "
            "does not need.",
            path=str(root),
            size=len(found),
            limit=limits.max_files,
        )
    if total > limits.max_total_bytes:
        raise ModelTooLargeError(
            f"The package holds {total} bytes, over the {limits.max_total_bytes}-byte "
            "limit. Quantize or prune the model, or remove extra files.",
            path=str(root),
            size=total,
            limit=limits.max_total_bytes,
        )
    return sorted(found)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    # Initializers and tensor attributes, including those of subgraphs (Loop, If, Scan).
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def model_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Yield every tensor stored in a model: initializers, attributes, subgraphs, functions.

    Args:
        model: The model.

    Returns:
        An iterator over the tensors.
    """
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors


def check_external_data(model: onnx.ModelProto, root: Path, entry: str) -> list[str]:
    """Check that every external-data location stays inside the package.

    Args:
        model: The entry, loaded without external data.
        root: The package directory.
        entry: The entry's path relative to `root`; locations are relative to its folder.

    Returns:
        The referenced files, as POSIX paths relative to `root`, sorted.

    Raises:
        PackagePathError: a location is absolute, has `..`, leaves the package through
            a symlink, does not exist, or the tensor's bytes run past the file's end.
    """
    base = (root / entry).parent
    real_root = root.resolve()
    referenced: set[str] = set()
    for tensor in model_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        location = str(info.location)
        pure = PurePosixPath(location)
        if (
            not location
            or pure.is_absolute()
            or "\\" in location
            or ":" in location
            or ".." in pure.parts
        ):
            raise PackagePathError(
                f"Tensor {tensor.name!r} keeps its data at {location!r}, outside the "
                "package. External data must be a relative path inside the package "
                "directory without '..'; save with onnx.save_model(..., "
                "save_as_external_data=True, location='model.onnx.data').",
                path=entry,
                location=location,
            )
        target = base / location
        if not _inside(real_root, target.resolve()) or not target.is_file():
            raise PackagePathError(
                f"Tensor {tensor.name!r} keeps its data at {location!r}, which is missing "
                "or leads out of the package. Put the file in the package directory.",
                path=entry,
                location=location,
            )
        size = target.stat().st_size
        offset = int(info.offset or 0)
        length = int(info.length) if info.length is not None else size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise PackagePathError(
                f"Tensor {tensor.name!r} reads bytes {offset}..{offset + length} of "
                f"{location!r}, which has only {size}. Re-save the model's external data.",
                path=entry,
                location=location,
            )
        referenced.add(target.resolve().relative_to(real_root).as_posix())
    return sorted(referenced)


def load_onnx(path: Path, entry: str) -> onnx.ModelProto:
    """Parse the entry's protobuf without loading external data.

    Args:
        path: The ONNX file.
        entry: Its path inside the package, for messages.

    Returns:
        The model.

    Raises:
        OnnxModelError: the file does not parse as an ONNX model.
    """
    try:
        return onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise OnnxModelError(
            f"{entry} is not a valid ONNX model ({exc}). Export it again with your "
            "framework's ONNX exporter (see docs/models.md).",
            path=entry,
        ) from exc


def check_onnx(path: Path, entry: str) -> None:
    """Run `onnx.checker` with `full_check=True` (strict shape inference included).

    Args:
        path: The ONNX file; its external data is resolved next to it.
        entry: Its path inside the package, for messages.

    Raises:
        OnnxModelError: the checker or shape inference rejects the model.
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
        raise OnnxModelError(
            f"{entry} fails ONNX validation: {first_line}. Fix the export (a supported "
            "opset, consistent shapes) and check it with onnx.checker.check_model("
            "path, full_check=True).",
            path=entry,
        ) from exc


def find_entry(files: list[str], root: Path) -> str:
    """Pick the package's ONNX entry: the one `.onnx` file.

    Args:
        files: The package's files.
        root: The package directory, for messages.

    Returns:
        The entry's relative path.

    Raises:
        OnnxModelError: there is no `.onnx` file, or more than one.
    """
    candidates = [name for name in files if name.lower().endswith(".onnx")]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise OnnxModelError(
            f"{root} has no .onnx file. Mercato runs ONNX models only: export yours with "
            "torch.onnx.export, tf2onnx or skl2onnx (see docs/models.md).",
            path=str(root),
        )
    raise OnnxModelError(
        f"{root} has several .onnx files ({', '.join(candidates)}). Name the runnable "
        "one explicitly (entry=...).",
        path=str(root),
    )


def custom_license_text(card: ModelCard, files: list[str], root: Path) -> ModelCard:
    """Read a custom licence's text (`license: other`) from the package into the card.

    The text goes into the public manifest, so a buyer reads the terms before paying
    even when the package itself is encrypted.

    Args:
        card: The parsed card.
        files: The package's files.
        root: The package directory.

    Returns:
        The card, with `license_text` when the licence is `other` and its file is here.

    Raises:
        ModelLicenseError: `license: other` with neither a licence file nor an http(s)
            `license_link`; `license_link` names a file the package lacks; or the text
            is not UTF-8 or over `MAX_LICENSE_TEXT` characters.
    """
    if card.license != OTHER:
        return card
    link = card.license_link
    if link is not None and is_package_path(link):
        if link not in files:
            raise ModelLicenseError(
                f"The card's license_link names {link!r}, which is not a file of the package. "
                "Add the licence's text there, or link to it with an http(s) address.",
                path=CARD_FILENAME,
                license=card.license,
            )
        chosen: str | None = link
    else:
        chosen = next((name for name in LICENSE_FILES if name in files), None)
    if chosen is None:
        if link is not None:  # an http(s) address: the terms are there
            return card
        raise ModelLicenseError(
            "The card says 'license: other' but the package has no LICENSE file and the "
            "card no license_link. Add the licence's text as LICENSE, or set license_link.",
            path=CARD_FILENAME,
            license=card.license,
        )
    try:
        text = (root / chosen).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLicenseError(
            f"{chosen} is not UTF-8 text. Save the licence as UTF-8.",
            path=chosen,
            license=card.license,
        ) from exc
    if not text.strip() or len(text) > MAX_LICENSE_TEXT:
        raise ModelLicenseError(
            f"{chosen} must hold the licence's text, 1 to {MAX_LICENSE_TEXT} characters.",
            path=chosen,
            license=card.license,
        )
    return replace(card, license_text=text)


def validate_package(
    root: Path, *, entry: str | None = None, limits: PackageLimits | None = None
) -> ValidatedPackage:
    """Run every check on a package directory.

    Args:
        root: The package directory.
        entry: The ONNX entry's relative path; found automatically when there is one.
        limits: Size limits; defaults to `PackageLimits()`.

    Returns:
        The validated package.

    Raises:
        PackagePathError: a path leaves the package or `root` is not a directory.
        ModelTooLargeError: a size or count limit is exceeded.
        ModelCardError: README.md is missing or malformed.
        ModelLicenseError: the card names no licence the Hub documents nor an SPDX one,
            or `license: other` without its name and text.
        UnsafeModelFormatError: a file is a pickle, code, or a Keras Lambda model.
        OnnxModelError: no single ONNX entry, or it fails the checker.
    """
    limits = limits or PackageLimits()
    files = walk_package(root, limits)
    card = custom_license_text(load_card(root / CARD_FILENAME), files, root)
    for name in files:
        check_file(root / name, display=name)
    entry = entry or find_entry(files, root)
    if entry not in files:
        raise OnnxModelError(
            f"The entry {entry!r} is not a file of the package {root}.", path=entry
        )
    model = load_onnx(root / entry, entry)
    external = set(check_external_data(model, root, entry))
    check_onnx(root / entry, entry)
    listed = []
    for name in files:
        path = root / name
        if name == entry:
            role = "model"
        elif name in external:
            role = "external_data"
        elif name == CARD_FILENAME:
            role = "card"
        else:
            role = "extra"
        listed.append(PackageFile(name, path.stat().st_size, _sha256(path), role))
    return ValidatedPackage(root, entry, card, tuple(listed), model)
