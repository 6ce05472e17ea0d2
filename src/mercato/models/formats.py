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

import ast
import bz2
import gzip
import io
import json
import lzma
import pickletools
import re
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, Protocol, cast

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
_DOTTED_PAIR = re.compile(r"[A-Za-z_][\w.]* [A-Za-z_][\w.]*")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_SNIFF_BYTES = 64 * 1024
_CHUNK = 1 << 20

# Compressed streams: a pickle inside one is still a pickle (joblib compresses this way).
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"
_INSPECT_BYTES = 64 * 1024 * 1024
"""Decompressed bytes inspected per compressed stream (pickle arguments are skipped)."""
_MAX_NESTING = 3  # compressed inside compressed inside a zip...
_MAX_ZIP_MEMBERS = 10_000

# The pickle opcode walk (see `_pickle_verdict`).
_OPS = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
_MAX_OPS = 100_000
_MAX_LINE = 4096
_SMALL_ARG = 64 * 1024  # longer arguments are skipped, not read
_LENGTH_BYTES = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}
_STRING_PUSHES = {
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "GET", "BINGET", "LONG_BINGET",
}  # fmt: skip
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "FRAME"}


def _refuse(path: Path, family: str, what: str, display: str) -> UnsafeModelFormatError:
    return UnsafeModelFormatError(
        f"{display} is {what}, which can run code when loaded; Mercato refuses it. "
        f"{_HOW_TO[family]}",
        path=display,
        format=family,
    )


class _Reader(Protocol):
    """Anything with `read(size)`: a file, a zip member, a decompressing reader."""

    def read(self, size: int, /) -> bytes: ...


class _Stream:
    """A forward-only reader over a file or a decompressed stream, with a byte budget.

    `skip` jumps over pickle arguments without keeping them (a seek on a file, a
    discarding read on a decompressed stream), so a pickle padded with gigabytes of
    bytes before its import still gets its import read.
    """

    def __init__(self, handle: _Reader, budget: int | None, seekable: bool) -> None:
        self._handle = handle
        self._budget = budget
        self._seekable = seekable
        self.cut = False  # the budget ran out (as opposed to the stream ending)

    def read(self, size: int) -> bytes:
        if self._budget is not None:
            if size > self._budget:
                self.cut = True
                size = self._budget
            self._budget -= size
        return self._handle.read(size) if size else b""

    def readline(self, limit: int) -> bytes:
        line = b""
        while len(line) < limit:
            byte = self.read(1)
            if not byte:
                break
            line += byte
            if byte == b"\n":
                break
        return line

    def skip(self, size: int) -> bool:
        if self._seekable and self._budget is None:
            handle = cast(IO[bytes], self._handle)
            here = handle.tell()
            end = handle.seek(0, io.SEEK_END)
            if here + size > end:
                return False
            handle.seek(here + size)
            return True
        left = size
        while left:
            piece = self.read(min(left, _CHUNK))
            if not piece:
                return False
            left -= len(piece)
        return True


class _Truncated(Exception):
    """The stream ended (or its budget did) inside an opcode's argument."""


def _read_arg(op: pickletools.OpcodeInfo, stream: _Stream) -> object:
    """Read (or skip) one opcode's argument, checking it with pickletools' own readers.

    Raises:
        _Truncated: The stream ended inside the argument.
        ValueError: The argument is malformed (the bytes are not a pickle).
    """
    arg = op.arg
    if arg is None:
        return None
    if arg.n >= 0:
        data = stream.read(arg.n)
        if len(data) < arg.n:
            raise _Truncated
        return arg.reader(io.BytesIO(data))
    if arg.n == pickletools.UP_TO_NEWLINE:
        lines = 2 if op.name in ("GLOBAL", "INST") else 1
        data = b""
        for _ in range(lines):
            line = stream.readline(_MAX_LINE)
            if not line.endswith(b"\n"):
                if len(line) < _MAX_LINE:
                    raise _Truncated
                raise ValueError("pickle: line too long")
            data += line
        return arg.reader(io.BytesIO(data))
    width, signed = _LENGTH_BYTES[arg.n]
    prefix = stream.read(width)
    if len(prefix) < width:
        raise _Truncated
    size = int.from_bytes(prefix, "little", signed=signed)
    if size < 0:
        raise ValueError("pickle: negative length")
    if size > _SMALL_ARG:
        if not stream.skip(size):
            raise _Truncated
        return None
    data = stream.read(size)
    if len(data) < size:
        raise _Truncated
    return arg.reader(io.BytesIO(prefix + data))


