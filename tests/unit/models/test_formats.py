# SPDX-License-Identifier: AGPL-3.0-only
from __future__ import annotations

import collections
import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mercato.errors import UnsafeModelFormatError
from mercato.models.formats import check_file, looks_like_pickle, safetensors_header


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["w.pt", "w.pth", "w.ckpt", "m.pkl", "m.pickle", "m.joblib"])
def test_refused_by_extension_even_when_empty(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, name, b""))
    assert info.value.code == "model_format_unsafe"
    assert "ONNX" in str(info.value) or "onnx" in str(info.value)


@pytest.mark.parametrize("name", ["run.py", "ext.so"])
def test_code_files_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, name, b"print('hi')\n"))
    assert info.value.format == "code"


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_pickle_under_an_innocent_name_is_refused_by_content(tmp_path: Path, protocol: int) -> None:
    data = pickle.dumps(collections.OrderedDict(w=[1.0, 2.0]), protocol=protocol)
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "weights.dat", data), display="sub/weights.dat")
    assert info.value.path == "sub/weights.dat"
    assert info.value.format == "pickle"


def test_pytorch_bin_pickle_gets_torch_advice(tmp_path: Path) -> None:
    data = pickle.dumps({"layer.weight": [0.5]}, protocol=2)
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "pytorch_model.bin", data))
    assert info.value.format == "torch"
    assert "torch.onnx.export" in str(info.value)


def test_pytorch_zip_checkpoint_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
        archive.writestr("archive/data/0", b"\x00" * 16)
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "model.bin", buffer.getvalue()))
    assert info.value.format == "torch"


def test_npy_object_array_is_refused_plain_array_allowed(tmp_path: Path) -> None:
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "x.npy", obj.getvalue()))
    assert info.value.format == "numpy"
    plain = io.BytesIO()
    np.save(plain, np.arange(10, dtype=np.float32))
    check_file(_write(tmp_path, "y.npy", plain.getvalue()))


def test_npz_with_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez(path, ok=np.zeros(3), bad=np.array([None, 1], dtype=object))
    with pytest.raises(UnsafeModelFormatError):
        check_file(path)


def test_keras_zip_with_lambda_layer_is_refused(tmp_path: Path) -> None:
    config = {"class_name": "Sequential", "config": {"layers": [{"class_name": "Lambda"}]}}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "model.keras", buffer.getvalue()))
    assert info.value.format == "keras"
    assert "tf2onnx" in str(info.value)


def test_keras_h5_with_lambda_layer_is_refused(tmp_path: Path) -> None:
    # The HDF5 signature, then the model config JSON Keras stores as an attribute.
    body = b"\x89HDF\r\n\x1a\n" + b"\x00" * 2000 + b'{"layers": [{"class_name": "Lambda"}]}'
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "model.h5", body))
    assert info.value.format == "keras"


def test_keras_h5_without_lambda_rides_along(tmp_path: Path) -> None:
    body = b"\x89HDF\r\n\x1a\n" + b"\x00" * 100 + b'{"layers": [{"class_name": "Dense"}]}'
    check_file(_write(tmp_path, "model.h5", body))


def test_safetensors_and_raw_tensor_data_are_allowed(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    data = len(header).to_bytes(8, "little") + header + np.ones(2, np.float32).tobytes()
    path = _write(tmp_path, "model.safetensors", data)
    check_file(path)
    assert safetensors_header(path) == {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    rng = np.random.default_rng(0)
    check_file(
        _write(tmp_path, "model.onnx.data", rng.standard_normal(4096).astype("f4").tobytes())
    )


def test_random_bytes_are_not_taken_for_pickles() -> None:
    rng = np.random.default_rng(1)
    hits = sum(looks_like_pickle(rng.bytes(4096)) for _ in range(3000))
    assert hits == 0


def test_text_is_not_a_pickle() -> None:
    assert not looks_like_pickle(b"---\nlicense: mit\n---\n(c) 2024 someone\n")


# --- refusal by content, whatever the header, the name or the compression ------------

_PAYLOAD = collections.OrderedDict(w=[1.0, 2.0])


def _compressors() -> dict[str, Callable[[bytes], bytes]]:
    import bz2
    import gzip
    import lzma
    import zlib

    import zstandard

    return {
        "gzip": gzip.compress,
        "bz2": bz2.compress,
        "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ),
        "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
        "zlib": zlib.compress,
        "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    }


@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz", "lzma", "zlib", "zstd"])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_compressed_pickles_are_refused(tmp_path: Path, kind: str, protocol: int) -> None:
    data = _compressors()[kind](pickle.dumps(_PAYLOAD, protocol=protocol))
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "weights.dat", data))
    assert info.value.format == "pickle"


def test_pickles_compressed_twice_are_refused(tmp_path: Path) -> None:
    import bz2
    import gzip

    data = gzip.compress(bz2.compress(pickle.dumps(_PAYLOAD, protocol=4)))
    with pytest.raises(UnsafeModelFormatError):
        check_file(_write(tmp_path, "weights.dat", data))


def test_compressed_data_that_cannot_be_inspected_is_refused(tmp_path: Path) -> None:
    # An LZ4 frame (magic number, then a frame this machine has no decoder for).
    frame = b"\x04\x22\x4d\x18\x64\x40\xa7" + b"\x00" * 64
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "weights.dat", frame))
    assert "cannot look into" in str(info.value)


