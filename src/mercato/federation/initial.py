# SPDX-License-Identifier: AGPL-3.0-only
"""Where a task's training starts: an ONNX file in the spec, or a registry model version.

    [initial_model]
    model_id = 7
    version = 2

A registry model is found on the chain (its version's artifact CID and plaintext
sha256), fetched from this node's store or else from its creator's provider URL (every
block checked against the CID, the plaintext against the sha256), and opened with the
key this account holds for it: none for a free model, the key the seller delivered on
this account's licence for a paid one, or the owner's own key. Nothing is sent, staked
or trained before all of that succeeded.

The learner can only start from a model whose parameters it trains: a linear classifier
that reads the raw input row (no scaler or other step in front of it) with the task's
input width and classes. Two skl2onnx layouts carry one:

- `LinearClassifier` (ai.onnx.ml), skl2onnx's default for `LogisticRegression` and
  `LinearSVC`: attributes `coefficients` (classes x features, row-major),
  `intercepts`, `classlabels_ints`; a binary model holds the positive class's row and
  its negation;
- `MatMul(X, coef) + intercept` with a `classes` initializer, skl2onnx's layout for
  `SGDClassifier` (and what `mercato.federation.learning.export_onnx` writes).

Anything else (an MLP, a tree ensemble, a pipeline with preprocessing, string labels) is
refused with what to change, rather than guessed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx.numpy_helper

from mercato.errors import InitialModelError, InitialModelLicenseError
from mercato.federation.learning import Params, check_shapes

if TYPE_CHECKING:
    from mercato.client.market import Market
    from mercato.client.models import ModelInfo, VersionInfo
    from mercato.federation.spec import TaskSpec

# A registry model version's ONNX bytes, by (model id, version).
InitialSource = Callable[[int, int], bytes]

# Nodes that may sit between the input, the classifier and the outputs of an skl2onnx
# linear classifier; any other node computes something the learner would drop.
_LINEAR_CLASSIFIER_OPS = {"LinearClassifier", "Cast", "Normalizer", "ZipMap", "Identity"}
_SGD_OPS = {
    "MatMul", "Add", "Mul", "Exp", "Reciprocal", "ReduceSum", "Cast", "Not", "Div",
    "ArgMax", "ZipMap", "ArrayFeatureExtractor", "Reshape", "Identity", "Sigmoid",
    "Softmax", "Sub", "Neg", "Abs", "Greater", "Where", "Concat", "Unsqueeze", "Squeeze",
    "Shape", "Gather", "Flatten", "Max", "Clip", "LessOrEqual", "Less", "Equal",
}  # fmt: skip
_LINEAR_START = (
    "Start from a linear classifier on the raw input: scikit-learn's LogisticRegression "
    "or SGDClassifier exported with skl2onnx, or leave [initial_model] out to start from "
    "fresh parameters."
)


def params_from_registry_onnx(spec: TaskSpec, data: bytes, model_id: int, version: int) -> Params:
    """The learner's starting parameters from a registry model's ONNX bytes.

    Args:
        spec: The task spec (learner, input width, classes).
        data: The model version's ONNX file.
        model_id: The model (named in errors).
        version: Its version (named in errors).

    Returns:
        `[coef, intercept]` in the learner's layout.

    Raises:
        InitialModelError: the learner is not linear, the bytes are not ONNX, the model
            is not a linear classifier on the raw input, or its width or classes differ
            from the spec's.
    """

    def refuse(reason: str) -> InitialModelError:
        return InitialModelError(model_id, version, reason)

    if spec.learner not in ("logistic_regression", "sgd"):
        raise refuse(
            f"the task's learner is {spec.learner!r}, which cannot start from a stored "
            "model; use learner 'logistic_regression' or 'sgd', or leave [initial_model] out"
        )
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # onnx raises DecodeError and others without a common base
        raise refuse(f"its file is not ONNX ({type(exc).__name__})") from exc
    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if len(inputs) != 1:
        raise refuse(f"it takes {len(inputs)} inputs; the learner reads one row of features")
    width = _declared_width(inputs[0])
    if width is not None and width != spec.input.n_features:
        raise refuse(
            f"it reads {width} features per row and the task's input has "
            f"{spec.input.n_features}; pick a model trained on the task's columns, or set "
            f"[input] n_features = {width} if the task's data really has {width} columns"
        )
    ops = [node.op_type for node in graph.node]
    if "LinearClassifier" in ops:
        coef, intercept, labels = _from_linear_classifier(graph, inputs[0].name, refuse)
    elif {"MatMul"} <= set(ops) and {"coef", "intercept", "classes"} <= {
        t.name for t in graph.initializer
    }:
        coef, intercept, labels = _from_sgd_layout(graph, inputs[0].name, refuse)
    else:
        shown = ", ".join(sorted(set(ops))[:8])
        raise refuse(f"it is not a linear classifier (its graph runs {shown}). {_LINEAR_START}")
    if labels != tuple(spec.input.classes):
        raise refuse(
            f"its classes are {list(labels)} and the task's are {list(spec.input.classes)}; "
            "the learner keeps the task's classes, so pick a model with the same ones"
        )
    if coef.shape[1] != spec.input.n_features:
        raise refuse(
            f"its weights are for {coef.shape[1]} features and the task's input has "
            f"{spec.input.n_features}"
        )
    if len(labels) == 2 and coef.shape[0] == 2:
        # skl2onnx writes a binary model as [-w, w]; the learner keeps the positive row.
        if not np.allclose(coef[0], -coef[1]) or not np.isclose(intercept[0], -intercept[1]):
            raise refuse("its two class rows are not one binary classifier's")
        coef, intercept = coef[1:], intercept[1:]
    params: Params = [coef.copy(), intercept.copy()]
    try:
        check_shapes(spec, params)
    except ValueError as exc:
        raise refuse(str(exc).rstrip(".")) from exc
    return params


def _declared_width(value: onnx.ValueInfoProto) -> int | None:
    dims = value.type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value"):
        return int(dims[1].dim_value)
    return None


def _reads_input(
    graph: onnx.GraphProto, node: onnx.NodeProto, source: str, allowed: set[str]
) -> bool:
    """Whether `node`'s first input is the graph input, directly or through Casts only."""
    producers = {out: n for n in graph.node for out in n.output}
    name = node.input[0]
    while name != source:
        producer = producers.get(name)
        if producer is None or producer.op_type not in allowed:
            return False
        name = producer.input[0]
    return True


