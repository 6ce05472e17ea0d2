# SPDX-License-Identifier: AGPL-3.0-only
"""Seconds per federated round with 4 and 8 SuperNodes on this machine, and the share of
each round spent outside local training (Flower's messaging and process start-up, and
Mercato's checks, averaging, ONNX export and checkpoint), as a ratio.

Real processes on loopback: one SuperLink (TLS, SuperNode authentication) and N pinned
SuperNodes, each holding an equal share of sklearn's digits, training `sgd` for 2 local
epochs per round. No chain: the rounds are the runtime's cost alone. The ServerApp logs
each round's wall time and each node's training time (`timings.jsonl`); the overhead of
a round is 1 - (the slowest node's training time / the round's wall time), the part of
the round nobody was training.

With `--scoring`, it prints instead the scoring figures of issue 15, measured in process
by `benchmarks/federation_scoring.py` (each a ratio or difference within the same run):
scoring time per round over local training time for leave-one-out and the default
valuation (auto) at 4, 8 and 16 participants; test accuracy with 0, 1 and 2 poisoners
under FedAvg, Flower's FedTrimmedAvg, the trimmed mean, the median and the scored
default; two echo free-riders; honest non-IID owners left at 0; TMC-Shapley against
exact Shapley at 6 participants, in basis points (figures in that file's docstring).

Usage: python benchmarks/federation.py [--nodes 4 8] [--rounds 3]
       python benchmarks/federation.py --scoring [--rounds 3] [--seeds 5]

Measured on this 2-core machine with other test runs going (load average 4-14),
`--nodes 4 8 --rounds 3`, after the SuperLink wrapper (the ServerApp's task-start window
and SQLite lock wait widened), process-group stops and skl2onnx imported only to export:

- 4 SuperNodes: 71.1 s per round (first 83.5 s, later 64.9 s); outside-training
  ratio 0.994: local training is under 1% of a round. Nearly all of it is
  Flower starting a fresh `flwr-clientapp` process per message on each node (about 3 s
  of CPU importing Flower and scikit-learn), several of them sharing two cores. The
  previous run (before the SuperLink wrapper, at load 8-35) gave 56.8 s (0.995); at
  load 50-66, before the SuperNode's window was widened, 181 s (0.997).
- 8 SuperNodes: 128.6 s per round (first 145.0 s, later 120.4 s); outside-training
  ratio 0.996. Before the wrapper no round finished: the ServerApp's task token
  expired after Flower's 30 s ("Run is finished") and SQLite answered "database is
  locked"; see docs/federation.md. A round with 8 nodes took 1.81 times one with 4 in
  the same run: the start-ups share the two cores. No Flower process was left after the
  run (each node's process group is stopped whole).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from mercato.chain.anvil import free_port
from mercato.federation import learning
from mercato.federation.keys import load_or_create_node_key
from mercato.federation.runtime import SuperLink, SuperNode
from mercato.federation.server_app import NO_COMMIT, TIMINGS
from mercato.federation.spec import InputSchema, TaskSpec


def measure(nodes: int, rounds: int, root: Path) -> dict[str, float]:
    """Run one task of `rounds` rounds on `nodes` SuperNodes; returns its timings."""
    spec = TaskSpec(
        name="bench",
        input=InputSchema(n_features=64, classes=tuple(range(10))),
        rounds=rounds,
        local_epochs=2,
        min_participants=nodes,
        max_participants=nodes,
    )
    features, labels = load_digits(return_X_y=True)
    features = features / 16.0
    link = SuperLink(root / "link", port=free_port())
    link.start()
    task = root / "task"
    task.mkdir()
    (task / NO_COMMIT).touch()
    (task / "spec.json").write_bytes(spec.to_json_bytes())
    (task / "task.json").write_text(json.dumps({"task_id": 1}))
    arrays = {f"p{i}": p for i, p in enumerate(learning.initial_params(spec))}
    np.savez(task / "initial.npz", **arrays)  # type: ignore[arg-type]
    seats: dict[str, int] = {}
    supernodes = []
    try:
        for seat, rows in enumerate(np.array_split(np.arange(len(labels)), nodes)):
            owner = root / f"owner{seat}"
            owner.mkdir()
            np.savez(owner / "data.npz", X=features[rows], y=labels[rows])
            private, pem = load_or_create_node_key(owner / "federation")
            seats[str(link.admit(pem))] = seat
            supernodes.append(
                SuperNode(
                    owner, superlink=link.address, ca=link.tls.ca, private_key=private,
                    data_path=owner / "data.npz", runtime_port=free_port(),
                )
            )  # fmt: skip
        (task / "nodes.json").write_text(json.dumps(seats))
        for node in supernodes:
            node.start()
        started = time.monotonic()
        link.start_run(task, round_timeout=600, min_replies=nodes)
        last = task / f"round-{rounds:04d}.onnx"
        while not last.exists():
            if time.monotonic() - started > 1800:
                raise TimeoutError("the rounds did not finish within 30 minutes")
            time.sleep(0.5)
        total = time.monotonic() - started
    finally:
        for node in supernodes:
            node.stop()
        link.stop()
    lines = [json.loads(line) for line in (task / TIMINGS).read_text().splitlines()]
    seconds = [line["seconds"] for line in lines]
    outside = [1 - max(line["train_seconds"].values()) / line["seconds"] for line in lines]
    return {
        "nodes": nodes,
        "rounds": rounds,
        "seconds_per_round": statistics.mean(seconds),
        "first_round_seconds": seconds[0],
        "later_rounds_seconds": statistics.mean(seconds[1:]) if len(seconds) > 1 else seconds[0],
        "outside_training_ratio": statistics.mean(outside),
        "task_seconds_from_run_start": total,
    }


def main() -> None:
    """Measure and print one JSON line per node count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scoring", action="store_true", help="print the scoring figures (in process)"
    )
    parser.add_argument("--seeds", type=int, default=5, help="with --scoring")
    args = parser.parse_args()
    if args.scoring:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from federation_scoring import report

        report(args.rounds, args.seeds)
        return
    for nodes in args.nodes:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(measure(nodes, args.rounds, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
