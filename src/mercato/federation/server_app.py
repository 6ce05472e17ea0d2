# SPDX-License-Identifier: AGPL-3.0-only
"""Mercato's Flower ServerApp: the rounds of one task, run inside the coordinator's
SuperLink.

The coordinator writes the task's directory before starting the run (`task-dir` in the
run config):

```
<task dir>/
├── spec.json           # the canonical spec
├── initial.npz         # starting parameters
├── nodes.json          # Flower node id -> seat, for the keys admitted
├── state.json, round-NNNN.npz   # checkpoints (mercato.federation.checkpoint)
└── round-NNNN.onnx     # each round's global model (its CID goes on-chain)
```

Each round sends the global parameters to every connected node, waits up to
`round-timeout` seconds, and averages the replies that came back well-formed (a node that
dropped out only loses its part of the round). After each round it checkpoints, so a
restarted run continues from the round after the last one saved.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from mercato.errors import FederationError
from mercato.federation import checkpoint
from mercato.federation.learning import Params, check_shapes, export_onnx, fedavg
from mercato.federation.privacy import run_private_round
from mercato.federation.shares import RoundContribution
from mercato.federation.spec import load_spec

app = ServerApp()
NODE_WAIT_SECONDS = 120
COMMITTED = "committed.json"  # {"round": N}: the last round the coordinator committed
TIMINGS = "timings.jsonl"  # one line per round: wall seconds, each seat's training seconds
NO_COMMIT = "no-commit"  # marks a task directory run without a chain (tests, benchmark)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the task's remaining rounds."""
    directory = Path(str(context.run_config["task-dir"]))
    run_rounds(
        grid,
        directory,
        timeout=float(context.run_config["round-timeout"]),
        min_replies=int(context.run_config["min-replies"]),
    )


def wait_committed(directory: Path, round_number: int) -> None:
    """Block until the coordinator has committed `round_number` on-chain (a file it
    writes after each commit), so every round's participant list is public before the
    next round starts. A task directory without a coordinator (`committed.json` absent
    and `no-commit` present) does not wait."""
    if round_number <= 0 or (directory / NO_COMMIT).exists():
        return
    while True:
        try:
            done = int(json.loads((directory / COMMITTED).read_text())["round"])
        except (OSError, ValueError, KeyError, TypeError):
            done = 0
        if done >= round_number:
            return
        time.sleep(0.5)


def run_rounds(grid: Grid, directory: Path, *, timeout: float, min_replies: int) -> None:
    """Run rounds from the last checkpoint in `directory` to the spec's last round.

    Raises:
        FederationError: fewer than `min_replies` usable updates came back in a round.
    """
    spec_bytes = (directory / "spec.json").read_bytes()
    spec = load_spec(spec_bytes)
    nodes = json.loads((directory / "nodes.json").read_text())
    seats = {int(node): int(seat) for node, seat in nodes.items()}
    task_id = int(json.loads((directory / "task.json").read_text())["task_id"])
    digest = hashlib.sha256(spec_bytes).hexdigest()
    saved = checkpoint.load(directory, task_id, digest)
    if saved is None:
        with np.load(directory / "initial.npz", allow_pickle=False) as archive:
            params: Params = [archive[f"p{i}"] for i in range(len(archive.files))]
        state = checkpoint.CheckpointState(task_id=task_id, spec_digest=digest)
    else:
        state, params = saved
    deadline = time.monotonic() + NODE_WAIT_SECONDS
    while len(set(grid.get_node_ids()) & set(seats)) < min_replies:
        if time.monotonic() > deadline:
            raise FederationError("Not enough admitted SuperNodes connected to start a round.")
        time.sleep(1)
    for round_number in range(state.round + 1, spec.rounds + 1):
        wait_committed(directory, round_number - 1)
        started = time.monotonic()
        train_seconds: dict[int, float] = {}
        nodes = sorted(set(grid.get_node_ids()) & set(seats))
        examples: dict[int, int] = {}
        if spec.privacy == "private":
            # SecAgg+ and DP (mercato.federation.privacy): the coordinator gets only the
            # masked sum; every seat whose update is in it counts once.
            outcome = run_private_round(grid, spec, params, nodes, round_number, timeout=timeout)
            if len(outcome.completed) < min_replies:
                raise FederationError(
                    f"Round {round_number} aggregated {len(outcome.completed)} updates; "
                    f"it needs {min_replies}."
                )
            params = outcome.params
            examples.update({seats[node]: 1 for node in outcome.completed})
        else:
            config = ConfigRecord({"spec": spec_bytes.decode("utf-8"), "round": round_number})
            messages = [
                Message(
                    RecordDict({"arrays": ArrayRecord(params), "config": config}),
                    dst_node_id=node,
                    message_type="train",
                    group_id=str(round_number),
                )
                for node in nodes
            ]
            updates: list[tuple[Params, int]] = []
            for reply in grid.send_and_receive(messages, timeout=timeout):
                node = reply.metadata.src_node_id
                if node not in seats or not reply.has_content():
                    continue
                try:
                    arrays = reply.content.array_records["arrays"].to_numpy_ndarrays()
                    new: Params = [np.asarray(a, dtype=np.float64) for a in arrays]
                    check_shapes(spec, new)
                    count = reply.content.metric_records["metrics"]["num-examples"]
                except (KeyError, TypeError, ValueError, FederationError):
                    continue  # a malformed update is dropped, not fatal
                if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
                    continue
                updates.append((new, count))
                examples[seats[node]] = count
                seconds = reply.content.metric_records["metrics"].get("train-seconds", 0.0)
                train_seconds[seats[node]] = float(seconds) if isinstance(seconds, float) else 0.0
            if len(updates) < min_replies:
                raise FederationError(
                    f"Round {round_number} got {len(updates)} usable updates; "
                    f"it needs {min_replies}."
                )
            params = fedavg(updates)
        (directory / f"round-{round_number:04d}.onnx").write_bytes(export_onnx(spec, params))
        state.round = round_number
        state.contributions.append(RoundContribution(round_number, examples))
        checkpoint.save(directory, state, params)
        # Timings for the benchmark: the round's wall time and each seat's training time.
        with (directory / TIMINGS).open("a", encoding="utf-8") as log:
            log.write(
                json.dumps(
                    {
                        "round": round_number,
                        "seconds": time.monotonic() - started,
                        "train_seconds": train_seconds,
                    }
                )
                + "\n"
            )
