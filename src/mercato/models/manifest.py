# SPDX-License-Identifier: AGPL-3.0-only
"""The canonical manifest: what a model version commits to.

The manifest describes a validated package (name, card fields, inputs and outputs,
opsets, producer, every file with its size and SHA-256) as JSON that matches the
published schema `manifest.schema.json` (shipped in this package). Its canonical bytes
are UTF-8 JSON with keys sorted and no insignificant whitespace; the manifest holds no
floats, so the encoding is the one RFC 8785 (JCS) gives. The same package always gives
the same bytes, and so the same CID once the storage layer imports them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
import onnx

from mercato.errors import ManifestError, ModelCardError, ModelPackageError
from mercato.models.validate import ValidatedPackage

MANIFEST_VERSION = 1
SCHEMA_ID = "urn:mercato:schema:model-manifest:1"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")

# NumPy-style names for ONNX element types; the runtime maps them to NumPy dtypes.
_ELEMENT_TYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.UINT16: "uint16",
    onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.STRING: "string",
    onnx.TensorProto.COMPLEX64: "complex64",
    onnx.TensorProto.COMPLEX128: "complex128",
}

Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """A tensor input or output as the manifest describes it.

    Attributes:
        name: The graph's name for it.
        dtype: NumPy-style element type (`float32`, `int64`...).
        shape: One entry per axis: a size, a symbolic name (`N`), or None (unknown);
            None for the whole shape when even the rank is unknown.
    """

    name: str
    dtype: str
    shape: tuple[Dim, ...] | None


def element_type_name(elem_type: int) -> str:
    """Name an ONNX element type the NumPy way.

    Args:
        elem_type: A `TensorProto.DataType` value.

    Returns:
        `float32`, `int64`...; types NumPy lacks keep ONNX's name in lower case.
    """
    if elem_type in _ELEMENT_TYPES:
        return _ELEMENT_TYPES[elem_type]
    return str(onnx.TensorProto.DataType.Name(elem_type)).lower()


def _shape(tensor_type: Any) -> list[Dim] | None:
    if not tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(str(dim.dim_param))
        else:
            dims.append(None)
    return dims


def _type(type_proto: onnx.TypeProto) -> dict[str, Any]:
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        t = type_proto.tensor_type
        return {
            "kind": "tensor",
            "dtype": element_type_name(t.elem_type),
            "shape": _shape(t),
        }
    if kind == "sparse_tensor_type":
        s = type_proto.sparse_tensor_type
        return {
            "kind": "sparse_tensor",
            "dtype": element_type_name(s.elem_type),
            "shape": _shape(s),
        }
    if kind == "sequence_type":
        return {"kind": "sequence", "element": _type(type_proto.sequence_type.elem_type)}
    if kind == "optional_type":
        return {"kind": "optional", "element": _type(type_proto.optional_type.elem_type)}
    if kind == "map_type":
        m = type_proto.map_type
        return {
            "kind": "map",
            "key": element_type_name(m.key_type),
            "value": _type(m.value_type),
        }
    return {"kind": "unknown"}


def _value_infos(values: Any, skip: set[str]) -> list[dict[str, Any]]:
    return [{"name": v.name, **_type(v.type)} for v in values if v.name not in skip]


def build_manifest(package: ValidatedPackage, name: str | None = None) -> dict[str, Any]:
    """Describe a validated package as a manifest.

    Args:
        package: The output of `validate_package`.
        name: The model's name; defaults to the package directory's name.

    Returns:
        The manifest, already checked against the published schema.

    Raises:
        ModelPackageError: the name is not 1-96 letters, digits, `.`, `_` or `-`.
        ManifestError: the result does not match the schema (a bug, reported clearly).
    """
    name = name if name is not None else package.root.resolve().name
    if not _NAME.fullmatch(name):
        raise ModelPackageError(
            f"The model name {name!r} is not allowed. Use 1-96 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit.",
            path=str(package.root),
        )
    model = package.model
    graph = model.graph
    # Old exporters list initializers among the inputs; a caller never feeds those.
    initializers = {t.name for t in graph.initializer}
    # "" and "ai.onnx" name the same domain; skl2onnx lists both.
    opsets = [
        {"domain": domain, "version": version}
        for domain, version in sorted(
            {(o.domain or "ai.onnx", int(o.version)) for o in model.opset_import}
        )
    ]
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "name": name,
        "card": package.card.to_manifest(),
        "entry": package.entry,
        "inputs": _value_infos(graph.input, initializers),
        "outputs": _value_infos(graph.output, set()),
        "ir_version": int(model.ir_version),
        "opset_imports": opsets,
        "producer": {"name": model.producer_name, "version": model.producer_version},
        "metadata": {p.key: p.value for p in model.metadata_props},
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "role": f.role}
            for f in package.files
        ],
        "total_size": sum(f.size for f in package.files),
    }
    _check_card_io(manifest, str(package.root))
    validate_manifest(manifest)
    return manifest


def _check_card_io(manifest: Mapping[str, Any], path: str) -> None:
    """The card's feature and class names must fit the model they describe.

    Raises:
        ModelCardError: a name list is for an input the model lacks, or its length
            differs from the dimension it names.
    """
    card = manifest["card"]
    inputs = {i["name"]: i for i in manifest["inputs"]}
    features = card.get("features")
    if isinstance(features, list):
        if len(inputs) != 1:
            raise ModelCardError(
                f"The card lists features, but the model has {len(inputs)} inputs; name the "
                "input they belong to, e.g. 'features: {X: [age, height]}'.",
                path=path,
            )
        features = {next(iter(inputs)): features}
    for name, names in (features or {}).items():
        if name not in inputs:
            raise ModelCardError(
                f"The card names features for input {name!r}, but the model's inputs are "
                f"{sorted(inputs)}.",
                path=path,
            )
        width = (inputs[name].get("shape") or [None])[-1]
        if isinstance(width, int) and width != len(names):
            raise ModelCardError(
                f"The card names {len(names)} features for input {name!r}, which has "
                f"{width}; name each column once, in order.",
                path=path,
            )
    classes = card.get("classes") or []
    for output in manifest["outputs"]:
        shape = output.get("shape") or []
        probabilities = classes and "prob" in output["name"].lower() and len(shape) == 2
        if probabilities and isinstance(shape[-1], int) and shape[-1] != len(classes):
            raise ModelCardError(
                f"The card names {len(classes)} classes, but output {output['name']!r} "
                f"gives {shape[-1]} probabilities; name each class once, in order.",
                path=path,
            )


@functools.cache
def manifest_schema() -> dict[str, Any]:
    """Return the published manifest JSON Schema (draft 2020-12).

    Returns:
        The schema as a mapping.
    """
    text = resources.files("mercato.models").joinpath("manifest.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def validate_manifest(manifest: Mapping[str, Any]) -> None:
    """Check a manifest against the published schema.

    Args:
        manifest: A manifest, e.g. one fetched from the network by its CID.

    Raises:
        ManifestError: it does not match; the message names the first failing field.
    """
    validator = jsonschema.Draft202012Validator(manifest_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ManifestError(
            f"The manifest does not match the Mercato manifest schema at {where}: "
            f"{error.message}. Rebuild it with mercato.models.load_package.",
        )


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Encode a manifest canonically: the bytes whose CID a version commits to.

    Args:
        manifest: A manifest from `build_manifest` (or `ModelPackage.manifest`).

    Returns:
        UTF-8 JSON, keys sorted, no insignificant whitespace, no trailing newline.

    Raises:
        ManifestError: the manifest does not match the schema.
    """
    validate_manifest(manifest)
    return json.dumps(
        manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Decode and check manifest bytes, e.g. after fetching them by CID.

    Args:
        data: The canonical bytes.

    Returns:
        The manifest.

    Raises:
        ManifestError: not JSON, not canonical, or not matching the schema.
    """
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"The manifest is not UTF-8 JSON ({exc}).") from exc
    if not isinstance(manifest, dict):
        raise ManifestError("The manifest must be a JSON object.")
    if manifest_bytes(manifest) != data:
        raise ManifestError(
            "The manifest bytes are not in canonical form (sorted keys, no spaces). "
            "Re-encode them with mercato.models.manifest_bytes."
        )
    return manifest


def tensor_specs(items: list[Mapping[str, Any]]) -> list[TensorSpec]:
    """Turn the manifest's `inputs` or `outputs` into typed specs (tensors only).

    Args:
        items: `manifest["inputs"]` or `manifest["outputs"]`.

    Returns:
        One spec per tensor entry; non-tensor entries (sequences, maps) are skipped.
    """
    specs = []
    for item in items:
        if item.get("kind") != "tensor":
            continue
        shape = item.get("shape")
        specs.append(
            TensorSpec(
                name=str(item["name"]),
                dtype=str(item["dtype"]),
                shape=tuple(shape) if shape is not None else None,
            )
        )
    return specs