def _pickle_verdict(stream: _Stream) -> str:
    """Walk pickle opcodes from the start of a stream, without executing anything.

    Returns:
        "pickle": the bytes parse as a pickle: a PROTO header followed by opcodes, a
        complete stream up to STOP, an import of a Python name (GLOBAL/INST naming a
        module, or STACK_GLOBAL right after its two names), or 64 opcodes in a row.
        "undecided": the stream (or its inspection budget) ended inside a run of
        opcodes that parse, before any of that.
        "not": an opcode or an argument that no pickle has (what random bytes, text
        and other formats give within a byte or two).
    """
    ops = 0
    names_in_row = 0
    proto = False
    # Escaped-string opcodes in random bytes trip DeprecationWarnings; not ours to show.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        while ops < _MAX_OPS:
            code = stream.read(1)
            if not code:
                return "undecided" if ops else "not"
            op = _OPS.get(code)
            if op is None:
                return "not"
            ops += 1
            try:
                value = _read_arg(op, stream)
            except _Truncated:
                return "undecided"
            except (ValueError, UnicodeDecodeError, OverflowError, EOFError):
                return "not"
            name = op.name
            if ops == 1 and name == "PROTO":
                if value not in _PICKLE_PROTOCOLS:
                    return "not"
                proto = True
            if name == "STOP":
                return "pickle" if ops >= 3 else "not"
            # Raw tensor bytes can hold a stray 'c'; a real import names a module.
            is_import = name in ("GLOBAL", "INST") and isinstance(value, str)
            if is_import and _DOTTED_PAIR.fullmatch(str(value)):
                return "pickle"
            if name == "STACK_GLOBAL" and names_in_row >= 2:
                return "pickle"
            if name in _STRING_PUSHES:
                names_in_row += 1
            elif name not in _MEMO_PUTS:
                names_in_row = 0
            if (proto and ops >= 3) or ops >= 64:
                return "pickle"
    return "pickle"


def looks_like_pickle(head: bytes) -> bool:
    """Tell whether `head` (the first bytes of a file) is a pickle stream.

    Detection is by content alone: no PROTO header is needed (protocol 0 and 1 pickles
    have none, and no protocol requires one), and long arguments in a prefix that ends
    early do not hide what came before.

    Args:
        head: The first bytes of a file (up to 64 KiB is plenty).

    Returns:
        True when the opcodes parse as a pickle (see `_pickle_verdict`).
    """
    return _pickle_verdict(_Stream(io.BytesIO(head), None, False)) == "pickle"


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


def _npy_has_objects(head: bytes) -> bool:
    """Tell whether a .npy header describes object (pickled) values.

    The header is a Python dict literal; it is read with `ast.literal_eval` (no code
    runs) and its dtype asked whether it holds objects, so structured dtypes with an
    object field count too. A header that cannot be read is treated as unsafe.
    """
    import numpy as np

    try:
        major = head[6]
        width, start = (2, 10) if major == 1 else (4, 12)
        length = int.from_bytes(head[8 : 8 + width], "little")
        header = ast.literal_eval(head[start : start + length].decode("latin-1"))
        return bool(np.lib.format.descr_to_dtype(header["descr"]).hasobject)
    except (ValueError, SyntaxError, KeyError, TypeError, IndexError, MemoryError):
        return True


