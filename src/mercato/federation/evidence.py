# SPDX-License-Identifier: AGPL-3.0-only
"""What the coordinator of a scored task publishes each round, and how a participant
checks its own score against it.

Each round the coordinator writes a `RoundEvidence` document, stores it content-addressed
and commits its CID on-chain with the round (`commit_round`'s round digest), before the
next round starts. It names the previous global model and the round's *step model* (the
previous model moved by the mean of every player's step: the model `v(all)` values, see
`contribution`), the digest of every update it used, the Sybil groups it found, and
each seat's score, with every seat's leave-one-out score besides whatever the task
scores by.

Once the task ends the requester reveals the validation set (its CID was committed at
creation). A participant then needs nothing secret to check its own leave-one-out
score: with m players in the round, the step model without it is
`step_model - (own update - previous) / m`, and its score is what the validation metric
loses between the two. `verify_leave_one_out` does that, and checks the coordinator
used the update the participant really sent. What a participant cannot check alone:
other seats' scores (it never sees their updates), and a Shapley score (it needs every
coalition); the published digests let those seats check theirs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mercato.errors import FederationError
from mercato.federation.contribution import (
    AggregationRule,
    CoalitionValue,
    Evaluate,
    Params,
    Update,
    distinct_updates,
    leave_one_out,
)

EVIDENCE_VERSION = 1


def params_to_bytes(params: Sequence[np.ndarray[Any, Any]]) -> bytes:
    """Canonical, lossless bytes of a model's parameters: a JSON line of the layers'
    shapes, then each layer's values as little-endian float64 in C order. The step
    model is published in this form (an ONNX export would round it to float32, and the
    check below must recompute the coordinator's figures exactly)."""
    layers = [np.ascontiguousarray(layer, dtype="<f8") for layer in params]
    header = json.dumps([list(layer.shape) for layer in layers]).encode() + b"\n"
    return header + b"".join(layer.tobytes() for layer in layers)


def params_from_bytes(data: bytes) -> Params:
    """Reads `params_to_bytes`.

    Raises:
        FederationError: The bytes are not parameters in that form.
    """
    header, _, body = data.partition(b"\n")
    try:
        shapes = [tuple(int(n) for n in shape) for shape in json.loads(header)]
        sizes = [int(np.prod(shape)) * 8 for shape in shapes]
        if sum(sizes) != len(body):
            raise ValueError(f"{len(body)} bytes of values for {sum(sizes)} expected")
    except (ValueError, TypeError) as exc:
        raise FederationError(f"These are not published model parameters ({exc}).") from exc
    layers: Params = []
    offset = 0
    for shape, size in zip(shapes, sizes, strict=True):
        flat = np.frombuffer(body[offset : offset + size], dtype="<f8")
        layers.append(flat.reshape(shape).astype(np.float64))
        offset += size
    return layers


def update_digest(params: Sequence[np.ndarray[Any, Any]]) -> str:
    """The sha256 of an update's `params_to_bytes` (the learner's dtype does not matter)."""
    return hashlib.sha256(params_to_bytes(params)).hexdigest()


def round_evidence(
    value: CoalitionValue,
    updates: Sequence[Update],
    *,
    task_id: int,
    round: int,
    method: str,
    scores: Mapping[int, float],
    rule: AggregationRule,
    previous_model: str,
    step_model: str,
    validation: str,
) -> RoundEvidence:
    """The record of a scored round (its leave-one-out scores computed here: n + 1
    evaluations, most of them already memoized by the scoring).

    Args:
        value: The round's coalition values (the one the scores came from).
        updates: The updates used, one per seat.
        task_id: The task.
        round: The round number.
        method: "loo" or "shapley".
        scores: The scores shares are computed from.
        rule: The aggregation rule the global model was made with.
        previous_model: CID of the previous global model.
        step_model: CID of `params_to_bytes(value.model(value.everyone))`, stored.
        validation: CID of the validation set.
    """
    return RoundEvidence(
        task_id=task_id,
        round=round,
        method=method,
        rule=asdict(rule),
        previous_model=previous_model,
        step_model=step_model,
        players=[sorted(player) for player in value.players],
        update_digests={u.seat: update_digest(u.params) for u in distinct_updates(updates)},
        scores=dict(scores),
        leave_one_out=leave_one_out(value),
        validation=validation,
    )


@dataclass(frozen=True)
class RoundEvidence:
    """One round of a scored task, as the coordinator published it (module docstring).

    Attributes:
        task_id: The task on-chain.
        round: The round number (from 1).
        method: What shares are computed from: "loo" or "shapley".
        rule: The aggregation rule and its settings.
        previous_model: CID of the global model the round started from.
        step_model: CID of the previous model moved by the mean of the players' steps.
        players: The round's players: one seat each, or a Sybil group of seats.
        update_digests: `update_digest` of each seat's update, by seat.
        scores: Each seat's score by `method`.
        leave_one_out: Each seat's leave-one-out score (always published: the check).
        validation: CID of the validation set, committed when the task was created.
    """

    task_id: int
    round: int
    method: str
    rule: Mapping[str, Any]
    previous_model: str
    step_model: str
    players: list[list[int]]
    update_digests: Mapping[int, str]
    scores: Mapping[int, float]
    leave_one_out: Mapping[int, float]
    validation: str
    version: int = field(default=EVIDENCE_VERSION)

    def to_json_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): the bytes whose CID is committed."""
        document = asdict(self)
        for key in ("update_digests", "scores", "leave_one_out"):
            document[key] = {str(seat): value for seat, value in sorted(document[key].items())}
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json_bytes(cls, data: bytes) -> RoundEvidence:
        """Reads a published record.

        Raises:
            FederationError: The bytes are not a round record of a known version.
        """
        try:
            document = json.loads(data)
            if document.get("version") != EVIDENCE_VERSION:
                raise ValueError(f"version {document.get('version')!r}")
            for key in ("update_digests", "scores", "leave_one_out"):
                document[key] = {int(seat): value for seat, value in document[key].items()}
            return cls(**document)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise FederationError(
                f"This is not a round record Mercato can read ({exc}); check the CID the "
                "task's round commitment names."
            ) from exc

    def player_of(self, seat: int) -> list[int]:
        """The player (one seat, or a Sybil group) the seat was scored as.

        Raises:
            FederationError: The seat sent no update used in this round.
        """
        for player in self.players:
            if seat in player:
                return player
        raise FederationError(
            f"Seat {seat} has no update in round {self.round} of task {self.task_id}: the "
            "coordinator did not use one from it. If you sent one, this is the evidence of "
            "it being left out."
        )


@dataclass(frozen=True)
class Verdict:
    """The outcome of a participant's check of one round."""

    round: int
    seat: int
    published: float
    recomputed: float | None  # None when the seat was scored in a Sybil group
    digest_matches: bool

    @property
    def holds(self) -> bool:
        """The coordinator used this seat's own update and published its true score."""
        return (
            self.digest_matches
            and self.recomputed is not None
            and abs(self.recomputed - self.published) <= 1e-9
        )


