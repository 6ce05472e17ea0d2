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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mercato.errors import (
    FederationError,
    FederationEvidenceError,
    FederationInputError,
    OwnUpdateMismatchError,
)
from mercato.federation.contribution import (
    AggregationRule,
    CoalitionValue,
    Evaluate,
    Params,
    SybilDetector,
    Update,
    auto_method,
    distinct_updates,
    exact_shapley,
    leave_one_out,
    rule_for,
    shares_bps,
    tmc_shapley,
    worth_aggregating,
)
from mercato.federation.shares import BPS
from mercato.federation.spec import ScoringSettings, blob_cid_for

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
        method: The valuation used: "loo", "tmc_shapley" or "exact" (the spec's
            "auto" resolved by `round_method`).
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
        method: What shares are computed from: "loo", "tmc_shapley" or "exact".
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


# --- The coordinator's side: one scored round ------------------------------------------


@dataclass(frozen=True)
class ScoredRound:
    """What a scored round makes: the next global model and what is published about it.

    Attributes:
        params: The next global model (the spec's robust rule over the updates).
        evidence: The round's record (its CID is the round digest committed on-chain).
        previous_bytes: `params_to_bytes` of the model the round started from.
        step_bytes: `params_to_bytes` of the step model (`evidence.step_model` names it).
    """

    params: Params
    evidence: RoundEvidence
    previous_bytes: bytes
    step_bytes: bytes


def aggregation_rule(settings: ScoringSettings) -> AggregationRule:
    """The aggregation rule of a spec's scoring settings."""
    return rule_for(settings.aggregation, settings.trim_fraction, settings.krum_malicious)


def round_method(settings: ScoringSettings, players: int) -> str:
    """The valuation a round of `players` players is scored by: the spec's, with
    "auto" resolved (`contribution.auto_method`: exact Shapley while its 2^players
    evaluations fit in `evaluations_per_round`, else TMC-Shapley within that budget)."""
    if settings.valuation == "auto":
        return auto_method(players, settings.evaluations_per_round)
    return settings.valuation


def score_round(
    settings: ScoringSettings,
    previous: Params,
    updates: Sequence[Update],
    evaluate: Evaluate,
    detector: SybilDetector,
    *,
    task_id: int,
    round: int,
) -> ScoredRound:
    """Aggregates a round robustly, scores every seat on the validation set and writes
    the round's evidence.

    The detector observes the round first, so a Sybil pair is scored as one player
    from the round it shows. Monte-Carlo orders are drawn from a generator seeded by
    (task, round), so a restarted coordinator computes the very same record.

    Args:
        settings: The spec's `[scoring]` settings.
        previous: The global model the round started from.
        updates: The round's usable updates (one per seat is kept).
        evaluate: The task's metric on the validation set.
        detector: The task's Sybil detector (updated here).
        task_id: The task.
        round: The round number.

    Returns:
        The next global model and the round's evidence.

    Raises:
        ValueError: no update.
    """
    used = distinct_updates(updates)
    start: Params = [np.asarray(layer, dtype=np.float64) for layer in previous]
    detector.observe(start, used)
    value = CoalitionValue(start, used, evaluate, groups=detector.groups())
    method = round_method(settings, len(value.players))
    if method == "exact":
        scores = exact_shapley(value)
    elif method == "tmc_shapley":
        rng = np.random.default_rng([task_id, round])
        scores = tmc_shapley(value, budget=settings.evaluations_per_round, rng=rng)
    else:
        scores = leave_one_out(value)
    rule = aggregation_rule(settings)
    previous_bytes = params_to_bytes(start)
    step_bytes = params_to_bytes(value.model(value.everyone))
    evidence = round_evidence(
        value,
        used,
        task_id=task_id,
        round=round,
        method=method,
        scores=scores,
        rule=rule,
        previous_model=str(blob_cid_for(previous_bytes)),
        step_model=str(blob_cid_for(step_bytes)),
        validation=settings.validation_cid,
    )
    return ScoredRound(
        rule.aggregate(worth_aggregating(start, used, scores, value.players)),
        evidence,
        previous_bytes,
        step_bytes,
    )


