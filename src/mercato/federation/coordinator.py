# SPDX-License-Identifier: AGPL-3.0-only
"""The requester's side of a task: a SuperLink, the rounds, and the chain.

`Coordinator.run()`:

1. reads the task and its spec from the chain and the store, and lays out the task's
   directory (see `mercato.federation.server_app`);
2. starts the SuperLink (TLS, SuperNode authentication) and admits exactly the keys
   that joined: each participant's public key is found by its on-chain hash (the
   digest of its raw CIDv1), checked, and registered;
3. starts Mercato's app; after each round the ServerApp checkpoints, and the coordinator
   stores the round's ONNX model and record, commits them on-chain and only then lets
   the next round start. In a scored task the record is the round's evidence
   (`mercato.federation.evidence`: every seat's score, the update digests, the models
   it names), stored content-addressed with those models, and its CID is the round
   digest committed;
4. finalizes with the shares (scored: the evidence's positive totals, normalized;
   private: equal among seats that completed every round; otherwise the `Scorer`'s)
   and publishes the result through the task's revenue splitter, with the initial
   model as parent.

After a crash, `run()` again picks up: rounds checkpointed but not committed are
committed first, and the ServerApp continues from the last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from multiformats import CID

from mercato.errors import (
    FederationError,
    FederationRuntimeError,
    FederationSpecError,
    InitialModelError,
    ValidationSetUnavailableError,
)
from mercato.federation import checkpoint
from mercato.federation.evidence import RoundEvidence, shares_from_evidence
from mercato.federation.initial import InitialSource, load_initial_params
from mercato.federation.keys import check_public_key, node_key_hash
from mercato.federation.learning import Params, build_model, initial_params, params_from_onnx
from mercato.federation.privacy import budget_record
from mercato.federation.runtime import SuperLink
from mercato.federation.server_app import COMMITTED, FAILED, evidence_path
from mercato.federation.shares import ExampleWeightedScorer, Scorer
from mercato.federation.spec import (
    TaskSpec,
    is_scored,
    load_spec,
    raw_cid_for,
    read_blob,
    scoring_of,
    store_bytes,
)
from mercato.federation.validation import check_validation, read_validation, suffix_of
from mercato.fsutil import atomic_write_bytes
from mercato.storage.blockstore import Blockstore

KeySource = Callable[[bytes], bytes | None]  # node key hash -> public key PEM, if found
Evaluate = Callable[[TaskSpec, Params], float]


class FederationChain(Protocol):
    """What the coordinator needs of `market.federation` (a seam: tests and the
    benchmark can run the rounds against a stand-in)."""

    def task(self, task_id: int) -> Any: ...
    def participants(self, task_id: int) -> Sequence[Any]: ...
    def commit_round(
        self,
        task_id: int,
        round_number: int,
        model_cid: CID | str,
        round_cid: CID | str,
        contributors: set[int] | frozenset[int],
        metric: float,
    ) -> None: ...
    def finalize(self, task_id: int, shares: list[int]) -> Any: ...
    def publish_result(self, task_id: int, model_dir: Any, *, price: int) -> int: ...


def store_key_source(store: Blockstore) -> KeySource:
    """Finds public keys in a store by the digest of their raw CIDv1."""

    def find(digest: bytes) -> bytes | None:
        cid = raw_cid_for_digest(digest)
        return store.get(cid) if store.has(cid) else None

    return find


def raw_cid_for_digest(digest: bytes) -> CID:
    """The raw-codec CIDv1 whose sha256 digest is `digest`."""
    from multiformats import multihash

    return CID("base32", 1, "raw", multihash.get("sha2-256").wrap(bytes(digest)))


class Coordinator:
    """Runs one task's rounds on a SuperLink and commits them on-chain."""

    def __init__(
        self,
        chain: FederationChain,
        store: Blockstore,
        task_id: int,
        directory: Path,
        *,
        key_source: KeySource | None = None,
        scorer: Scorer | None = None,
        evaluate: Evaluate | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        round_timeout: float = 120.0,
        retry_seconds: float | None = None,
        on_round: Callable[[int, float], None] | None = None,
        model_name: str | None = None,
        validation: bytes | None = None,
        initial_source: InitialSource | None = None,
    ) -> None:
        """Args:
        chain: `market.federation` (this account must be the task's coordinator).
        store: The node's store (spec, initial model, round models, keys).
        task_id: The task.
        directory: The task's directory (`checkpoint.task_dir(data_dir, chain, task)`).
        key_source: Finds a participant's public key by its hash (default: the store).
        scorer: Turns the rounds into shares (default: examples-weighted).
        evaluate: The metric of a round's model (default: 0.0, none measured).
        port: The SuperLink's port (default: the spec's `coordinator_address`).
        host: The address it binds.
        round_timeout: Seconds a round waits for updates before going on without them.
        retry_seconds: How long the run waits for enough SuperNodes, and resends a round
            that got too few updates, before it stops (None: the ServerApp's 600 s).
        on_round: Called with (round, metric) after each commit (progress bars).
        model_name: The published model's name (default: the spec's name).
        validation: A scored task's validation set (`validation.kept_validation`), when
            not revealed in the store yet; checked against the spec's CID.
        initial_source: Reads a registry model version's ONNX when the spec starts
            from one (`mercato.federation.initial.RegistryModels(market)`).
        """
        self.chain = chain
        self.store = store
        self.task_id = task_id
        self.directory = directory
        self.key_source = key_source or store_key_source(store)
        self.scorer: Scorer = scorer or ExampleWeightedScorer()
        self.scorer_is_default = scorer is None
        self.evaluate = evaluate
        self.host = host
        self.port = port
        self.round_timeout = round_timeout
        self.retry_seconds = retry_seconds
        self.on_round = on_round
        self.model_name = model_name
        self.initial_source = initial_source
        self.validation = validation
        self.superlink: SuperLink | None = None

    # -- setup ------------------------------------------------------------------------

    def _spec(self) -> tuple[TaskSpec, bytes]:
        task = self.chain.task(self.task_id)
        cid = task.spec_cid
        if not self.store.has(cid):
            raise FederationSpecError(
                f"Task {self.task_id}'s spec {cid} is not in this node's store."
            )
        data = self.store.get(cid)
        return load_spec(data), data

    def _initial(self, spec: TaskSpec) -> Params:
        if spec.initial_model.model_id:
            return self._registry_initial(spec)
        cid_text = spec.initial_model.onnx_cid
        if cid_text is None:
            return initial_params(spec)
        cid = CID.decode(cid_text)
        if not self.store.has(cid):
            raise FederationSpecError(f"The initial model {cid} is not in this node's store.")
        # One raw block, or a UnixFS file for a model above the block limit (every
        # block verified on the way).
        return params_from_onnx(spec, read_blob(self.store, cid))

    def _registry_initial(self, spec: TaskSpec) -> Params:
        """The registry model version the spec starts from (`mercato.federation.initial`)."""
        initial = spec.initial_model
        parent = self.chain.task(self.task_id).parent_model_id
        if int(parent or 0) != initial.model_id:
            # The result's parent (and its royalty) is what the chain recorded at creation.
            raise InitialModelError(
                initial.model_id,
                initial.version,
                f"task {self.task_id} was created with parent model {int(parent or 0)}; "
                "the spec and the task must name the same model, so create the task again",
            )
        if self.initial_source is None:
            raise InitialModelError(
                initial.model_id, initial.version, "this coordinator has no registry to read"
            )
        return load_initial_params(spec, self.initial_source)

    def prepare(self) -> TaskSpec:
        """Lay out the task's directory (idempotent).

        Raises:
            FederationSpecError: the spec or initial model is missing or invalid
                (InitialModelError: the registry model it names cannot be used;
                InitialModelLicenseError: it is paid and this account holds no licence).
        """
        spec, data = self._spec()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "spec.json").write_bytes(data)
        (self.directory / "task.json").write_text(json.dumps({"task_id": self.task_id}))
        if not (self.directory / "initial.npz").exists():
            params = self._initial(spec)
            arrays = {f"p{i}": p for i, p in enumerate(params)}
            np.savez(self.directory / "initial.npz", **arrays)  # type: ignore[arg-type]
        if is_scored(spec):
            self._place_validation(spec)
        committed = int(self.chain.task(self.task_id).rounds)
        (self.directory / COMMITTED).write_text(json.dumps({"round": committed}))
        return spec

    def _place_validation(self, spec: TaskSpec) -> None:
        """Puts the scored task's validation set where the ServerApp reads it.

        Raises:
            ValidationSetUnavailableError: neither given nor in the store.
            ValidationSetMismatchError: the bytes given are not the committed set.
        """
        expected = scoring_of(spec).validation_cid
        data = self.validation
        if data is None and self.store.has(CID.decode(expected)):
            data = self.store.get(CID.decode(expected))
        if data is None:
            raise ValidationSetUnavailableError(
                self.task_id,
                f"this node does not hold {expected}; the requester's node keeps it (made by "
                "'mercato fl create --validation'), or pass the file with 'mercato fl run "
                "--validation FILE'",
            )
        check_validation(self.task_id, data, expected)
        atomic_write_bytes(self.directory / f"validation{suffix_of(data)}", data)
        if self.evaluate is None:
            # Each round's committed metric: accuracy on the validation set.
            features, labels = read_validation(data, spec)
            self.evaluate = accuracy_on(features, labels)

    def admit_participants(self, superlink: SuperLink) -> dict[int, int]:
        """Register the SuperNode key of every seat that joined.

        Returns:
            Flower node id -> seat.

        Raises:
            FederationError: a participant's key cannot be found or is not the one bound.
        """
        admitted_path = self.directory / "admitted.json"
        admitted: dict[str, int] = (
            json.loads(admitted_path.read_text()) if admitted_path.exists() else {}
        )
        nodes: dict[int, int] = {}
        for participant in self.chain.participants(self.task_id):
            digest = bytes(participant.node_key_hash)
            if digest.hex() not in admitted:
                pem = self.key_source(digest)
                if pem is None or node_key_hash(pem) != digest:
                    raise FederationError(
                        f"Seat {participant.seat}'s SuperNode key (hash {digest.hex()[:16]}...) "
                        "is not available here; the participant must run 'mercato fl join', "
                        "which publishes it."
                    )
                check_public_key(pem)
                admitted[digest.hex()] = superlink.admit(pem)
                admitted_path.write_text(json.dumps(admitted))
            nodes[admitted[digest.hex()]] = int(participant.seat)
        (self.directory / "nodes.json").write_text(
            json.dumps({str(k): v for k, v in nodes.items()})
        )
        return nodes

    # -- the rounds ---------------------------------------------------------------------

    def _commit_pending(self, spec: TaskSpec, participants: dict[int, bytes]) -> int:
        """Commit every round checkpointed but not yet on-chain; returns the last committed."""
        committed = int(self.chain.task(self.task_id).rounds)
        digest = hashlib.sha256((self.directory / "spec.json").read_bytes()).hexdigest()
        saved = checkpoint.load(self.directory, self.task_id, digest)
        if saved is None or saved[0].round <= committed:
            return committed
        state, params = saved
        for record in state.contributions:
            if record.round <= committed:
                continue
            if record.round != state.round:
                raise FederationError(
                    f"Round {record.round} was checkpointed but not committed and its model is "
                    "gone; only the last checkpointed round can be committed."
                )
            onnx_path = self.directory / f"round-{record.round:04d}.onnx"
            model_cid = store_bytes(self.store, onnx_path.read_bytes())
            listing = {
                "task_id": self.task_id,
                "round": record.round,
                "model": str(model_cid),
                "participants": [
                    {"seat": seat, "node_key_hash": participants[seat].hex(), "examples": n}
                    for seat, n in sorted(record.examples.items())
                ],
            }
            budget = budget_record(spec, record.round)
            if budget is not None:  # what the task has spent so far, committed with it
                listing["privacy"] = budget
            if is_scored(spec):
                round_cid = self._store_evidence(record.round)
            else:
                round_cid = store_bytes(self.store, json.dumps(listing, sort_keys=True).encode())
            metric = self.evaluate(spec, params) if self.evaluate else 0.0
            self.chain.commit_round(
                self.task_id, record.round, model_cid, round_cid, set(record.examples), metric
            )
            committed = record.round
            (self.directory / COMMITTED).write_text(json.dumps({"round": committed}))
            if self.on_round is not None:
                self.on_round(committed, metric)
        return committed

    def _store_evidence(self, round_number: int) -> CID:
        """Stores a scored round's evidence and the two models it names (exactly the
        bytes the ServerApp wrote, so a restart commits the same CID); returns its CID.

        Raises:
            FederationError: the ServerApp wrote no evidence for the round.
        """
        path = evidence_path(self.directory, round_number)
        if not path.is_file():
            raise FederationError(
                f"Round {round_number} of scored task {self.task_id} was checkpointed without "
                "its evidence; move the task's checkpoint aside to run the round again."
            )
        for name in ("previous", "step"):
            store_bytes(
                self.store, (self.directory / f"{name}-{round_number:04d}.bin").read_bytes()
            )
        return store_bytes(self.store, path.read_bytes())

    def evidence(self, rounds: int) -> list[RoundEvidence]:
        """The evidence the ServerApp wrote for rounds 1 to `rounds`."""
        return [
            RoundEvidence.from_json_bytes(evidence_path(self.directory, n).read_bytes())
            for n in range(1, rounds + 1)
        ]

    def shares(self, spec: TaskSpec, seats: int, state: checkpoint.CheckpointState) -> list[int]:
        """The shares `finish` posts (module docstring, step 4).

        Raises:
            FederationError: nobody contributed (or, scored, nobody's total is positive).
        """
        if is_scored(spec):
            return shares_from_evidence(self.evidence(state.round), seats)
        if spec.privacy == "private" and self.scorer_is_default:
            from mercato.federation.privacy import CompletedEveryRoundScorer

            return CompletedEveryRoundScorer().shares(seats, state.contributions)
        return self.scorer.shares(seats, state.contributions)

    def run(self, *, publish: bool = True, poll_seconds: float = 0.5) -> int | None:
        """Run (or resume) the task to the end.

        Args:
            publish: Finalize and publish the result when the last round is committed.
            poll_seconds: How often the task's directory is checked for a new round.

        Returns:
            The published model's id (None when `publish` is False).

        Raises:
            FederationError: a key is missing, or a round could not be completed.
            FederationRuntimeError: the SuperLink failed.
            ContractRevertError: the chain refused a commit, the finalize or the publish.
        """
        spec = self.prepare()
        seats = {int(p.seat): bytes(p.node_key_hash) for p in self.chain.participants(self.task_id)}
        committed = self._commit_pending(spec, seats)
        if committed < spec.rounds:
            port = self.port or int(spec.coordinator_address.rsplit(":", 1)[1])
            self.superlink = SuperLink(self.directory / "superlink", host=self.host, port=port)
            self.superlink.start()
            try:
                self.admit_participants(self.superlink)
                (self.directory / FAILED).unlink(missing_ok=True)  # a previous run's
                self.superlink.start_run(
                    self.directory,
                    round_timeout=self.round_timeout,
                    retry_seconds=self.retry_seconds,
                    min_replies=spec.min_participants,
                )
                while committed < spec.rounds:
                    if (
                        self.superlink.process is not None
                        and self.superlink.process.poll() is not None
                    ):
                        raise FederationRuntimeError("SuperLink", "the process exited mid-task")
                    committed = self._commit_pending(spec, seats)
                    if committed < spec.rounds:
                        self._raise_if_run_failed(committed)
                    time.sleep(poll_seconds)
            finally:
                self.superlink.stop()
        if not publish:
            return None
        return self.finish(spec)

    def _raise_if_run_failed(self, committed: int) -> None:
        """Raises when the ServerApp wrote why the run stopped (`server_app.FAILED`).

        Raises:
            FederationError: the run stopped; saying why and where it resumes.
        """
        path = self.directory / FAILED
        if not path.exists():
            return
        try:
            reason = str(json.loads(path.read_text())["error"])
        except (OSError, ValueError, KeyError, TypeError):
            reason = "the ServerApp stopped without saying why"
        raise FederationError(
            f"Task {self.task_id}'s run stopped after round {committed}: {reason} "
            f"Run 'mercato fl run {self.task_id}' again to resume from round {committed + 1}."
        )

    def finish(self, spec: TaskSpec) -> int:
        """Finalize with the scorer's shares and publish the last round's model."""
        digest = hashlib.sha256((self.directory / "spec.json").read_bytes()).hexdigest()
        saved = checkpoint.load(self.directory, self.task_id, digest)
        if saved is None:
            raise FederationError(f"Task {self.task_id} has no checkpointed round to finish.")
        state, params = saved
        task = self.chain.task(self.task_id)
        if int(task.status) == 2:  # running: not finalized yet
            self.chain.finalize(self.task_id, self.shares(spec, int(task.participants), state))
        package = self.directory / "result"
        write_result_package(spec, params, package, self.model_name or model_name_for(spec))
        return int(self.chain.publish_result(self.task_id, package, price=spec.price))