def verify_leave_one_out(
    evidence: RoundEvidence,
    seat: int,
    *,
    previous: Params,
    step_model: Params,
    own_update: Params,
    evaluate: Evaluate,
) -> Verdict:
    """Recomputes a seat's leave-one-out score for one round from public data and its own
    update.

    Args:
        evidence: The round's published record.
        seat: The checking participant's seat.
        previous: The model `evidence.previous_model` names (fetched by its CID).
        step_model: The model `evidence.step_model` names (fetched by its CID).
        own_update: The update this participant sent in the round (kept by its node).
        evaluate: The task's metric on the revealed validation set.

    Returns:
        The verdict; `holds` is False when the coordinator swapped the update or
        published another score.

    Raises:
        FederationError: The seat has no update in the round.
    """
    player = evidence.player_of(seat)
    digest_matches = evidence.update_digests.get(seat) == update_digest(own_update)
    published = float(evidence.leave_one_out[seat])
    if len(player) > 1:
        # A Sybil group's step is the mean of its members' steps: one member alone
        # cannot rebuild it.
        return Verdict(evidence.round, seat, published, None, digest_matches)
    m = len(evidence.players)
    without: Params = [
        step - (mine - old) / m
        for step, mine, old in zip(step_model, own_update, previous, strict=True)
    ]
    recomputed = float(evaluate(step_model)) - float(evaluate(without))
    return Verdict(evidence.round, seat, published, recomputed, digest_matches)