def shares_from_evidence(evidence: Sequence[RoundEvidence], seats: int) -> list[int]:
    """Each seat's share (basis points, by seat) from the rounds' published scores:
    the positive totals over rounds, normalized; a total at or below
    `contribution.DEFAULT_MIN_CONTRIBUTION` gets 0 (and forfeits the stake).

    Raises:
        FederationError: a record names a seat the task does not have, or no seat's
            total is positive (there is nothing to pay by contribution).
    """
    totals = dict.fromkeys(range(seats), 0.0)
    for record in evidence:
        for seat, score in record.scores.items():
            if not 0 <= seat < seats:
                raise FederationError(f"Round {record.round} scores seat {seat} of {seats}.")
            totals[seat] += float(score)
    by_seat = shares_bps(totals)
    if sum(by_seat.values()) != BPS:
        raise FederationError(
            "No participant's updates improved the model on the validation set in any "
            "round, so there is no contribution to pay; let the task be aborted after its "
            "finish deadline (everyone is refunded)."
        )
    return [by_seat[seat] for seat in range(seats)]


# --- Anyone's side: checking the published records --------------------------------------


def check_round_evidence(
    evidence: RoundEvidence,
    *,
    task_id: int,
    round: int,
    contributors: frozenset[int],
    settings: ScoringSettings,
) -> None:
    """Checks a round record against what the chain and the spec say.

    Args:
        evidence: The record fetched by the round digest committed on-chain.
        task_id: The task.
        round: The committed round it was fetched for.
        contributors: The seats the chain's round commitment names.
        settings: The spec's scoring settings.

    Raises:
        FederationEvidenceError: the record is of another task or round, names another
            validation set or rule, or scores seats other than the committed ones.
    """
    if evidence.task_id != task_id or evidence.round != round:
        raise FederationEvidenceError(
            task_id,
            round,
            f"the record committed for it is task {evidence.task_id}'s round {evidence.round}",
        )
    if evidence.validation != settings.validation_cid:
        raise FederationEvidenceError(
            task_id,
            round,
            f"scored on validation set {evidence.validation}, not the committed "
            f"{settings.validation_cid}",
        )
    if dict(evidence.rule) != asdict(aggregation_rule(settings)):
        raise FederationEvidenceError(
            task_id, round, f"aggregated with {dict(evidence.rule)}, not the spec's rule"
        )
    expected_method = round_method(settings, len(evidence.players))
    if evidence.method != expected_method:
        raise FederationEvidenceError(
            task_id,
            round,
            f"valued by {evidence.method!r}; the spec's valuation {settings.valuation!r} "
            f"means {expected_method!r} for a round of {len(evidence.players)} players",
        )
    seats = set(evidence.update_digests)
    in_players = {seat for player in evidence.players for seat in player}
    if seats != set(contributors) or in_players != seats:
        raise FederationEvidenceError(
            task_id,
            round,
            f"the record's seats {sorted(seats)} are not the seats committed on-chain "
            f"{sorted(contributors)}",
        )
    if set(evidence.scores) != seats or set(evidence.leave_one_out) != seats:
        raise FederationEvidenceError(
            task_id, round, "a used seat has no score, or a score has no seat"
        )
    if evidence.method == "loo":
        differ = sorted(
            seat for seat in seats if evidence.scores[seat] != evidence.leave_one_out[seat]
        )
        if differ:
            raise FederationEvidenceError(
                task_id,
                round,
                f"seats {differ} are paid by scores other than their published "
                "leave-one-out scores",
            )


SHAPLEY_TOTAL_TOLERANCE = 1e-9  # float rounding over at most 2^12 coalitions