def test_compressed_data_that_is_not_a_pickle_rides_along(tmp_path: Path) -> None:
    import gzip

    import zstandard

    rng = np.random.default_rng(2)
    floats = rng.standard_normal(50_000).astype("f4").tobytes()
    check_file(_write(tmp_path, "a.bin.gz", gzip.compress(floats)))
    check_file(_write(tmp_path, "b.zst", zstandard.ZstdCompressor().compress(b'{"vocab": 1}')))


@pytest.mark.parametrize(
    "compress", [0, 3, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)]
)
def test_joblib_files_are_refused_under_any_name(tmp_path: Path, compress: object) -> None:
    import joblib

    path = tmp_path / "model.dat"
    joblib.dump({"coef": np.arange(2000, dtype=np.float64), "name": "clf"}, path, compress=compress)
    with pytest.raises(UnsafeModelFormatError):
        check_file(path)


@pytest.mark.parametrize("protocol", [0, 1])
def test_protocol_0_and_1_pickles_without_imports_are_refused(
    tmp_path: Path, protocol: int
) -> None:
    data = pickle.dumps([1, 2, {"a": "b"}], protocol=protocol)
    assert data[:1] != b"\x80"  # no PROTO opcode
    with pytest.raises(UnsafeModelFormatError):
        check_file(_write(tmp_path, "weights.dat", data))


def test_a_pickle_with_its_proto_opcode_stripped_is_refused(tmp_path: Path) -> None:
    data = pickle.dumps(_PAYLOAD, protocol=4)
    assert data[:1] == b"\x80"
    with pytest.raises(UnsafeModelFormatError):
        check_file(_write(tmp_path, "weights.dat", data[2:]))


def _padded_import(padding: int) -> bytes:
    # Hand-made opcodes: a large bytes argument first, then `os.system` imported with
    # STACK_GLOBAL (no PROTO, no GLOBAL), called and returned. Never loaded here.
    body = (
        b"\x8e" + padding.to_bytes(8, "little") + b"\0" * padding + b"0"  # BINBYTES8, POP
        b"\x8c\x02os\x94\x8c\x06system\x94\x93"  # SHORT_BINUNICODE x2, STACK_GLOBAL
        b"\x8c\x04true\x85R."  # argument tuple, REDUCE, STOP
    )
    return body


def test_a_pickle_padded_past_the_sniffed_prefix_is_refused(tmp_path: Path) -> None:
    data = _padded_import(2 * 1024 * 1024)
    assert len(data) > 64 * 1024
    with pytest.raises(UnsafeModelFormatError):
        check_file(_write(tmp_path, "weights.dat", data))


def test_a_compressed_pickle_padded_past_the_inspection_budget_is_refused(
    tmp_path: Path,
) -> None:
    import zlib

    data = zlib.compress(_padded_import(80 * 1024 * 1024), 1)
    with pytest.raises(UnsafeModelFormatError):
        check_file(_write(tmp_path, "weights.dat", data))


def test_npy_with_an_object_field_in_a_structured_dtype_is_refused(tmp_path: Path) -> None:
    dtype = np.dtype([("w", "f4"), ("meta", "O")])
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(2, dtype=dtype), allow_pickle=True)
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "x.npy", buffer.getvalue()))
    assert info.value.format == "numpy"
    plain = io.BytesIO()
    np.save(plain, np.zeros(2, dtype=[("w", "f4"), ("b", "i8")]))
    check_file(_write(tmp_path, "y.npy", plain.getvalue()))


def test_zip_members_are_judged_by_content_not_name(tmp_path: Path) -> None:
    obj = io.BytesIO()
    np.save(obj, np.array([None], dtype=object), allow_pickle=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("arrays/ok", b"\x00" * 32)
        archive.writestr("arrays/hidden", obj.getvalue())
    with pytest.raises(UnsafeModelFormatError) as info:
        check_file(_write(tmp_path, "arrays.npz", buffer.getvalue()))
    assert info.value.format == "numpy"


def test_torch_zip_layout_with_a_renamed_pickle_is_refused(tmp_path: Path) -> None:
    # torch is not installed here: this is the layout torch.save writes (archive/
    # data.pkl, archive/data/<n>, archive/version), with data.pkl renamed.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/weights", pickle.dumps(_PAYLOAD, protocol=2))
        archive.writestr("archive/data/0", b"\x00" * 16)
        archive.writestr("archive/version", b"3\n")
    with pytest.raises(UnsafeModelFormatError):
        check_file(_write(tmp_path, "model.safetensors", buffer.getvalue()))


def test_a_compressed_pickle_inside_a_zip_is_refused(tmp_path: Path) -> None:
    import gzip

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("blob", gzip.compress(pickle.dumps(_PAYLOAD, protocol=0)))
    with pytest.raises(UnsafeModelFormatError):
        check_file(_write(tmp_path, "bundle.zip", buffer.getvalue()))


def test_an_encrypted_zip_member_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("secret", b"x" * 10)
    raw = bytearray(buffer.getvalue())
    # Set the "encrypted" flag in the local and central headers: nothing can be read.
    raw[6] |= 1
    central = raw.find(b"PK\x01\x02")
    raw[central + 8] |= 1
    with pytest.raises(UnsafeModelFormatError):
        check_file(_write(tmp_path, "bundle.zip", bytes(raw)))


def test_random_bytes_of_any_start_are_not_pickles() -> None:
    rng = np.random.default_rng(3)
    for first in range(256):
        for _ in range(20):
            assert not looks_like_pickle(bytes([first]) + rng.bytes(4095)), first
