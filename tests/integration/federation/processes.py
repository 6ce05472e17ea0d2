# SPDX-License-Identifier: AGPL-3.0-only
"""What the tests over real Flower processes share: data owners with their own node key
and a pinned SuperNode, a coordinator's task directory without a chain (the `no-commit`
marker: the ServerApp does not wait for on-chain commits), and waiting on a file.

The `superlink` fixture (a real SuperLink on loopback with TLS and SuperNode
authentication) is in this directory's conftest.py."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mercato.chain.anvil import free_port
from mercato.federation import learning
from mercato.federation.keys import load_or_create_node_key
from mercato.federation.runtime import SuperLink, SuperNode
from mercato.federation.server_app import NO_COMMIT
from mercato.federation.spec import TaskSpec


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `predicate` every second; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def data_owner(
    root: Path,
    name: str,
    features: np.ndarray,
    labels: np.ndarray,
    superlink: SuperLink,
    *,
    pins: dict[str, str] | None = None,
) -> tuple[SuperNode, bytes]:
    """A data owner's directory (`<root>/<name>/data.npz` and its node key) and its
    SuperNode pointed at `superlink`, not started. Returns the node and its public key
    PEM (admit it with `superlink.admit` for the node to take part)."""
    directory = root / name
    directory.mkdir()
    np.savez(directory / "data.npz", X=features, y=labels)
    private, pem = load_or_create_node_key(directory / "federation")
    node = SuperNode(
        directory,
        superlink=superlink.address,
        ca=superlink.tls.ca,
        private_key=private,
        data_path=directory / "data.npz",
        runtime_port=free_port(),
        task_pins=pins,
    )
    return node, pem


def task_directory(
    root: Path, spec: TaskSpec, nodes: dict[int, int], *, validation: bytes | None = None
) -> Path:
    """Task 1's directory as a coordinator lays it out (`<root>/task`): the spec, the
    admitted Flower node ids by seat, fresh initial parameters and, for a scored task,
    its validation set."""
    directory = root / "task"
    directory.mkdir()
    (directory / "spec.json").write_bytes(spec.to_json_bytes())
    (directory / "task.json").write_text(json.dumps({"task_id": 1}))
    (directory / "nodes.json").write_text(json.dumps({str(k): v for k, v in nodes.items()}))
    (directory / NO_COMMIT).touch()
    if validation is not None:
        (directory / "validation.npz").write_bytes(validation)
    params = learning.initial_params(spec)
    np.savez(directory / "initial.npz", **{f"p{i}": p for i, p in enumerate(params)})  # type: ignore[arg-type]
    return directory


def spec_digest(directory: Path) -> str:
    """The digest a task directory's checkpoints are bound to."""
    return hashlib.sha256((directory / "spec.json").read_bytes()).hexdigest()
