# SPDX-License-Identifier: AGPL-3.0-only
from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from mercato.errors import (
    ModelCardError,
    ModelLicenseError,
    ModelTooLargeError,
    OnnxModelError,
    PackagePathError,
    UnsafeModelFormatError,
)
from mercato.models.validate import PackageLimits, validate_package

from .conftest import scale_model

MakePackage = Callable[..., Path]


def test_valid_package_lists_files_with_roles(make_package: MakePackage) -> None:
    root = make_package(external=True)
    (root / "extra.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    package = validate_package(root)
    roles = {f.path: f.role for f in package.files}
    assert roles == {
        "README.md": "card",
        "extra.safetensors": "extra",
        "model.onnx": "model",
        "model.onnx.data": "external_data",
    }
    assert package.entry == "model.onnx"
    assert package.card.license == "apache-2.0"


def _point_external_data_at(root: Path, location: str) -> None:
    model = onnx.load(str(root / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(root / "model.onnx"))


@pytest.mark.parametrize("location", ["../outside.data", "/etc/passwd", "a/../../x", "C:\\w.bin"])
def test_external_data_outside_the_package_is_refused(
    make_package: MakePackage, location: str
) -> None:
    root = make_package(external=True)
    _point_external_data_at(root, location)
    with pytest.raises(PackagePathError) as info:
        validate_package(root)
    assert info.value.location == location
    assert info.value.code == "model_path_outside"


def test_external_data_through_a_symlink_out_is_refused(
    make_package: MakePackage, tmp_path: Path
) -> None:
    root = make_package(external=True)
    outside = tmp_path / "secret.data"
    (root / "model.onnx.data").rename(outside)
    (root / "model.onnx.data").symlink_to(outside)
    with pytest.raises(PackagePathError) as info:
        validate_package(root)
    assert "symlink" in str(info.value)


def test_symlink_directory_is_refused(make_package: MakePackage, tmp_path: Path) -> None:
    root = make_package()
    (tmp_path / "elsewhere").mkdir()
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PackagePathError):
        validate_package(root)


def test_external_data_missing_or_short_is_refused(make_package: MakePackage) -> None:
    root = make_package(external=True)
    data = root / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(PackagePathError) as info:
        validate_package(root)
    assert "has only 10" in str(info.value)
    data.unlink()
    with pytest.raises(PackagePathError):
        validate_package(root)


def test_limits_on_file_size_total_and_count(make_package: MakePackage) -> None:
    root = make_package()
    with pytest.raises(ModelTooLargeError) as info:
        validate_package(root, limits=PackageLimits(max_file_bytes=100))
    assert info.value.limit == 100
    with pytest.raises(ModelTooLargeError):
        validate_package(root, limits=PackageLimits(max_total_bytes=200))
    with pytest.raises(ModelTooLargeError) as info:
        validate_package(root, limits=PackageLimits(max_files=1))
    assert info.value.size == 2


def test_card_problems_are_refused(make_package: MakePackage) -> None:
    root = make_package(card="---\ntags: [x]\n---\n")
    with pytest.raises(ModelLicenseError):
        validate_package(root)
    (root / "README.md").unlink()
    with pytest.raises(ModelCardError):
        validate_package(root)


def test_pickle_anywhere_in_the_package_is_refused(make_package: MakePackage) -> None:
    root = make_package()
    (root / "sub").mkdir()
    (root / "sub" / "tokenizer.dat").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(UnsafeModelFormatError) as info:
        validate_package(root)
    assert info.value.path == "sub/tokenizer.dat"


def test_pickle_renamed_to_onnx_is_refused(make_package: MakePackage) -> None:
    root = make_package()
    (root / "model.onnx").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(UnsafeModelFormatError):
        validate_package(root)


def test_no_onnx_several_onnx_and_garbage_onnx(make_package: MakePackage) -> None:
    root = make_package()
    (root / "model.onnx").rename(root / "model.txt")
    with pytest.raises(OnnxModelError, match=r"no \.onnx file"):
        validate_package(root)
    (root / "model.txt").rename(root / "a.onnx")
    (root / "b.onnx").write_bytes((root / "a.onnx").read_bytes())
    with pytest.raises(OnnxModelError, match="several"):
        validate_package(root)
    assert validate_package(root, entry="a.onnx").entry == "a.onnx"
    (root / "b.onnx").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(OnnxModelError, match="not a valid ONNX model"):
        validate_package(root, entry="b.onnx")


def test_checker_failure_is_refused(make_package: MakePackage) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "missing"], ["Y"])],
        "broken",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])],
    )
    broken = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root = make_package(model=broken)
    with pytest.raises(OnnxModelError, match="fails ONNX validation"):
        validate_package(root)


def test_full_check_catches_shape_errors(make_package: MakePackage) -> None:
    # [N, 4] @ [3, 8] cannot multiply: only strict shape inference (full_check) sees it.
    model = scale_model()
    model.graph.initializer[0].dims[:] = [3, 8]
    del model.graph.initializer[0].float_data[:]
    model.graph.initializer[0].raw_data = b"\x00" * (3 * 8 * 4)
    root = make_package(model=model)
    with pytest.raises(OnnxModelError):
        validate_package(root)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PackagePathError):
        validate_package(tmp_path / "nope")