def _from_linear_classifier(
    graph: onnx.GraphProto, source: str, refuse: Callable[[str], InitialModelError]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], tuple[int, ...]]:
    nodes = [n for n in graph.node if n.op_type == "LinearClassifier"]
    others = {n.op_type for n in graph.node} - _LINEAR_CLASSIFIER_OPS
    if len(nodes) != 1 or others:
        shown = ", ".join(sorted(others)) or "several classifiers"
        raise refuse(
            f"it computes more than one linear classifier ({shown}); the learner would "
            f"drop that step. {_LINEAR_START}"
        )
    node = nodes[0]
    if not _reads_input(graph, node, source, {"Cast", "Identity"}):
        raise refuse(f"its classifier does not read the raw input row. {_LINEAR_START}")
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if "classlabels_ints" not in attributes:
        raise refuse("its class labels are strings; the task's classes are integers")
    labels = tuple(int(c) for c in attributes["classlabels_ints"])
    weights = np.asarray(attributes.get("coefficients", []), dtype=np.float64)
    intercept = np.asarray(attributes.get("intercepts", []), dtype=np.float64)
    rows = len(intercept)
    if rows == 0 or weights.size % rows:
        raise refuse("its coefficients do not divide into one row per class")
    return weights.reshape(rows, weights.size // rows), intercept, labels


def _from_sgd_layout(
    graph: onnx.GraphProto, source: str, refuse: Callable[[str], InitialModelError]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], tuple[int, ...]]:
    others = {n.op_type for n in graph.node} - _SGD_OPS
    if others:
        raise refuse(
            f"it computes more than a linear classifier ({', '.join(sorted(others))}); "
            f"the learner would drop that step. {_LINEAR_START}"
        )
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and "coef" in n.input]
    if len(matmuls) != 1 or not _reads_input(graph, matmuls[0], source, {"Cast", "Identity"}):
        raise refuse(f"its weights are not applied to the raw input row. {_LINEAR_START}")
    tensors = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    classes = tensors["classes"]
    if not np.issubdtype(classes.dtype, np.integer):
        raise refuse("its class labels are strings; the task's classes are integers")
    coef = np.asarray(tensors["coef"], dtype=np.float64)
    if coef.ndim != 2:
        raise refuse("its weights are not a matrix")
    intercept = np.ravel(np.asarray(tensors["intercept"], dtype=np.float64))
    return coef.T, intercept, tuple(int(c) for c in np.ravel(classes))