def _decompressor(head: bytes, handle: _Reader) -> tuple[str, _Reader | None] | None:
    """The compression a stream starts with, and a reader of its decompressed bytes.

    Returns:
        None for no known compression; (name, reader) otherwise, reader None when this
        machine cannot decompress it (then nothing inside can be inspected).
    """
    if head.startswith(_GZIP_MAGIC):
        return "gzip", gzip.GzipFile(fileobj=cast(IO[bytes], handle), mode="rb")
    if head.startswith(_BZIP2_MAGIC) and head[3:4].isdigit():
        return "bzip2", bz2.BZ2File(cast(IO[bytes], handle))
    if head.startswith(_XZ_MAGIC):
        return "xz", lzma.LZMAFile(cast(IO[bytes], handle), format=lzma.FORMAT_XZ)
    if head[:1] == b"\x5d" and len(head) >= 13:  # lzma "alone": properties, sizes, data
        return "lzma", lzma.LZMAFile(cast(IO[bytes], handle), format=lzma.FORMAT_ALONE)
    if head.startswith(_ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            return "zstd", None
        return "zstd", zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], handle))
    if head.startswith(_LZ4_MAGIC):
        return "lz4", None
    if (
        len(head) >= 2
        and head[0] & 0x0F == 8
        and head[0] >> 4 <= 7
        and ((head[0] << 8) | head[1]) % 31 == 0
    ):
        return "zlib", _ZlibReader(handle)
    return None


class _ZlibReader(io.RawIOBase):
    """A zlib stream (joblib's default compression) decompressed as it is read."""

    def __init__(self, handle: _Reader) -> None:
        self._handle = handle
        self._inflate = zlib.decompressobj()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = _CHUNK if size is None or size < 0 else size
        out = b""
        while len(out) < size:
            if self._inflate.unconsumed_tail:
                piece = self._inflate.decompress(self._inflate.unconsumed_tail, size - len(out))
            else:
                raw = self._handle.read(_CHUNK)
                if not raw:
                    break
                piece = self._inflate.decompress(raw, size - len(out))
            if not piece and self._inflate.eof:
                break
            out += piece
        return out


def _check_content(
    handle: _Reader,
    display: str,
    path: Path,
    *,
    seekable: bool,
    depth: int,
    family: str = "pickle",
) -> None:
    """Refuse a stream whose bytes can run code when loaded, whatever its name says.

    Args:
        handle: The stream, at its start.
        display: The name for messages.
        path: The file the stream comes from (for the error).
        seekable: `handle` is the file itself (arguments are skipped by seeking).
        depth: How many compressions or archives deep this stream is.
        family: Whose export advice a plain pickle gets ("torch" for a .bin file).

    Raises:
        UnsafeModelFormatError: a pickle (also compressed, in a zip, or a NumPy object
            array), or a compressed stream this machine cannot look into.
    """
    head = handle.read(_SNIFF_BYTES)
    if head.startswith(_NPY_MAGIC):
        if _npy_has_objects(head):
            raise _refuse(path, "numpy", "a NumPy object (pickled) array", display)
        return
    if head.startswith(_HDF5_MAGIC):
        return  # checked by the caller, which can read the whole file
    found = _decompressor(head, _Rewound(head, handle))
    if found is not None:
        kind, reader = found
        if reader is None:
            raise _refuse(
                path,
                "pickle",
                f"{kind}-compressed data this node cannot look into (it may hide a pickle)",
                display,
            )
        if depth >= _MAX_NESTING:
            raise _refuse(path, "pickle", "data compressed too many times over", display)
        try:
            _check_decompressed(reader, display, path, kind, depth)
            return
        except UnsafeModelFormatError:  # a ValueError too: not to be taken for bad data
            raise
        except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
            # Not really compressed after all: look at the bytes as they are. A stream
            # that cannot be rewound is judged on its first bytes, and a pickle that
            # is still going where they end is refused.
            if not seekable:
                stream = _Stream(io.BytesIO(head), None, False)
                verdict = _pickle_verdict(stream)
                if verdict == "pickle" or (verdict == "undecided" and len(head) == _SNIFF_BYTES):
                    raise _refuse(path, family, "a pickle", display) from None
                return
    if seekable:
        cast(IO[bytes], handle).seek(0)
        stream = _Stream(handle, None, True)
    else:
        stream = _Stream(_Rewound(head, handle), _INSPECT_BYTES, False)
    verdict = _pickle_verdict(stream)
    # A run of opcodes cut by the inspection budget (a compressed pickle padded past
    # it) cannot be cleared, so it is refused like a pickle.
    if verdict == "pickle" or (verdict == "undecided" and stream.cut):
        raise _refuse(path, family, "a pickle", display)


