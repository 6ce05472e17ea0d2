# SPDX-License-Identifier: AGPL-3.0-only
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from mercato.errors import ManifestError, ModelPackageError
from mercato.models import load_package, manifest_bytes, manifest_schema, parse_manifest

MakePackage = Callable[..., Path]


def test_manifest_describes_the_package(make_package: MakePackage) -> None:
    root = make_package(external=True)
    package = load_package(root)
    m = package.manifest
    assert m["manifest_version"] == 1
    assert m["name"] == "scale"
    assert m["card"]["license"] == "apache-2.0"
    assert m["card"]["tags"] == ["test"]
    assert m["inputs"] == [{"name": "X", "kind": "tensor", "dtype": "float32", "shape": ["N", 4]}]
    assert m["outputs"] == [{"name": "Y", "kind": "tensor", "dtype": "float32", "shape": ["N", 64]}]
    assert m["opset_imports"] == [{"domain": "ai.onnx", "version": 17}]
    assert m["producer"] == {"name": "unit-test", "version": ""}
    for entry in m["files"]:
        data = (root / entry["path"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert m["total_size"] == sum(f["size"] for f in m["files"])
    # Initializers are never listed as inputs, even for old exporters.
    assert all(i["name"] != "W" for i in m["inputs"])


def test_manifest_bytes_are_canonical(make_package: MakePackage) -> None:
    package = load_package(make_package())
    data = package.manifest_bytes()
    assert data == manifest_bytes(package.manifest)
    assert not data.endswith(b"\n")
    assert b": " not in data and b", " not in data
    decoded = json.loads(data)
    assert list(decoded) == sorted(decoded)
    assert parse_manifest(data) == package.manifest


def test_manifest_matches_published_schema(make_package: MakePackage) -> None:
    package = load_package(make_package())
    jsonschema.Draft202012Validator.check_schema(manifest_schema())
    jsonschema.validate(package.manifest, manifest_schema())


def test_same_package_same_bytes_and_content_change_changes_them(
    make_package: MakePackage,
) -> None:
    root = make_package()
    first = load_package(root).manifest_bytes()
    assert load_package(root).manifest_bytes() == first
    with (root / "README.md").open("a") as handle:
        handle.write("More text.\n")
    assert load_package(root).manifest_bytes() != first


def test_name_defaults_to_directory_and_is_checked(make_package: MakePackage) -> None:
    root = make_package("my.model_v2")
    assert load_package(root).name == "my.model_v2"
    assert load_package(root, name="other").manifest["name"] == "other"
    with pytest.raises(ModelPackageError, match="not allowed"):
        load_package(root, name="../evil")


def test_schema_violations_are_typed(make_package: MakePackage) -> None:
    manifest = copy.deepcopy(load_package(make_package()).manifest)
    manifest["files"][0]["sha256"] = "XYZ"
    with pytest.raises(ManifestError, match="sha256"):
        manifest_bytes(manifest)
    manifest = copy.deepcopy(load_package(make_package("b")).manifest)
    manifest["files"][0]["path"] = "../escape"
    with pytest.raises(ManifestError):
        manifest_bytes(manifest)


def test_parse_manifest_refuses_non_canonical_bytes(make_package: MakePackage) -> None:
    manifest = load_package(make_package()).manifest
    pretty = json.dumps(manifest, indent=2).encode()
    with pytest.raises(ManifestError, match="canonical"):
        parse_manifest(pretty)
    with pytest.raises(ManifestError, match="not UTF-8 JSON"):
        parse_manifest(b"{nope")
