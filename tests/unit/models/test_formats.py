# SPDX-License-Identifier: AGPL-3.0-only
from __future__ import annotations

import collections
import io
import json
import pickle
import zipfile
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
