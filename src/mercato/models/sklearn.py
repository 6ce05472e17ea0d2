# SPDX-License-Identifier: AGPL-3.0-only
"""Turn a fitted scikit-learn estimator into a Mercato model package (via skl2onnx).

The export is deterministic: the same fitted estimator always gives the same bytes, so
the same manifest and CID. skl2onnx writes no timestamps, but it names the graph with a
random UUID: we replace that, pin the opsets, clear the doc strings and name the batch
axis `N` so the manifest shows a symbolic dimension instead of an unknown one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import onnx.numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from mercato.models.card import CARD_FILENAME, ModelCard, render_card
from mercato.models.package import ModelPackage, load_package

# Opsets every ONNX Runtime since 1.14 runs; pinned so a newer skl2onnx gives the same bytes.
DEFAULT_OPSETS: Mapping[str, int] = {"": 17, "ai.onnx.ml": 3}
BATCH_DIM = "N"


def _name_batch_axis(model: onnx.ModelProto) -> None:
    # skl2onnx leaves the batch axis unnamed; naming it lets the runtime check that all
    # inputs and outputs agree on the batch size.
    for value in list(model.graph.input) + list(model.graph.output):
        if not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value") and not dims[0].dim_param:
            dims[0].dim_param = BATCH_DIM


def _strip_doc_strings(model: onnx.ModelProto) -> None:
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""


def _atomic_write(path: Path, data: bytes) -> None:
    # Temp file + fsync + rename: a crash never leaves a half-written model.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a package is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sklearn_to_onnx(
    estimator: Any,
    n_features: int,
    *,
    input_name: str = "X",
    opsets: Mapping[str, int] = DEFAULT_OPSETS,
) -> onnx.ModelProto:
    """Convert a fitted estimator that takes a float matrix to ONNX.

    Args:
        estimator: A fitted scikit-learn estimator or pipeline.
        n_features: Number of input columns.
        input_name: The graph input's name.
        opsets: Opset per domain ("" is the default ONNX domain).

    Returns:
        The model; classifiers output `label` and `probabilities` tensors (no ZipMap).

    Raises:
        RuntimeError: skl2onnx cannot convert this estimator (its own error, chained).
    """
    options: dict[int, dict[str, Any]] = {}
    if hasattr(estimator, "predict_proba"):
        # ZipMap turns probabilities into a list of dicts; a plain tensor is what a
        # buyer's client and the runtime's JSON encoding expect.
        options = {id(estimator): {"zipmap": False}}
    model = convert_sklearn(
        estimator,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        target_opset=dict(opsets),
        options=options,
    )
    _name_batch_axis(model)
    _strip_doc_strings(model)
    # skl2onnx names the graph with a random UUID; that alone would change every build.
    model.graph.name = type(estimator).__name__
    return model


def write_package(
    model: onnx.ModelProto,
    card: ModelCard,
    directory: str | Path,
    *,
    model_filename: str = "model.onnx",
    external_data: bool = False,
    name: str | None = None,
) -> ModelPackage:
    """Write an ONNX model and its card as a package, then validate it.

    Args:
        model: The model.
        card: Its card; rendered to README.md.
        directory: The package directory; created if missing.
        model_filename: The entry's file name.
        external_data: Keep tensors in `<model_filename>.data` (ONNX external data).
        name: The model's name; defaults to the directory's name.

    Returns:
        The loaded, validated package.

    Raises:
        ModelPackageError: the written package fails validation (see `load_package`).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the caller's stays as is
    # skl2onnx lists opset imports in an order that can change from one process to the
    # next (it collects domains in a set); sorted, the same model gives the same bytes.
    imports = sorted(model.opset_import, key=lambda entry: (entry.domain, entry.version))
    del model.opset_import[:]
    model.opset_import.extend(imports)
    if external_data:
        for tensor in model.graph.initializer:
            # Only raw_data tensors move to external data; skl2onnx writes float_data.
            array = onnx.numpy_helper.to_array(tensor)
            tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
        data_name = f"{model_filename}.data"
        (root / data_name).unlink(missing_ok=True)
        onnx.external_data_helper.convert_model_to_external_data(
            model, all_tensors_to_one_file=True, location=data_name, size_threshold=256
        )
        # write_external_data_tensors appends to the data file and rewrites the protos.
        model = onnx.external_data_helper.write_external_data_tensors(model, str(root))
        os.chmod(root / data_name, 0o644)
    _atomic_write(root / model_filename, model.SerializeToString(deterministic=True))
    _atomic_write(root / CARD_FILENAME, render_card(card).encode("utf-8"))
    return load_package(root, name=name)


def export_sklearn(
    estimator: Any,
    n_features: int,
    card: ModelCard,
    directory: str | Path,
    *,
    external_data: bool = False,
    name: str | None = None,
) -> ModelPackage:
    """Export a fitted scikit-learn estimator as a Mercato package.

    Args:
        estimator: A fitted estimator or pipeline taking a float matrix.
        n_features: Number of input columns.
        card: The model card to write as README.md.
        directory: The package directory; created if missing.
        external_data: Keep the weights in an external-data file next to the model.
        name: The model's name; defaults to the directory's name.

    Returns:
        The validated package.

    Raises:
        RuntimeError: skl2onnx cannot convert the estimator.
        ModelPackageError: the result fails validation.
    """
    model = sklearn_to_onnx(estimator, n_features)
    return write_package(model, card, directory, external_data=external_data, name=name)
