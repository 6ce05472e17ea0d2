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
├── validation.npz|csv  # scored tasks: the requester's validation set (never sent)
├── state.json, round-NNNN.npz   # checkpoints (mercato.federation.checkpoint)
├── round-NNNN.onnx     # each round's global model (its CID goes on-chain)
├── evidence-NNNN.json, previous-NNNN.bin, step-NNNN.bin, sybil-NNNN.json
│                       # scored tasks: the round's published record and the models it
│                       # names (mercato.federation.evidence), the Sybil detector's state
└── failed.json         # why the run stopped, when it did (the coordinator reports it)
```

Each round sends the global parameters to every connected node, waits up to
`round-timeout` seconds, and aggregates the replies that came back well-formed (a node
that dropped out only loses its part of the round): a scored task with the spec's robust
rule, scoring each seat on the validation set and writing the round's evidence; an
unscored one by FedAvg. A round with fewer usable updates than the task's minimum keeps
nothing and is sent again for up to `retry-seconds` (SuperNodes still reconnecting after
a coordinator restart, whom a restarted SuperLink already lists as online, do not end
the task). After each round it checkpoints (evidence first), so a restarted
run continues from the round after the last one saved and the coordinator commits the
very evidence that was written.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from logging import WARNING
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common.logger import log as flwr_log
from flwr.serverapp import Grid, ServerApp

from mercato.errors import FederationError, ValidationSetUnavailableError
from mercato.federation import checkpoint
from mercato.federation.contribution import SybilDetector, Update
from mercato.federation.evidence import score_round
from mercato.federation.learning import Params, check_shapes, evaluate, export_onnx, fedavg
from mercato.federation.privacy import run_private_round
from mercato.federation.shares import RoundContribution
from mercato.federation.spec import TaskSpec, is_scored, load_spec, scoring_of
from mercato.federation.validation import read_validation, task_validation_path
from mercato.fsutil import atomic_write_bytes

app = ServerApp()
ROUND_RETRY_SECONDS = 600.0  # how long nodes are waited for, and a short round resent
RETRY_PAUSE_SECONDS = 5.0
FAILED = "failed.json"  # {"error": "..."}: why the run stopped (the coordinator reports it)
COMMITTED = "committed.json"  # {"round": N}: the last round the coordinator committed
TIMINGS = "timings.jsonl"  # one line per round: wall seconds, each seat's training seconds
NO_COMMIT = "no-commit"  # marks a task directory run without a chain (tests, benchmark)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the task's remaining rounds."""
    directory = Path(str(context.run_config["task-dir"]))
    try:
        run_rounds(
            grid,
            directory,
            timeout=float(context.run_config["round-timeout"]),
            min_replies=int(context.run_config["min-replies"]),
            retry_seconds=float(context.run_config.get("retry-seconds", ROUND_RETRY_SECONDS)),
        )
    except Exception as exc:
        # The run ends here; the coordinator polls the task directory, not Flower's run
        # status, so it learns why from this file instead of waiting for a round forever.
        reason = f"{type(exc).__name__}: {exc}"
        atomic_write_bytes(directory / FAILED, json.dumps({"error": reason}).encode())
        raise


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


def evidence_path(directory: Path, round_number: int) -> Path:
    """Where the ServerApp writes a scored round's evidence."""
    return directory / f"evidence-{round_number:04d}.json"


class _Scoring:
    """A scored task's validation metric and Sybil detector, resumed from the checkpoint."""

    def __init__(self, spec: TaskSpec, directory: Path, task_id: int, done: int) -> None:
        self.settings = scoring_of(spec)
        self.directory = directory
        self.task_id = task_id
        path = task_validation_path(directory)
        if path is None:
            raise ValidationSetUnavailableError(
                task_id, "the coordinator placed no validation file in the task's directory"
            )
        features, labels = read_validation(path.read_bytes(), spec)
        self.evaluate = lambda params: evaluate(spec, params, features, labels)
        saved = directory / f"sybil-{done:04d}.json"
        self.detector = (
            SybilDetector.from_state(self.settings.sybil_threshold, json.loads(saved.read_text()))
            if done and saved.exists()
            else SybilDetector(threshold=self.settings.sybil_threshold)
        )

    def round(self, previous: Params, updates: list[Update], round_number: int) -> Params:
        """Aggregates and scores one round; writes its evidence before the checkpoint."""
        scored = score_round(
            self.settings,
            previous,
            updates,
            self.evaluate,
            self.detector,
            task_id=self.task_id,
            round=round_number,
        )
        d, n = self.directory, round_number
        atomic_write_bytes(d / f"previous-{n:04d}.bin", scored.previous_bytes)
        atomic_write_bytes(d / f"step-{n:04d}.bin", scored.step_bytes)
        atomic_write_bytes(d / f"sybil-{n:04d}.json", json.dumps(self.detector.to_state()).encode())
        atomic_write_bytes(evidence_path(d, n), scored.evidence.to_json_bytes())
        return scored.params


@dataclass
class _RoundDone:
    """A round attempt with enough usable updates."""

    params: Params  # the aggregate (unscored and private tasks; scored ones score `updates`)
    updates: list[Update]
    examples: dict[int, int]  # seat -> examples (private: 1 per seat in the masked sum)
    train_seconds: dict[int, float]


@dataclass
class _RoundShort:
    """A round attempt with fewer usable updates than needed; nothing of it is kept."""

    usable: int


def wait_for_nodes(grid: Grid, seats: dict[int, int], min_replies: int, seconds: float) -> None:
    """Block until `min_replies` admitted nodes are connected.

    Raises:
        FederationError: they were not within `seconds`.
    """
    deadline = time.monotonic() + seconds
    while len(set(grid.get_node_ids()) & set(seats)) < min_replies:
        if time.monotonic() > deadline:
            raise FederationError(
                f"Fewer than {min_replies} admitted SuperNodes connected within "
                f"{seconds:.0f} s; the participants must run 'mercato fl join'."
            )
        time.sleep(1)


def _attempt_round(
    grid: Grid,
    spec: TaskSpec,
    spec_bytes: bytes,
    params: Params,
    seats: dict[int, int],
    round_number: int,
    timeout: float,
    min_replies: int,
) -> _RoundDone | _RoundShort:
    """Send one round to the admitted nodes connected now and collect what comes back."""
    nodes = sorted(set(grid.get_node_ids()) & set(seats))
    if spec.privacy == "private":
        # SecAgg+ and DP (mercato.federation.privacy): the coordinator gets only the
        # masked sum; every seat whose update is in it counts once.
        try:
            outcome = run_private_round(grid, spec, params, nodes, round_number, timeout=timeout)
        except FederationError:
            return _RoundShort(0)  # void: nothing was unmasked, so it may be sent again
        if len(outcome.completed) < min_replies:
            # A sum was unmasked: another attempt over other nodes would give a second
            # sum of the same updates, whose difference reveals one of them. Stop here.
            raise FederationError(
                f"Round {round_number} aggregated {len(outcome.completed)} updates; "
                f"it needs {min_replies}."
            )
        examples = {seats[node]: 1 for node in outcome.completed}
        return _RoundDone(outcome.params, [], examples, {})
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
    updates: list[Update] = []
    train_seconds: dict[int, float] = {}
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
        updates.append(Update(seats[node], new, count))
        seconds = reply.content.metric_records["metrics"].get("train-seconds", 0.0)
        train_seconds[seats[node]] = float(seconds) if isinstance(seconds, float) else 0.0
    if len(updates) < min_replies:
        return _RoundShort(len(updates))
    examples = {u.seat: u.num_examples for u in updates}
    aggregate = [] if is_scored(spec) else fedavg([(u.params, u.num_examples) for u in updates])
    return _RoundDone(aggregate, updates, examples, train_seconds)


def run_rounds(
    grid: Grid,
    directory: Path,
    *,
    timeout: float,
    min_replies: int,
    retry_seconds: float = ROUND_RETRY_SECONDS,
) -> None:
    """Run rounds from the last checkpoint in `directory` to the spec's last round.

    The run waits up to `retry_seconds` for `min_replies` admitted nodes to connect. A
    round that gets fewer than `min_replies` usable updates keeps nothing and is sent
    again (to the admitted nodes connected then) until `retry_seconds` have passed since
    it started: SuperNodes reconnecting after a coordinator restart, or a short outage,
    do not end the task.

    Raises:
        FederationError: a round still lacked `min_replies` usable updates after
            `retry_seconds`, or too few admitted nodes connected at all.
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
    scoring = _Scoring(spec, directory, task_id, state.round) if is_scored(spec) else None
    if scoring is not None:
        # Float64 from the start: a participant retrains from the published model bytes.
        params = [np.asarray(p, dtype=np.float64) for p in params]
    wait_for_nodes(grid, seats, min_replies, retry_seconds)
    for round_number in range(state.round + 1, spec.rounds + 1):
        wait_committed(directory, round_number - 1)
        started = time.monotonic()
        attempt = 1
        while True:
            done = _attempt_round(
                grid, spec, spec_bytes, params, seats, round_number, timeout, min_replies
            )
            if isinstance(done, _RoundDone):
                break
            waited = time.monotonic() - started
            if waited >= retry_seconds:
                raise FederationError(
                    f"Round {round_number} got {done.usable} usable updates in {attempt} "
                    f"attempts over {waited:.0f} s; it needs {min_replies}. Check that the "
                    "participants' SuperNodes are running, then run the task again: it "
                    f"resumes at round {round_number}."
                )
            # Nothing of this round was kept: the nodes may still be reconnecting (a
            # restarted SuperLink lists them as online before they are back).
            flwr_log(
                WARNING,
                "Round %s, attempt %s: %s usable updates, %s needed; sending it again.",
                round_number,
                attempt,
                done.usable,
                min_replies,
            )
            attempt += 1
            time.sleep(RETRY_PAUSE_SECONDS)  # replies refused at once must not spin
            wait_for_nodes(grid, seats, min_replies, retry_seconds)
        examples, train_seconds = done.examples, done.train_seconds
        if scoring is not None:
            params = scoring.round(params, done.updates, round_number)
        else:
            params = done.params
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