def _check_decompressed(reader: _Reader, display: str, path: Path, kind: str, depth: int) -> None:
    head = reader.read(_SNIFF_BYTES)
    if not head:
        return
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        raise _refuse(
            path, "pickle", f"a {kind}-compressed archive (it may hide a pickle)", display
        )
    _check_content(_Rewound(head, reader), display, path, seekable=False, depth=depth + 1)


class _Rewound(io.RawIOBase):
    """A stream whose first bytes were already read: they are given back first."""

    def __init__(self, head: bytes, rest: _Reader) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK  # never everything at once: the rest may be endless
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
            if len(out) < size:
                out += self._rest.read(size - len(out))
            return out
        return self._rest.read(size)


def _check_zip(path: Path, display: str) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, NotImplementedError):
        return  # not a readable archive: nothing inside can be loaded either
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > _MAX_ZIP_MEMBERS:
            raise _refuse(
                path, "pickle", f"an archive of {len(infos)} members, too many to inspect", display
            )
        for info in infos:
            name = info.filename
            lower = name.lower()
            if lower.endswith("data.pkl"):
                raise _refuse(path, "torch", "a PyTorch checkpoint (zip with data.pkl)", display)
            if lower.endswith((".pkl", ".pickle")):
                raise _refuse(path, "pickle", f"an archive holding a pickle ({name})", display)
            try:
                member = archive.open(info)
            except (RuntimeError, NotImplementedError, zipfile.BadZipFile) as exc:
                # Encrypted or an unknown compression: nothing inside can be inspected.
                raise _refuse(
                    path,
                    "pickle",
                    f"an archive with a member that cannot be read ({name})",
                    display,
                ) from exc
            with member:
                try:
                    if lower.endswith("config.json"):
                        if b'"Lambda"' in member.read(_SNIFF_BYTES):
                            raise _refuse(
                                path, "keras", "a Keras model with Lambda layers", display
                            )
                        continue
                    _check_content(member, f"{display} ({name})", path, seekable=False, depth=1)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise _refuse(
                        path, "pickle", f"an archive with a damaged member ({name})", display
                    ) from exc


def check_file(path: Path, display: str | None = None) -> None:
    """Refuse `path` if its name or its bytes say it can run code when loaded.

    The bytes decide, whatever the name: pickles are found by walking their opcodes
    (no header needed), also inside gzip, bzip2, xz, lzma, zlib and zstd streams and
    inside zip members (NumPy .npz, PyTorch checkpoints); compressed data this node
    cannot decompress is refused rather than trusted.

    Args:
        path: The file to check.
        display: How to name the file in messages (its path inside the package).

    Raises:
        UnsafeModelFormatError: the file is a pickle (plain, compressed, in a zip, a
            PyTorch checkpoint, a NumPy object array, a joblib file), a Keras model with
            Lambda layers, code, or compressed data that cannot be inspected.
    """
    shown = display or path.name
    family = _EXTENSIONS.get(path.suffix.lower())
    if family is not None:
        raise _refuse(path, family, f"a {path.suffix} file", shown)
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
        handle.seek(0)
        if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
            _check_zip(path, shown)
            return
        if head.startswith(_HDF5_MAGIC):
            # Keras stores its model config as JSON inside the HDF5 file; a Lambda layer
            # appears there by class name.
            if _contains(path, b'"class_name": "Lambda"') or _contains(path, b'"Lambda"'):
                raise _refuse(path, "keras", "a Keras HDF5 model with Lambda layers", shown)
            return
        # A pickle named .bin is how PyTorch and transformers save weights.
        family = "torch" if path.suffix.lower() == ".bin" else "pickle"
        _check_content(handle, shown, path, seekable=True, depth=0, family=family)


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