def check_shapley_total(
    evidence: RoundEvidence, *, previous: Params, step_model: Params, evaluate: Evaluate
) -> None:
    """Checks a Shapley-scored round (exact or TMC) against what anyone can compute once
    the validation set is revealed: Shapley values add up to what the whole round adds,
    `v(all) - v(empty)`, the metric of the published step model less that of the
    starting model (TMC too: along every order the marginal values add up to it). A
    coordinator that lowers one seat's score must raise another's by as much.

    Raises:
        FederationEvidenceError: the scores do not add up to the round's gain.
    """
    gain = float(evaluate(step_model)) - float(evaluate(previous))
    total = sum(float(score) for score in evidence.scores.values())
    if abs(total - gain) > SHAPLEY_TOTAL_TOLERANCE * max(1, len(evidence.scores)):
        raise FederationEvidenceError(
            evidence.task_id,
            evidence.round,
            f"its {evidence.method} scores add up to {total:.6f}, but the round's step "
            f"model gains {gain:.6f} over its starting model on the revealed validation set",
        )


def check_shares(task_id: int, evidence: Sequence[RoundEvidence], posted: Sequence[int]) -> None:
    """Checks the shares finalized on-chain against the rounds' published scores.

    Raises:
        FederationEvidenceError: a posted share is not what the scores give.
    """
    try:
        expected = shares_from_evidence(evidence, len(posted))
    except FederationError as exc:
        raise FederationEvidenceError(task_id, 0, str(exc).rstrip(".")) from exc
    wrong = [
        f"seat {seat}: {have} bps posted, {want} by the scores"
        for seat, (have, want) in enumerate(zip(posted, expected, strict=True))
        if have != want
    ]
    if wrong:
        raise FederationEvidenceError(task_id, 0, "; ".join(wrong))


def _check_model(task_id: int, round_number: int, committed: str, data: bytes) -> None:
    """A round's global model, as served, against the digest the chain committed."""
    import onnx

    if _sha256_of(blob_cid_for(data)) != _sha256_of(committed):
        raise FederationEvidenceError(
            task_id,
            round_number,
            f"the bytes served as its global model do not hash to the committed {committed}",
        )
    try:
        onnx.load_model_from_string(data)
    except Exception as exc:  # onnx raises DecodeError and others without a common base
        raise FederationEvidenceError(
            task_id, round_number, f"its committed global model is not ONNX ({exc})"
        ) from exc


def _verify_kept(
    task_id: int,
    evidence: RoundEvidence,
    seat: int,
    previous: Params,
    step: Params,
    kept: Sequence[Params],
    evaluate: Evaluate,
) -> Verdict:
    """A seat's line of a round against the updates its node kept as sent."""
    n = evidence.round
    if not kept:
        raise FederationInputError(
            f"Round {n} of task {task_id} scores an update of seat {seat}, and this node "
            "kept none for that round: give the task's updates directory (--updates; a "
            "data owner's node keeps them in <data dir>/federation/task-<id>/updates), or, "
            "if this node never sent one, that is the evidence of a made-up update.",
            task_id=task_id,
        )
    wanted = evidence.update_digests.get(seat)
    own = next((update for update in kept if update_digest(update) == wanted), None)
    if own is None:
        raise OwnUpdateMismatchError(
            task_id,
            n,
            f"the update scored for seat {seat} (sha256 {wanted}) is not the one this "
            f"node sent in the round ({len(kept)} kept)",
        )
    verdict = verify_leave_one_out(
        evidence, seat, previous=previous, step_model=step, own_update=own, evaluate=evaluate
    )
    if verdict.recomputed is not None and not verdict.holds:
        raise OwnUpdateMismatchError(
            task_id,
            n,
            f"seat {seat}'s leave-one-out score is published as {verdict.published:.6f}; "
            f"the update this node sent earns {verdict.recomputed:.6f} on the revealed "
            "validation set",
        )
    return verdict