class RegistryModels:
    """Reads registry model versions' ONNX for this node's account (an `InitialSource`).

    Args:
        market: A market on this node (its store, chain and, for a paid model, the
            account whose licence opens it).
    """

    def __init__(self, market: Market) -> None:
        self._market = market

    def __call__(self, model_id: int, version: int) -> bytes:
        """The ONNX bytes of `version` of `model_id`, fetched and checked.

        Raises:
            InitialModelError: no such model or version, the package holds no single
                ONNX file, or its bytes cannot be fetched or opened.
            InitialModelLicenseError: the model is paid and this account holds no
                licence for it (or none whose delivered key opens this version).
        """
        from mercato.client.artifacts import restore_package
        from mercato.client.fetching import artifact_limit
        from mercato.errors import CryptoError, DownloadError, MarketError, StorageError

        info, chosen = self.version(model_id, version)
        key = self.key(info, chosen)
        market = self._market
        limit = artifact_limit(market.store, chosen, encrypted=key is not None)
        try:
            market.orders.fetch_artifact(chosen, info.provider_url, limit, chosen_by_caller=False)
        except MarketError as exc:
            raise InitialModelError(
                model_id, version, f"its bytes cannot be fetched: {exc}"
            ) from exc
        with tempfile.TemporaryDirectory(prefix="mercato-initial-") as scratch:
            target = Path(scratch) / "package"
            try:
                restore_package(
                    market.store,
                    chosen.artifact_cid,
                    key,
                    chosen.plaintext_sha256,
                    target,
                    max_size=limit,
                )
            except (CryptoError, DownloadError, StorageError) as exc:
                raise InitialModelError(
                    model_id, version, f"its artifact does not open: {exc}"
                ) from exc
            files = sorted(p for p in target.rglob("*.onnx") if p.is_file())
            if len(files) != 1:
                raise InitialModelError(
                    model_id, version, f"its package holds {len(files)} ONNX files, not one"
                )
            return files[0].read_bytes()

    def version(self, model_id: int, version: int) -> tuple[ModelInfo, VersionInfo]:
        """The model and the version the spec names.

        Raises:
            InitialModelError: no such model or version (or version 0).
        """
        from mercato.errors import ModelNotFoundError

        if version < 1:
            raise InitialModelError(
                model_id,
                version,
                "the spec names no version; set [initial_model] version to the one to start "
                "from ('mercato show MODEL' lists them), so every run starts from the same bytes",
            )
        try:
            info = self._market.models.show(model_id)
        except ModelNotFoundError as exc:
            raise InitialModelError(model_id, version, "no such model on this chain") from exc
        if version > len(info.versions):
            raise InitialModelError(
                model_id, version, f"the model has {len(info.versions)} version(s)"
            )
        return info, info.versions[version - 1]

    def key(self, info: ModelInfo, chosen: VersionInfo) -> bytes | None:
        """The content key that opens `chosen` for this account (None: stored in the clear).

        Raises:
            InitialModelLicenseError: paid, and no licence (or none for this version).
        """
        from mercato.crypto import derive_buyer_key

        market = self._market
        model_id = int(info.model_id)
        account = market.account
        address = account.address if account is not None else None
        if address is not None and info.owner == address:
            from mercato.client.sale_keys import sale_key

            return sale_key(market, model_id, chosen, info.owner)
        marketplace = market.contracts.marketplace
        licensed = address is not None and marketplace.has_license(address, model_id)
        if info.listing.price == 0 and not licensed:
            return None
        if account is None or address is None or not licensed:
            raise InitialModelLicenseError(model_id, chosen.version, address)
        delivered = market.logs(marketplace, "Delivered", model_id=model_id, buyer=address)
        if not delivered:  # a free licence: the artifact is in the clear
            return None
        keyed = [e for e in delivered if int(e["args"]["version"]) == chosen.version]
        if not keyed:
            got = int(delivered[-1]["args"]["version"])
            raise InitialModelLicenseError(model_id, chosen.version, address, delivered_version=got)
        return derive_buyer_key(account, market.chain_id).unwrap(
            bytes(keyed[-1]["args"]["wrapped_key"])
        )


def check_licence(market: Market, model_id: int, version: int) -> None:
    """Refuses early (before a task is created) when this account cannot open the model.

    Raises:
        InitialModelError: no such model or version.
        InitialModelLicenseError: paid and not licensed to this account.
    """
    models = RegistryModels(market)
    info, chosen = models.version(model_id, version)
    models.key(info, chosen)


def load_initial_params(spec: TaskSpec, source: InitialSource) -> Params:
    """The starting parameters of a spec that names a registry model version.

    Raises:
        InitialModelError / InitialModelLicenseError: see `RegistryModels` and
            `params_from_registry_onnx`.
    """
    initial = spec.initial_model
    data = source(initial.model_id, initial.version)
    return params_from_registry_onnx(spec, data, initial.model_id, initial.version)


__all__ = [
    "InitialSource",
    "RegistryModels",
    "check_licence",
    "load_initial_params",
    "params_from_registry_onnx",
]
