# SPDX-License-Identifier: AGPL-3.0-only
"""Refuse model formats that can run code when they are loaded.

A pickle is a small program: loading one can import any module and call any function,
so `torch.load`, `joblib.load` and friends run whatever the author put in the file.
Keras `Lambda` layers carry Python bytecode. Mercato only runs ONNX, which is data, and
refuses these formats wherever they appear in a package, by extension *and* by content,
because a renamed file is still a pickle.

Safetensors and raw tensor files may ride along as extra files; the runnable entry is
always the ONNX file.
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

from mercato.errors import UnsafeModelFormatError

# How to get from each family to ONNX; the refusal message ends with one of these.
_HOW_TO = {
    "torch": (
        "Export it to ONNX with torch.onnx.export(model, example_inputs, 'model.onnx') "
        "and publish the .onnx file (see docs/models.md)."
    ),
    "sklearn": (
        "Convert the estimator to ONNX with skl2onnx (mercato.models.sklearn.export_sklearn "
        "does it and writes the package) and publish the .onnx file."
    ),
    "keras": (
        "Replace Lambda layers with built-in or registered layers, then convert with "
        "tf2onnx (python -m tf2onnx.convert --saved-model DIR --output model.onnx)."
    ),
    "numpy": "Save plain arrays (allow_pickle=False), safetensors, or ONNX external data.",
    "code": (
        "Mercato never runs code from a package. Put the model in the ONNX file; "
        "describe any pre- or post-processing in README.md."
    ),
    "pickle": (
        "Load it in the framework that made it and export the model to ONNX "
        "(torch.onnx.export, tf2onnx, skl2onnx; see docs/models.md)."
    ),
}

# Refused by name alone, whatever the bytes say.
_EXTENSIONS = {
    ".pt": "torch",
    ".pth": "torch",
    ".ckpt": "torch",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".dill": "pickle",
    ".joblib": "sklearn",
    ".py": "code",
    ".pyc": "code",
    ".so": "code",
    ".dll": "code",
    ".dylib": "code",
}

_PICKLE_PROTOCOLS = {2, 3, 4, 5}
# Protocol 0/1 opcodes that import a Python name ("module name"): what makes it dangerous.
_IMPORT_OPCODES = {"GLOBAL", "INST"}
_DOTTED_PAIR = re.compile(r"[A-Za-z_][\w.]* [A-Za-z_][\w.]*")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_SNIFF_BYTES = 64 * 1024
_CHUNK = 1 << 20


def _refuse(path: Path, family: str, what: str, display: str) -> UnsafeModelFormatError:
    return UnsafeModelFormatError(
        f"{display} is {what}, which can run code when loaded; Mercato refuses it. "
        f"{_HOW_TO[family]}",
        path=display,
        format=family,
    )


def looks_like_pickle(head: bytes) -> bool:
    """Tell whether `head` (the first bytes of a file) is a pickle stream.

    Args:
        head: Up to the first 64 KiB of a file.

    Returns:
        True for a protocol 2-5 pickle (PROTO header followed by opcodes that parse)
        and for a protocol 0-1 pickle (no header) that imports a Python name.
    """
    has_proto = len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS
    parsed = 0
    imports = False
    # Escaped-string opcodes in random bytes trip DeprecationWarnings; not ours to show.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            for opcode, arg, _pos in pickletools.genops(io.BytesIO(head)):
                parsed += 1
                if opcode.name in _IMPORT_OPCODES and isinstance(arg, str):
                    # Raw tensor bytes can hold a stray 'c'; a real import names a module.
                    imports = imports or bool(_DOTTED_PAIR.fullmatch(arg))
                if opcode.name == "STOP" or parsed >= 64:
                    break
        except (ValueError, EOFError, UnicodeDecodeError, OverflowError):
            pass  # the head ends mid-stream, or this is not a pickle at all
    if has_proto:
        # A float tensor can start with 0x80 0x02 by chance; a pickle keeps parsing.
        return parsed >= 3
    return imports


def _contains(path: Path, needle: bytes) -> bool:
    # Stream the file with an overlap so a needle across chunk borders is still found.
    overlap = len(needle) - 1
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            window = tail + chunk
            if needle in window:
                return True
            tail = window[-overlap:] if overlap else b""
    return False


def _zip_members(path: Path) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            with archive.open(info) as member:
                yield info.filename, member.read(_SNIFF_BYTES)


def _check_npy_header(head: bytes) -> bool:
    # The .npy header is a Python dict literal; object arrays ('O' in descr) are pickles.
    end = head.find(b"\n", 10)
    header = head[10 : end if end > 0 else len(head)]
    return b"'O'" in header or b"|O" in header


def _check_zip(path: Path, display: str) -> None:
    try:
        members = list(_zip_members(path))
    except (zipfile.BadZipFile, OSError, NotImplementedError):
        return  # not a readable archive: nothing inside can be loaded either
    for name, head in members:
        lower = name.lower()
        if lower.endswith("data.pkl"):
            raise _refuse(path, "torch", "a PyTorch checkpoint (zip with data.pkl)", display)
        if lower.endswith((".pkl", ".pickle")) or looks_like_pickle(head):
            raise _refuse(path, "pickle", f"an archive holding a pickle ({name})", display)
        if lower.endswith(".npy") and head.startswith(_NPY_MAGIC) and _check_npy_header(head):
            raise _refuse(path, "numpy", "a NumPy archive with object (pickled) arrays", display)
        if lower.endswith("config.json") and b'"Lambda"' in head:
            raise _refuse(path, "keras", "a Keras model with Lambda layers", display)


def check_file(path: Path, display: str | None = None) -> None:
    """Refuse `path` if its name or its bytes say it can run code when loaded.

    Args:
        path: The file to check.
        display: How to name the file in messages (its path inside the package).

    Raises:
        UnsafeModelFormatError: the file is a pickle (plain, in a zip, a PyTorch
            checkpoint, a NumPy object array), a Keras model with Lambda layers, or code.
    """
    shown = display or path.name
    family = _EXTENSIONS.get(path.suffix.lower())
    if family is not None:
        raise _refuse(path, family, f"a {path.suffix} file", shown)
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head.startswith(_ZIP_MAGIC):
        _check_zip(path, shown)
        if path.suffix.lower() == ".keras":
            return
    elif head.startswith(_NPY_MAGIC):
        if _check_npy_header(head):
            raise _refuse(path, "numpy", "a NumPy object (pickled) array", shown)
    elif head.startswith(_HDF5_MAGIC):
        # Keras stores its model config as JSON inside the HDF5 file; a Lambda layer
        # appears there by class name.
        if _contains(path, b'"class_name": "Lambda"') or _contains(path, b'"Lambda"'):
            raise _refuse(path, "keras", "a Keras HDF5 model with Lambda layers", shown)
    elif looks_like_pickle(head):
        family = "torch" if path.suffix.lower() == ".bin" else "pickle"
        raise _refuse(path, family, "a pickle", shown)


def safetensors_header(path: Path) -> dict[str, object] | None:
    """Read a safetensors header, to tell a real safetensors file from a renamed one.

    Args:
        path: A `.safetensors` file.

    Returns:
        The parsed JSON header, or None if the file is not safetensors.
    """
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            return None
        length = int.from_bytes(raw, "little")
        if length > 100 * 1024 * 1024:
            return None
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError):
            return None
    return header if isinstance(header, dict) else None
