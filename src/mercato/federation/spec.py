# SPDX-License-Identifier: AGPL-3.0-only
"""A federated task's spec: what to train, on data shaped how, for how many rounds.

A spec is data, never a program: a learner kind Mercato ships, its hyperparameters, the
input schema the data owners' files must match, the metric. The requester writes it as
TOML; the chain names its canonical JSON (sorted keys, no spaces) by the sha256 digest
inside a raw-codec CIDv1, so every party hashes the same bytes.

```toml
name = "digits"
description = "Handwritten digits, 8x8"
rounds = 3
local_epochs = 2
min_participants = 2
max_participants = 8
coordinator_address = "127.0.0.1:9092"   # the SuperLink's Fleet API
tls_root_cid = "bafk..."                 # its TLS root certificate (raw CIDv1)

[initial_model]
onnx = "initial.onnx"                    # or model_id = 3, version = 1

[learner]
kind = "sgd"                             # logistic_regression | sgd | mlp
[learner.hyperparameters]
alpha = 0.0001

[input]
n_features = 64
dtype = "float32"
feature_names = []                       # optional: CSV column names, in order
classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

[scoring]                                # scored mode (privacy "none"); all optional
aggregation = "trimmed_mean"             # trimmed_mean | median | krum | fedavg (not robust)
trim_fraction = 0.25                     # cut per side, rounded up: 2 of 6 replies
valuation = "auto"                       # auto | exact | tmc_shapley | loo (cheap, unfair)
evaluations_per_round = 256              # auto: exact while 2^players fits, else TMC
sybil_threshold = 0.98                   # mean cosine of two seats' update directions
validation_cid = "bafk..."               # set by 'mercato fl create --validation FILE'
```
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from multiformats import CID, multihash

from mercato.errors import DagFormatError, FederationSpecError, StorageError
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import MAX_BLOCK_SIZE, parse_cid
from mercato.storage.exporter import BlockSource, declared_size, decode_links, iter_file
from mercato.storage.unixfs import import_file, only_hash

MAX_SPEC_BYTES = 64 * 1024  # hyperparameters, not data (the index keeps no larger spec)
MAX_ROUNDS = 1_000
MAX_PARTICIPANTS = 100  # the contract's seat bitmap and share array size
MAX_FEATURES = 100_000
MAX_CLASSES = 10_000
MAX_EPOCHS = 1_000
LEARNERS = ("logistic_regression", "sgd", "mlp")
DTYPES = ("float32", "float64")
METRICS = ("accuracy",)
PRIVACY_MODES = ("none", "private")  # see mercato.federation.privacy
AGGREGATIONS = ("trimmed_mean", "median", "krum", "fedavg")
VALUATIONS = ("auto", "exact", "tmc_shapley", "loo")
BLOB_PROFILE = "unixfs-v1-2025"  # how a blob above one block is chunked (`blob_cid_for`)
BLOB_CHUNK = 1024 * 1024  # the profile's chunk size: pieces fed to the importer
MAX_BLOB_BYTES = 1024 * 1024 * 1024  # the largest model or parameter file read back
MAX_EXACT_PARTICIPANTS = 10  # exact Shapley costs 2^n evaluations per round
MAX_EVALUATIONS_PER_ROUND = 10_000
_SCORING_KEYS = (
    "aggregation",
    "trim_fraction",
    "krum_malicious",
    "valuation",
    "evaluations_per_round",
    "sybil_threshold",
    "validation_cid",
)
LearnerKind = Literal["logistic_regression", "sgd", "mlp"]
_NAME = re.compile(r"^[A-Za-z0-9_.\- ]{1,100}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}:[0-9]{1,5}$")
# Hyperparameters each learner accepts, with the type each must have.
_HYPERPARAMETERS: Mapping[str, Mapping[str, type | tuple[type, ...]]] = {
    "logistic_regression": {"alpha": (int, float), "eta0": (int, float), "seed": int},
    "sgd": {
        "alpha": (int, float),
        "eta0": (int, float),
        "loss": str,
        "seed": int,
    },
    "mlp": {
        "hidden_layer_sizes": list,
        "learning_rate_init": (int, float),
        "alpha": (int, float),
        "batch_size": int,
        "seed": int,
    },
}
_SGD_LOSSES = ("log_loss", "hinge", "modified_huber")


@dataclass(frozen=True)
class InitialModel:
    """Where training starts: an ONNX file's CID, or a registry model version."""

    onnx_cid: str | None = None
    model_id: int = 0
    version: int = 0


