# SPDX-License-Identifier: AGPL-3.0-only
"""Task specs: TOML in, canonical JSON out, hostile documents refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mercato.errors import FederationSpecError
from mercato.federation.spec import (
    MAX_SPEC_BYTES,
    InputSchema,
    TaskSpec,
    load_spec,
    raw_cid_for,
    store_spec,
)
from mercato.storage.blockstore import Blockstore

TOML = """
name = "digits"
description = "8x8 digits"
rounds = 3
local_epochs = 2
min_participants = 2
max_participants = 4
coordinator_address = "127.0.0.1:9092"

[initial_model]
onnx = "initial.onnx"

[learner]
kind = "sgd"
[learner.hyperparameters]
alpha = 0.001
loss = "log_loss"

[input]
n_features = 4
classes = [0, 1, 2]
"""


def _spec(**changes: object) -> TaskSpec:
    fields: dict[str, object] = {
        "name": "digits",
        "input": InputSchema(n_features=4, classes=(0, 1, 2)),
    }
    fields.update(changes)
    return TaskSpec(**fields)  # type: ignore[arg-type]


def test_from_toml_stores_the_initial_model_and_round_trips(tmp_path: Path) -> None:
    (tmp_path / "initial.onnx").write_bytes(b"not really onnx, only stored")
    (tmp_path / "task.toml").write_text(TOML)
    store = Blockstore(tmp_path / "store")
    spec = TaskSpec.from_toml(tmp_path / "task.toml", store)
    assert spec.learner == "sgd"
    assert spec.hyperparameters == {"alpha": 0.001, "loss": "log_loss"}
    assert spec.initial_model.onnx_cid == str(raw_cid_for(b"not really onnx, only stored"))
    assert (
        store.get(raw_cid_for(b"not really onnx, only stored")) == b"not really onnx, only stored"
    )
    cid = store_spec(store, spec)
    data = store.get(cid)
    assert data == spec.to_json_bytes()
    assert load_spec(data) == spec
    # Canonical: sorted keys, no spaces, so every party hashes the same bytes.
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"learner": "xgboost_from_requester"}, "not one Mercato ships"),
        ({"hyperparameters": {"__import__": "os"}}, "no hyperparameter"),
        ({"hyperparameters": {"alpha": float("nan")}}, "finite"),
        ({"hyperparameters": {"alpha": -1.0}}, "negative"),
        ({"hyperparameters": {"alpha": True}}, "wrong type"),
        ({"rounds": 0}, "rounds"),
        ({"min_participants": 5, "max_participants": 4}, "min_participants"),
        ({"max_participants": 101}, "max_participants"),
        ({"coordinator_address": "http://evil/"}, "host:port"),
        ({"tls_root_cid": "QmNotRaw"}, "CID"),
        ({"privacy": "trust-me"}, "privacy"),
        ({"parent_royalty_bps": 10_001}, "parent_royalty_bps"),
    ],
)
def test_invalid_specs_are_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(FederationSpecError, match=words):
        _spec(**changes)


def test_load_spec_refuses_unknown_fields_and_oversized_documents() -> None:
    document = json.loads(_spec().to_json_bytes())
    document["script"] = "import os"
    with pytest.raises(FederationSpecError, match="Unknown field"):
        load_spec(json.dumps(document).encode())
    with pytest.raises(FederationSpecError, match="at most"):
        load_spec(b" " * (MAX_SPEC_BYTES + 1))
    with pytest.raises(FederationSpecError, match="not JSON"):
        load_spec(b"{")
    with pytest.raises(FederationSpecError, match="JSON object"):
        load_spec(b"[1, 2]")


def test_input_schema_is_checked() -> None:
    with pytest.raises(FederationSpecError, match="distinct"):
        _spec(input=InputSchema(n_features=4, classes=(1, 1)))
    with pytest.raises(FederationSpecError, match="feature_names"):
        _spec(input=InputSchema(n_features=4, classes=(0, 1), feature_names=("a",)))
    with pytest.raises(FederationSpecError, match="dtype"):
        _spec(input=InputSchema(n_features=4, classes=(0, 1), dtype="object"))