def model_name_for(spec: TaskSpec) -> str:
    """The published model's name from the task's: a spec name may hold spaces, a model
    name only letters, digits, '.', '_' and '-' (`mercato.models.manifest`)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", spec.name).strip("-._")[:96]
    return name or "federated-model"


def write_result_package(spec: TaskSpec, params: Params, directory: Path, name: str) -> None:
    """The global model as a Mercato package (ONNX + card)."""
    from mercato.models.card import ModelCard
    from mercato.models.sklearn import export_sklearn

    card = ModelCard(
        license="CC-BY-4.0",
        library_name="sklearn",
        text=(
            f"# {name}\n\n{spec.description or 'A model trained by federated learning.'}\n\n"
            f"Trained by federated learning ({spec.rounds} rounds, learner {spec.learner}); "
            f"the data never left its owners. Input `X`: {spec.input.dtype} "
            f"[N, {spec.input.n_features}].\n\n"
            "## Uses\n\nClassifies rows of the task's input schema into its classes "
            f"({', '.join(str(c) for c in spec.input.classes[:20])}).\n\n"
            "## Bias, Risks, and Limitations\n\nIt only knows what its data owners' rows "
            "showed; their data was not inspected by anyone, so its quality and any bias in "
            "it are unknown. Check it on your own data before relying on it.\n"
        ),
        tags=["federated"],
        metrics=[spec.metric],
    )
    export_sklearn(build_model(spec, params), spec.input.n_features, card, directory, name=name)


def accuracy_on(features: Any, labels: Any) -> Evaluate:
    """An `Evaluate` on the requester's own held-out rows (never sent anywhere)."""
    from mercato.federation.learning import evaluate

    def measure(spec: TaskSpec, params: Params) -> float:
        return evaluate(spec, params, features, labels)

    return measure


__all__ = [
    "Coordinator",
    "FederationChain",
    "KeySource",
    "accuracy_on",
    "raw_cid_for",
    "store_key_source",
    "write_result_package",
]
