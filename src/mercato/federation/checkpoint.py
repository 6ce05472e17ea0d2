# SPDX-License-Identifier: AGPL-3.0-only
"""Per-round checkpoints of a coordinator, so a restart resumes where it stopped.

```
<data dir>/federation/<chain id>/<task id>/
├── state.json          # last round done, its model CID, every round's record
└── round-0003.npz      # the global parameters after round 3
```

Each file is written to a temporary name, flushed and renamed, `state.json` last: a
crash leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mercato.errors import FederationCheckpointError
from mercato.federation.learning import Params
from mercato.federation.shares import RoundContribution
from mercato.fsutil import atomic_write_bytes

STATE = "state.json"


def task_dir(data_dir: str | Path, chain_id: int, task_id: int) -> Path:
    """Where a task's checkpoints live."""
    return Path(data_dir) / "federation" / str(int(chain_id)) / str(int(task_id))


@dataclass
class CheckpointState:
    """What a coordinator knows after its last finished round."""

    task_id: int
    spec_digest: str  # hex: a checkpoint of another spec is never resumed
    round: int = 0
    model_cids: list[str] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    contributions: list[RoundContribution] = field(default_factory=list)


def save(directory: Path, state: CheckpointState, params: Params) -> None:
    """Write round `state.round`'s parameters, then the state that points at them.

    Raises:
        OSError: the data dir cannot be written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"p{i}": np.asarray(p) for i, p in enumerate(params)}
    buffer = _npz_bytes(arrays)
    atomic_write_bytes(directory / f"round-{state.round:04d}.npz", buffer)
    document: dict[str, Any] = {
        "task_id": state.task_id,
        "spec_digest": state.spec_digest,
        "round": state.round,
        "model_cids": state.model_cids,
        "metrics": state.metrics,
        "contributions": [
            {"round": c.round, "examples": {str(k): v for k, v in c.examples.items()}}
            for c in state.contributions
        ],
    }
    atomic_write_bytes(directory / STATE, json.dumps(document, sort_keys=True).encode())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    handle = io.BytesIO()
    np.savez(handle, **arrays)  # type: ignore[arg-type]
    return handle.getvalue()


def load(directory: Path, task_id: int, spec_digest: str) -> tuple[CheckpointState, Params] | None:
    """The last checkpoint in `directory`, or None when there is none.

    Raises:
        FederationCheckpointError: the checkpoint is damaged, or of another task or spec.
    """
    state_path = directory / STATE
    if not state_path.is_file():
        return None
    try:
        document = json.loads(state_path.read_bytes())
        state = CheckpointState(
            task_id=int(document["task_id"]),
            spec_digest=str(document["spec_digest"]),
            round=int(document["round"]),
            model_cids=[str(c) for c in document["model_cids"]],
            metrics=[float(m) for m in document["metrics"]],
            contributions=[
                RoundContribution(
                    round=int(c["round"]),
                    examples={int(k): int(v) for k, v in c["examples"].items()},
                )
                for c in document["contributions"]
            ],
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FederationCheckpointError(state_path, f"unreadable ({exc})") from exc
    if state.task_id != task_id or state.spec_digest != spec_digest:
        raise FederationCheckpointError(state_path, "it belongs to another task or spec")
    params_path = directory / f"round-{state.round:04d}.npz"
    try:
        with np.load(params_path, allow_pickle=False) as archive:
            params = [np.asarray(archive[f"p{i}"]) for i in range(len(archive.files))]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise FederationCheckpointError(params_path, f"unreadable ({exc})") from exc
    return state, params