@dataclass(frozen=True)
class InputSchema:
    """What each data owner's rows look like."""

    n_features: int
    classes: tuple[int, ...]
    dtype: str = "float32"
    feature_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoringSettings:
    """How a scored task aggregates and pays (the spec's `[scoring]` table).

    Attributes:
        aggregation: The robust rule that makes each round's global model.
        trim_fraction: What the trimmed mean cuts from each end, per coordinate, as a
            share of the updates that replied, rounded up (`contribution.trimmed_per_side`).
        krum_malicious: Updates Krum assumes may be hostile.
        valuation: How each seat's contribution is measured on the validation set:
            "auto" (exact Shapley while a round's 2^players evaluations fit in the
            budget, else TMC-Shapley within it), "exact", "tmc_shapley", or "loo"
            (leave-one-out: cheap, but it can leave an honest owner whose data others
            also cover at 0, and a share of 0 forfeits the stake).
        evaluations_per_round: The budget of model evaluations per round ("auto" and
            "tmc_shapley").
        sybil_threshold: Mean cosine similarity of two seats' update directions above
            which they are one data set joined twice and share one seat's credit.
        validation_cid: Raw CIDv1 of the requester's validation file, committed at
            creation and revealed once the task ends; empty: the task is not scored.
    """

    aggregation: str = "trimmed_mean"
    trim_fraction: float = 0.25
    krum_malicious: int = 1
    valuation: str = "auto"
    evaluations_per_round: int = 256
    sybil_threshold: float = 0.98
    validation_cid: str = ""


def scoring_of(spec: TaskSpec) -> ScoringSettings:
    """The scoring settings of a spec (defaults for what the `[scoring]` table leaves out).

    Raises:
        FederationSpecError: a setting is unknown, of the wrong type or out of range.
    """
    table = dict(spec.scoring)
    unknown = sorted(set(table) - set(_SCORING_KEYS))
    if unknown:
        raise FederationSpecError(
            f"Unknown field(s) in [scoring]: {', '.join(unknown)}. "
            f"Known: {', '.join(_SCORING_KEYS)}."
        )
    settings = ScoringSettings(**table)
    if settings.aggregation not in AGGREGATIONS:
        raise FederationSpecError(
            f"scoring.aggregation {settings.aggregation!r} is not a rule Mercato runs; "
            f"pick one of {', '.join(AGGREGATIONS)}."
        )
    trim = settings.trim_fraction
    if isinstance(trim, bool) or not isinstance(trim, int | float) or not 0 <= trim < 0.5:
        raise FederationSpecError(
            f"scoring.trim_fraction must be a number from 0 to below 0.5, not {trim!r}."
        )
    malicious = settings.krum_malicious
    if isinstance(malicious, bool) or not isinstance(malicious, int) or malicious < 0:
        raise FederationSpecError(
            f"scoring.krum_malicious must be a whole number >= 0, not {malicious!r}."
        )
    if settings.valuation not in VALUATIONS:
        raise FederationSpecError(
            f"scoring.valuation {settings.valuation!r} is not known; "
            f"pick one of {', '.join(VALUATIONS)}."
        )
    budget = settings.evaluations_per_round
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int)
        or not 1 <= budget <= MAX_EVALUATIONS_PER_ROUND
    ):
        raise FederationSpecError(
            f"scoring.evaluations_per_round must be from 1 to {MAX_EVALUATIONS_PER_ROUND:,}, "
            f"not {budget!r}."
        )
    if settings.valuation == "exact" and spec.max_participants > MAX_EXACT_PARTICIPANTS:
        raise FederationSpecError(
            f"scoring.valuation 'exact' costs 2^n evaluations per round; it is allowed up "
            f"to {MAX_EXACT_PARTICIPANTS} participants, and this task seats "
            f"{spec.max_participants}. Use 'tmc_shapley' with a budget instead."
        )
    threshold = settings.sybil_threshold
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 < threshold <= 1
    ):
        raise FederationSpecError(
            f"scoring.sybil_threshold must be a number above 0 and at most 1, not {threshold!r}."
        )
    if not isinstance(settings.validation_cid, str):
        raise FederationSpecError("scoring.validation_cid must be a CID in a string.")
    if settings.validation_cid:
        _raw_cid(settings.validation_cid)
    if spec.privacy == "private" and table:
        raise FederationSpecError(
            "A private task cannot be scored (the coordinator never sees one update); "
            "remove the [scoring] table, or set privacy to 'none'."
        )
    if table and not settings.validation_cid:
        raise FederationSpecError(
            "A [scoring] table needs the validation set it scores on: create the task with "
            "'mercato fl create SPEC.toml --validation FILE', which commits its CID."
        )
    return settings