def _sha256_of(cid: Any) -> bytes:
    """The sha256 inside a CID: what the chain commits. A blob's root is named by it
    whichever codec (`raw` or `dag-pb`, see `spec.blob_cid_for`) the CID spells."""
    from multiformats import CID, multihash

    decoded = cid if isinstance(cid, CID) else CID.decode(str(cid))
    return bytes(multihash.unwrap(bytes(decoded.digest)))


@dataclass(frozen=True)
class CommittedRound:
    """What the chain says of one round (`market.federation.rounds`)."""

    round: int
    model_cid: str
    round_cid: str
    contributors: frozenset[int]


@dataclass(frozen=True)
class Verification:
    """What `verify_task` checked.

    Attributes:
        task_id: The task.
        rounds: The rounds whose evidence was read and checked against the chain.
        seat: The seat whose scores were recomputed (None: no participant's).
        verdicts: That seat's check per round it took part in.
        shares_checked: Whether the finalized shares were checked against the scores.
        validation_checked: Whether the revealed validation set matched the spec's CID.
    """

    task_id: int
    rounds: list[int]
    seat: int | None
    verdicts: list[Verdict]
    shares_checked: bool
    validation_checked: bool


def verify_task(
    task_id: int,
    spec: Any,
    committed: Sequence[CommittedRound],
    fetch: Any,
    *,
    initial: Params | None,
    validation: bytes | None = None,
    seat: int | None = None,
    local_data: tuple[Any, Any] | None = None,
    posted_shares: Sequence[int] | None = None,
    own_updates: Callable[[int], Sequence[Params]] | None = None,
    fetch_model: Callable[[str], bytes] | None = None,
) -> Verification:
    """Checks a scored task's published evidence, round by round (`mercato fl verify`).

    For every committed round: the record fetched by the committed round digest hashes
    to it and agrees with the chain and the spec (`check_round_evidence`). With the
    validation set (checked against the spec's CID) and a participant's own data, the
    participant's update is retrained from the round's published starting model (the
    training is deterministic: the spec fixes the seed) and its leave-one-out score
    recomputed (`verify_leave_one_out`); the starting model itself must be the initial
    model (round 1) or export to the ONNX the chain committed for the round before.
    Finalized shares must be what the published scores give.

    Args:
        task_id: The task.
        spec: Its `TaskSpec` (scored).
        committed: The chain's round commitments, in order.
        fetch: `fetch(cid_text) -> bytes`: a block by CID (from the store or the
            coordinator's node); every result is re-hashed here.
        initial: The task's initial parameters (None: round 1's starting model is not
            checked, e.g. a registry model this verifier cannot open).
        validation: The revealed validation set's bytes, if available.
        seat: The checking participant's seat.
        local_data: `(X, y)` of that participant's file.
        posted_shares: The shares finalized on-chain, by seat (None: not finalized).
        own_updates: `own_updates(round)`: the updates the seat's node kept as sent in
            that round (`mercato.federation.updates.kept_updates`). Given, the seat's
            line is checked against them instead of retraining from `local_data`: the
            only way with local DP, whose noise cannot be retrained. The evidence's
            digest must be one of them (else `OwnUpdateMismatchError`) and its
            leave-one-out score what that update earns (else the same error).
        fetch_model: `fetch_model(model_cid)`: a round's global model by the CID the
            chain names (`model_cid` spells the committed digest as a raw CID; a model
            above one block is a UnixFS file whose root has that digest). Given, every
            round's model is fetched, re-hashed against the committed digest and
            checked to be ONNX.

    Returns:
        What was checked.

    Raises:
        FederationEvidenceError: a round (or the shares) disagrees; the message says which.
        ValidationSetMismatchError: the validation bytes are not the committed set.
        OwnUpdateMismatchError: with `own_updates`, the seat's line disagrees with them.
        FederationInputError: with `own_updates`, none is kept for a round the
            evidence says the seat took part in.
        FederationError: a block cannot be fetched.
    """
    from mercato.federation.learning import evaluate as metric
    from mercato.federation.learning import export_onnx, train_local
    from mercato.federation.spec import scoring_of
    from mercato.federation.validation import check_validation, read_validation

    settings = scoring_of(spec)

    def block(cid: str, round_number: int, what: str) -> bytes:
        data = bytes(fetch(cid))
        if str(blob_cid_for(data)) != str(cid):
            raise FederationEvidenceError(
                task_id, round_number, f"the bytes served as its {what} {cid} do not hash to it"
            )
        return data

    evaluate: Evaluate | None = None
    if validation is not None:
        check_validation(task_id, validation, settings.validation_cid)
        features, labels = read_validation(validation, spec)

        def evaluate(params: Params) -> float:
            return metric(spec, params, features, labels)

    records: list[RoundEvidence] = []
    verdicts: list[Verdict] = []
    for index, commitment in enumerate(committed):
        n = commitment.round
        evidence = RoundEvidence.from_json_bytes(block(commitment.round_cid, n, "evidence"))
        check_round_evidence(
            evidence,
            task_id=task_id,
            round=n,
            contributors=commitment.contributors,
            settings=settings,
        )
        records.append(evidence)
        if fetch_model is not None:
            _check_model(task_id, n, commitment.model_cid, fetch_model(commitment.model_cid))
        if seat is None or (local_data is None and own_updates is None) or evaluate is None:
            continue
        if seat not in evidence.update_digests:
            continue  # the seat sent nothing usable this round (or it was dropped)
        previous = params_from_bytes(block(evidence.previous_model, n, "starting model"))
        if index == 0 and initial is not None:
            same = len(previous) == len(initial) and all(
                np.array_equal(np.asarray(a, dtype=np.float64), b)
                for a, b in zip(initial, previous, strict=True)
            )
            if not same:
                raise FederationEvidenceError(
                    task_id, n, "its starting model is not the task's initial model"
                )
        elif index > 0 and (
            _sha256_of(blob_cid_for(export_onnx(spec, previous)))
            != _sha256_of(committed[index - 1].model_cid)
        ):
            raise FederationEvidenceError(
                task_id,
                n,
                f"its starting model is not round {committed[index - 1].round}'s committed "
                "global model",
            )
        step = params_from_bytes(block(evidence.step_model, n, "step model"))
        if own_updates is not None:
            verdicts.append(
                _verify_kept(task_id, evidence, seat, previous, step, own_updates(n), evaluate)
            )
            continue
        assert local_data is not None
        own = train_local(spec, [p.copy() for p in previous], *local_data).params
        verdict = verify_leave_one_out(
            evidence, seat, previous=previous, step_model=step, own_update=own, evaluate=evaluate
        )
        if not verdict.digest_matches:
            raise FederationEvidenceError(
                task_id,
                n,
                f"the update scored for seat {seat} is not the one its data trains from the "
                "round's published starting model",
            )
        if verdict.recomputed is not None and not verdict.holds:
            raise FederationEvidenceError(
                task_id,
                n,
                f"seat {seat}'s leave-one-out score is published as {verdict.published:.6f}; "
                f"recomputed on the revealed validation set it is {verdict.recomputed:.6f}",
            )
        verdicts.append(verdict)
    # After the seat's own checks, which name the seat a lie was about: every
    # Shapley-scored round's scores must add up to what its step model gained.
    for evidence in records:
        if evaluate is not None and evidence.method != "loo":
            n = evidence.round
            check_shapley_total(
                evidence,
                previous=params_from_bytes(block(evidence.previous_model, n, "starting model")),
                step_model=params_from_bytes(block(evidence.step_model, n, "step model")),
                evaluate=evaluate,
            )
    if posted_shares is not None:
        check_shares(task_id, records, posted_shares)
    return Verification(
        task_id=task_id,
        rounds=[c.round for c in committed],
        seat=seat,
        verdicts=verdicts,
        shares_checked=posted_shares is not None,
        validation_checked=validation is not None,
    )