def is_scored(spec: TaskSpec) -> bool:
    """A task the coordinator scores: privacy "none" and a committed validation set."""
    return spec.privacy == "none" and bool(spec.scoring.get("validation_cid"))


@dataclass(frozen=True)
class TaskSpec:
    """A federated training task, as the requester posts it.

    Attributes:
        name: Short name shown in lists.
        description: Free text.
        initial_model: Where training starts.
        learner: One of `LEARNERS`.
        hyperparameters: The learner's settings (checked against `_HYPERPARAMETERS`).
        input: The data schema.
        rounds: Number of federated rounds.
        local_epochs: Passes over its own data each participant makes per round.
        min_participants: Fewest updates a round needs to count.
        max_participants: Seats in the task.
        metric: How the global model is scored ("accuracy").
        privacy: Privacy mode: "none" (the coordinator sees updates) or "private"
            (SecAgg+ and differential privacy; `mercato.federation.privacy`).
        parent_royalty_bps: Royalty to the initial model's owner on the result's sales.
        price: Price of the resulting model, in token base units.
        coordinator_address: The SuperLink's Fleet API, "host:port".
        tls_root_cid: The SuperLink's TLS root certificate (raw CIDv1), so joiners pin it.
        privacy_settings: Clipping, noise, delta and SecAgg+ settings (TOML: the
            `[privacy]` table, whose `mode` is `privacy`); left out of the JSON when empty.
        scoring: The `[scoring]` table (`ScoringSettings`): robust aggregation,
            contribution scores and the validation set's CID; left out of the JSON when
            empty (the task is then unscored: FedAvg, shares by examples).
    """

    name: str
    input: InputSchema
    learner: LearnerKind = "sgd"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    initial_model: InitialModel = field(default_factory=InitialModel)
    rounds: int = 3
    local_epochs: int = 1
    min_participants: int = 2
    max_participants: int = 10
    metric: str = "accuracy"
    privacy: str = "none"
    parent_royalty_bps: int = 0
    price: int = 0
    coordinator_address: str = ""
    tls_root_cid: str = ""
    privacy_settings: Mapping[str, Any] = field(default_factory=dict)
    scoring: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> TaskSpec:
        """Build a spec from its JSON/TOML document.

        Args:
            document: The parsed document.

        Returns:
            The validated spec.

        Raises:
            FederationSpecError: a field is missing, unknown, of the wrong type or out of range.
        """
        if not isinstance(document, Mapping):
            raise FederationSpecError("A task spec must be a JSON object / TOML table.")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(document) - known)
        if unknown:
            raise FederationSpecError(
                f"Unknown field(s) in the task spec: {', '.join(unknown)}. "
                f"Known fields: {', '.join(sorted(known))}."
            )
        data = dict(document)
        schema = data.get("input")
        if not isinstance(schema, Mapping):
            raise FederationSpecError(
                "The task spec needs an [input] table with n_features and classes."
            )
        try:
            data["input"] = InputSchema(
                n_features=_int(schema.get("n_features"), "input.n_features"),
                classes=tuple(_int(c, "input.classes") for c in _list(schema, "classes")),
                dtype=str(schema.get("dtype", "float32")),
                feature_names=tuple(str(n) for n in _list(schema, "feature_names")),
            )
            extra = sorted(set(schema) - {"n_features", "classes", "dtype", "feature_names"})
            if extra:
                raise FederationSpecError(f"Unknown field(s) in [input]: {', '.join(extra)}.")
            initial = data.get("initial_model", {})
            if not isinstance(initial, Mapping):
                raise FederationSpecError("[initial_model] must be a table.")
            extra = sorted(set(initial) - {"onnx_cid", "model_id", "version"})
            if extra:
                raise FederationSpecError(
                    f"Unknown field(s) in [initial_model]: {', '.join(extra)}."
                )
            data["initial_model"] = InitialModel(
                onnx_cid=(str(initial["onnx_cid"]) if initial.get("onnx_cid") else None),
                model_id=_int(initial.get("model_id", 0), "initial_model.model_id"),
                version=_int(initial.get("version", 0), "initial_model.version"),
            )
            hyper = data.get("hyperparameters", {})
            if not isinstance(hyper, Mapping):
                raise FederationSpecError("[hyperparameters] must be a table.")
            data["hyperparameters"] = dict(hyper)
            privacy_settings = data.get("privacy_settings", {})
            if not isinstance(privacy_settings, Mapping):
                raise FederationSpecError("[privacy] settings must be a table.")
            data["privacy_settings"] = dict(privacy_settings)
            scoring = data.get("scoring", {})
            if not isinstance(scoring, Mapping):
                raise FederationSpecError("[scoring] must be a table.")
            data["scoring"] = dict(scoring)
            return cls(**data)
        except TypeError as exc:  # a wrong type reached the dataclass
            raise FederationSpecError(
                f"The task spec has a field of the wrong type: {exc}."
            ) from exc

    @classmethod
    def from_toml(
        cls, path: str | Path, store: Blockstore | None = None, *, validation_cid: str = ""
    ) -> TaskSpec:
        """Read a spec from a TOML file (the CLI's format).

        `[initial_model] onnx = "file.onnx"` (relative to the TOML file) is added to
        `store` and replaced by its CID, so the spec names content, not a path.

        Args:
            path: The TOML file.
            store: Where the initial ONNX file goes; required when the spec names one.
            validation_cid: A scored task's validation set CID (`mercato fl create
                --validation`), set into the `[scoring]` table.

        Returns:
            The validated spec.

        Raises:
            FederationSpecError: the file is unreadable, not TOML, or the spec is invalid.
        """
        source = Path(path)
        try:
            document = tomllib.loads(source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise FederationSpecError(f"Cannot read the task spec {source}: {exc}.") from exc
        except tomllib.TOMLDecodeError as exc:
            raise FederationSpecError(f"{source} is not valid TOML: {exc}.") from exc
        initial = document.get("initial_model")
        if isinstance(initial, dict) and "onnx" in initial:
            if store is None:
                raise FederationSpecError(
                    "The spec names an initial ONNX file; pass a store to add it to."
                )
            onnx_path = source.parent / str(initial.pop("onnx"))
            try:
                onnx_bytes = onnx_path.read_bytes()
            except OSError as exc:
                raise FederationSpecError(
                    f"Cannot read the initial model {onnx_path}: {exc}."
                ) from exc
            initial["onnx_cid"] = str(store_bytes(store, onnx_bytes))
        learner = document.get("learner")
        if isinstance(learner, dict):
            # TOML groups the learner as a table; the JSON form is flat.
            document.pop("learner")
            document["learner"] = learner.get("kind", "sgd")
            document["hyperparameters"] = learner.get("hyperparameters", {})
            extra = sorted(set(learner) - {"kind", "hyperparameters"})
            if extra:
                raise FederationSpecError(f"Unknown field(s) in [learner]: {', '.join(extra)}.")
        privacy = document.get("privacy")
        if isinstance(privacy, dict):
            # TOML: [privacy] mode = "private" plus its settings; the JSON form is flat.
            document["privacy_settings"] = dict(privacy)
            document["privacy"] = document["privacy_settings"].pop("mode", "none")
        if validation_cid:
            scoring = document.setdefault("scoring", {})
            if not isinstance(scoring, dict):
                raise FederationSpecError("[scoring] must be a table.")
            scoring["validation_cid"] = validation_cid
        scoring = document.get("scoring")
        if isinstance(scoring, dict) and scoring.get("validation_cid"):
            # A scored task's spec names every setting, so a later change of a default
            # (valuation loo -> auto once) never changes how an existing task is scored
            # and verified.
            document["scoring"] = {**asdict(ScoringSettings()), **scoring}
        return cls.from_dict(document)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready document."""
        document = asdict(self)
        document["input"]["classes"] = list(self.input.classes)
        document["input"]["feature_names"] = list(self.input.feature_names)
        document["hyperparameters"] = dict(self.hyperparameters)
        document["privacy_settings"] = dict(self.privacy_settings)
        if not self.privacy_settings:
            del document["privacy_settings"]  # specs without settings keep their digest
        document["scoring"] = dict(self.scoring)
        if not self.scoring:
            del document["scoring"]
        return document

    def to_json_bytes(self) -> bytes:
        """The canonical JSON the chain names (sorted keys, compact, UTF-8)."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FederationSpecError(f"{what} must be an integer, got {value!r}.")
    return value


def _list(table: Mapping[str, Any], key: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise FederationSpecError(f"input.{key} must be a list.")
    return value


def _validate(spec: TaskSpec) -> None:
    # Runs on every construction, so a spec object is valid by existence.
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        raise FederationSpecError("name must be 1-100 letters, digits, spaces, '.', '_' or '-'.")
    if not isinstance(spec.description, str) or len(spec.description) > 4_000:
        raise FederationSpecError("description must be text of at most 4,000 characters.")
    if spec.learner not in LEARNERS:
        raise FederationSpecError(
            f"learner {spec.learner!r} is not one Mercato ships; pick one of {', '.join(LEARNERS)}."
        )
    allowed = _HYPERPARAMETERS[spec.learner]
    for key, value in spec.hyperparameters.items():
        if key not in allowed:
            raise FederationSpecError(
                f"{spec.learner} has no hyperparameter {key!r}; "
                f"known: {', '.join(sorted(allowed))}."
            )
        if isinstance(value, bool) or not isinstance(value, allowed[key]):
            raise FederationSpecError(f"hyperparameter {key} has the wrong type: {value!r}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise FederationSpecError(f"hyperparameter {key} must be a finite number.")
        if isinstance(value, int | float) and value < 0:
            raise FederationSpecError(f"hyperparameter {key} cannot be negative.")
    if spec.hyperparameters.get("loss", "log_loss") not in _SGD_LOSSES:
        raise FederationSpecError(f"loss must be one of {', '.join(_SGD_LOSSES)}.")
    sizes = spec.hyperparameters.get("hidden_layer_sizes", [16])
    if (
        not sizes
        or len(sizes) > 8
        or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 4096 for s in sizes)
    ):
        raise FederationSpecError("hidden_layer_sizes must be 1-8 integers from 1 to 4096.")
    schema = spec.input
    if not 1 <= schema.n_features <= MAX_FEATURES:
        raise FederationSpecError(f"input.n_features must be from 1 to {MAX_FEATURES}.")
    if not 2 <= len(schema.classes) <= MAX_CLASSES or len(set(schema.classes)) != len(
        schema.classes
    ):
        raise FederationSpecError(
            f"input.classes must list 2 to {MAX_CLASSES} distinct integer labels."
        )
    if schema.dtype not in DTYPES:
        raise FederationSpecError(f"input.dtype must be one of {', '.join(DTYPES)}.")
    if schema.feature_names and len(schema.feature_names) != schema.n_features:
        raise FederationSpecError(
            f"input.feature_names has {len(schema.feature_names)} names for "
            f"{schema.n_features} features."
        )
    if not 1 <= spec.rounds <= MAX_ROUNDS:
        raise FederationSpecError(f"rounds must be from 1 to {MAX_ROUNDS}.")
    if not 1 <= spec.local_epochs <= MAX_EPOCHS:
        raise FederationSpecError(f"local_epochs must be from 1 to {MAX_EPOCHS}.")
    if not 1 <= spec.min_participants <= spec.max_participants <= MAX_PARTICIPANTS:
        raise FederationSpecError(
            f"Need 1 <= min_participants <= max_participants <= {MAX_PARTICIPANTS}."
        )
    if spec.metric not in METRICS:
        raise FederationSpecError(f"metric must be one of {', '.join(METRICS)}.")
    if spec.privacy not in PRIVACY_MODES:
        raise FederationSpecError(f"privacy must be one of {', '.join(PRIVACY_MODES)}.")
    from mercato.federation.privacy import settings_of  # it imports this module

    settings_of(spec)
    if not isinstance(spec.scoring, Mapping):
        raise FederationSpecError("[scoring] must be a table.")
    scoring_of(spec)
    if not 0 <= spec.parent_royalty_bps <= 10_000:
        raise FederationSpecError("parent_royalty_bps must be from 0 to 10,000.")
    if spec.price < 0:
        raise FederationSpecError("price cannot be negative.")
    if spec.coordinator_address and not _ADDRESS.match(spec.coordinator_address):
        raise FederationSpecError(
            f"coordinator_address {spec.coordinator_address!r} must be host:port."
        )
    initial = spec.initial_model
    if initial.onnx_cid is not None and initial.model_id:
        raise FederationSpecError("initial_model names both an ONNX file and a model id; keep one.")
    if initial.onnx_cid is not None:
        _blob_cid(initial.onnx_cid)  # a large model is a UnixFS file (`blob_cid_for`)
    if spec.tls_root_cid:
        _raw_cid(spec.tls_root_cid)


def _raw_cid(text: str) -> CID:
    try:
        cid = CID.decode(text)
    except (ValueError, KeyError) as exc:
        raise FederationSpecError(f"{text!r} is not a CID.") from exc
    if cid.version != 1 or cid.codec.name != "raw" or cid.hashfun.name != "sha2-256":
        raise FederationSpecError(f"{text} must be a raw-codec sha2-256 CIDv1.")
    return cid


def _blob_cid(text: str) -> CID:
    # A blob's CID (`blob_cid_for`): a raw block, or a UnixFS file's dag-pb root.
    try:
        cid = CID.decode(text)
    except (ValueError, KeyError) as exc:
        raise FederationSpecError(f"{text!r} is not a CID.") from exc
    if cid.version != 1 or cid.codec.name not in ("raw", "dag-pb"):
        raise FederationSpecError(f"{text} must be a raw or dag-pb CIDv1.")
    if cid.hashfun.name != "sha2-256":
        raise FederationSpecError(f"{text} must be a sha2-256 CIDv1.")
    return cid


def raw_cid_for(data: bytes) -> CID:
    """The raw-codec sha2-256 CIDv1 of `data` (how specs, certificates, keys and round
    records are named: each fits one block)."""
    return CID("base32", 1, "raw", multihash.digest(data, "sha2-256"))


def _pieces(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), BLOB_CHUNK):
        yield bytes(view[start : start + BLOB_CHUNK])


def blob_cid_for(data: bytes) -> CID:
    """The CID a federation blob (a round's model, the step and previous parameter
    files, an initial ONNX model) is stored and committed under.

    Up to `MAX_BLOCK_SIZE` bytes: `raw_cid_for(data)`, one raw block (what every blob
    was named before larger ones were allowed, so those CIDs are unchanged). Above it:
    the root of a UnixFS file imported with the `unixfs-v1-2025` profile (CIDv1, 1 MiB
    raw leaves, dag-pb nodes: the CID `ipfs add --cid-version=1 --raw-leaves
    --chunker=size-1048576` gives). Either way the sha256 inside the CID, which is what
    the chain commits, names exactly one block: the blob itself or its DAG's root.
    """
    if len(data) <= MAX_BLOCK_SIZE:
        return raw_cid_for(data)
    return only_hash(_pieces(data), profile=BLOB_PROFILE)


def store_bytes(store: Blockstore, data: bytes) -> CID:
    """Add `data` to `store` under `blob_cid_for(data)`, pinned, and return that CID: one
    raw block up to the block size limit, else a UnixFS file (its blocks and root).

    Pinned as `ipfs add` pins: a spec, a round's model, evidence or a node key is what
    others fetch from this node to join or verify a task, so `mercato store gc` must
    keep it. The block is written and pinned under the store's writing lock, so a gc
    running at the same moment cannot take it in between.

    Raises:
        BlockWriteError: the disk write failed.
    """
    if len(data) > MAX_BLOCK_SIZE:
        return import_file(_pieces(data), store, profile=BLOB_PROFILE, pin=True).cid
    cid = raw_cid_for(data)
    with store.writing():
        store.put(cid, data)
        store.pin(cid, check_complete=False)
    return cid


def read_blob(source: BlockSource, cid: CID | str, *, max_bytes: int = MAX_BLOB_BYTES) -> bytes:
    """A blob's bytes by its CID (`blob_cid_for`), every block verified on the way.

    Args:
        source: Where blocks come from (the node's store, a gateway backend).
        cid: A raw CID (one block) or a UnixFS file's root.
        max_bytes: Refuse a file whose root declares more (before reading it).

    Returns:
        The bytes.

    Raises:
        InvalidCIDError: `cid` is not a CID.
        BlockNotFoundError: a block is missing.
        BlockHashMismatchError: a block's bytes do not hash to its CID (a tampered
            chunk; the local store moves it to quarantine).
        DagFormatError: not a UnixFS file, its sizes disagree, or it is above
            `max_bytes`.
    """
    root = parse_cid(cid)
    if root.codec.name == "raw":
        return bytes(source.get_block(root))
    size = declared_size(root, source)
    if size > max_bytes:
        raise DagFormatError(
            f"{root} declares {size:,} bytes; a federation blob is at most {max_bytes:,}.",
            cid=str(root),
        )
    return b"".join(bytes(piece) for piece in iter_file(root, source))


def blob_cid_for_root(digest: bytes, root: bytes) -> CID:
    """The blob CID whose sha256 is `digest` (what the chain commits for a round's
    model), given the block it names (`root`, read from the store by that digest).

    A raw blob is at most `MAX_BLOCK_SIZE` bytes; a larger blob's root is a dag-pb
    UnixFS file node declaring more than that. So the root block itself says which:
    a dag-pb file node declaring more than `MAX_BLOCK_SIZE` bytes is a chunked blob's
    root, anything else is a raw blob. (Reading the result still re-hashes every block
    against it, so a wrong guess can only fail, never give other bytes.)
    """
    wrapped = multihash.get("sha2-256").wrap(bytes(digest))
    as_raw = CID("base32", 1, "raw", wrapped)
    as_dag = CID("base32", 1, "dag-pb", wrapped)
    try:
        node = decode_links(bytes(as_dag), root)
        declared = declared_size(as_dag, _OneBlock(root))
    except StorageError:
        return as_raw
    return as_dag if node.links and declared > MAX_BLOCK_SIZE else as_raw


# A chunked blob's root block holds at most 1,024 links of ~45 bytes and a short Data
# field: a stored block above this is a raw blob, told apart without reading it.
_ROOT_BLOCK_MAX = 128 * 1024


def round_model_cid(store: Blockstore, digest: bytes) -> CID:
    """The CID to fetch a round's model by, from the sha256 the chain commits.

    With the root block in `store` (the coordinator's node, or a node that verified the
    task), it says whether the model is one raw block or a UnixFS file; without it the
    raw CID is the best guess (every model up to one block, which is most of them).
    Only a block small enough to be a root is read: a task page lists every round, and
    a page view must not read and hash every round's model.
    """
    raw = CID("base32", 1, "raw", multihash.get("sha2-256").wrap(bytes(digest)))
    if not store.has(raw) or store.size(raw) > _ROOT_BLOCK_MAX:
        return raw
    return blob_cid_for_root(digest, bytes(store.get(raw)))


class _OneBlock:
    def __init__(self, block: bytes) -> None:
        self.block = block

    def get_block(self, cid: CID) -> bytes:
        return self.block


def store_spec(store: Blockstore, spec: TaskSpec) -> CID:
    """Add a spec's canonical JSON to `store`.

    Args:
        store: The node's blockstore.
        spec: The spec.

    Returns:
        The spec's raw-codec CIDv1 (its sha256 digest is what `create_task` takes).

    Raises:
        FederationSpecError: the canonical JSON is above `MAX_SPEC_BYTES`.
        BlockWriteError: the disk write failed.
    """
    data = spec.to_json_bytes()
    if len(data) > MAX_SPEC_BYTES:
        raise FederationSpecError(
            f"The spec is {len(data):,} bytes; at most {MAX_SPEC_BYTES:,} are allowed."
        )
    return store_bytes(store, data)


def load_spec(data: bytes) -> TaskSpec:
    """Parse a spec document someone else wrote (from the chain's CID).

    Args:
        data: The JSON bytes.

    Returns:
        The validated spec.

    Raises:
        FederationSpecError: too large, not JSON, or not a valid spec.
    """
    if len(data) > MAX_SPEC_BYTES:
        raise FederationSpecError(
            f"The spec is {len(data):,} bytes; at most {MAX_SPEC_BYTES:,} are allowed."
        )
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FederationSpecError(f"The spec is not JSON: {exc}.") from exc
    return TaskSpec.from_dict(cast(Mapping[str, Any], document))


# What reading someone else's spec document may raise.
_UNREADABLE_SPEC = (FederationSpecError, TypeError, ValueError, KeyError, AttributeError)


def _scoring_read(document: Mapping[str, Any]) -> tuple[TaskSpec, ScoringSettings]:
    spec = TaskSpec.from_dict(dict(document))
    return spec, scoring_of(spec)


def scoring_in_effect(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A scored task's scoring settings with every default filled in, for JSON answers
    (`mercato fl show --json`, `GET /v1/tasks/{id}`): what the spec's `[scoring]` table
    means, not only what it writes.

    Args:
        document: The spec document (someone else's: it may be missing or invalid).

    Returns:
        The settings, or None when the spec is absent or unreadable, the task is
        private, or it is not scored (`scoring_terms` says which, in words).
    """
    if not document:
        return None
    try:
        spec, settings = _scoring_read(document)
    except _UNREADABLE_SPEC:
        return None
    if spec.privacy == "private" or not is_scored(spec):
        return None
    return asdict(settings)


def scoring_terms(document: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """How a task pays and what its model survives, as short text for a data owner
    deciding to join (`mercato fl show`, the task page): scored or not, the
    aggregation and how many hostile updates it keeps out, the valuation, the Sybil
    threshold and the validation set's CID.

    Args:
        document: The spec document (someone else's: it may be missing or invalid).

    Returns:
        (label, text) pairs; one saying the scoring cannot be read for a broken spec.
    """
    if not document:
        return []
    try:
        spec, settings = _scoring_read(document)
    except _UNREADABLE_SPEC as exc:
        return [("Scoring", f"unreadable: {str(exc)[:200]} Do not join on these terms.")]
    if spec.privacy == "private":
        return [
            (
                "Scoring",
                "none (private task: the coordinator never sees one update); equal shares "
                "among the seats in every round, a drop-out forfeits its stake",
            )
        ]
    if not is_scored(spec):
        return [
            (
                "Scoring",
                "unscored (no validation set): FedAvg, and shares by the examples each "
                "owner claims, which a free-rider can inflate",
            )
        ]
    from mercato.federation.contribution import HARMFUL_ROUND_SCORE, auto_method
    from mercato.federation.contribution import tolerated_bad_seats as tolerated

    low, high = spec.min_participants, spec.max_participants

    def keeps_out(rule: str) -> str:
        counts = [
            tolerated(rule, settings.trim_fraction, settings.krum_malicious, n) for n in (low, high)
        ]
        if low == high:
            return f"keeps out {counts[1]} hostile update(s) of {high}"
        return (
            f"keeps out {counts[0]} hostile update(s) when {low} seats reply, "
            f"{counts[1]} when {high} do"
        )

    rule = {
        "trimmed_mean": f"trimmed mean, {settings.trim_fraction:g} of the replies cut from "
        f"each end (rounded up): {keeps_out('trimmed_mean')}",
        "median": f"median: {keeps_out('median')}",
        "krum": f"Krum, assuming {settings.krum_malicious} hostile: {keeps_out('krum')}",
        "fedavg": "FedAvg: not robust, one scaled update can wreck the model",
    }[settings.aggregation]
    rule += (
        "; updates that moved nothing or cost over "
        f"{-HARMFUL_ROUND_SCORE * 100:g} points of the metric in a round are left out of it"
    )
    budget = settings.evaluations_per_round
    valuation = {
        "auto": f"auto: exact Shapley while 2^players fits in {budget} evaluations a "
        f"round, else TMC-Shapley within them (at {high} seats: "
        f"{auto_method(high, budget).replace('_', '-')})",
        "exact": "exact Shapley (2^players evaluations a round)",
        "tmc_shapley": f"TMC-Shapley, {budget} evaluations a round",
        "loo": "leave-one-out: cheap, but an honest owner whose data others also hold "
        "can be valued at 0, and a share of 0 forfeits the stake",
    }[settings.valuation]
    return [
        ("Scoring", "scored: paid by measured contribution on the requester's validation set"),
        ("Aggregation", rule),
        ("Valuation", valuation),
        (
            "Sybil threshold",
            f"{settings.sybil_threshold:g} mean cosine of two seats' update directions: "
            "such seats share one seat's credit",
        ),
        ("Validation set", f"{settings.validation_cid} (revealed once the task ends)"),
    ]
