# SPDX-License-Identifier: AGPL-3.0-only
"""A participant checks its own leave-one-out score from the round's published record,
the revealed validation set and the update it sent: an honest coordinator's record holds,
a lying one is caught."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mercato.errors import FederationError
from mercato.federation.contribution import AggregationRule, CoalitionValue, Update, shapley
from mercato.federation.evidence import (
    RoundEvidence,
    Verdict,
    params_from_bytes,
    params_to_bytes,
    round_evidence,
    update_digest,
    verify_leave_one_out,
)

from . import rounds as R

PARTS, VALIDATION, _ = R.digits_split()
RULE = AggregationRule()


def _round(extra: dict[int, R.Train] | None = None) -> tuple[CoalitionValue, list[Update]]:
    previous = R.honest(PARTS[0])(R.initial_params(), 0)  # a round that starts mid-task
    trainers = {seat: R.honest(part, seed=seat) for seat, part in enumerate(PARTS)}
    trainers.update(extra or {})
    updates = [Update(seat, train(previous, 2), 300) for seat, train in trainers.items()]
    value = CoalitionValue(previous, updates, lambda p: R.accuracy(p, VALIDATION))
    return value, updates


def _published(value: CoalitionValue, updates: list[Update]) -> RoundEvidence:
    evidence = round_evidence(
        value,
        updates,
        task_id=7,
        round=2,
        method="shapley",
        scores=shapley(value, budget=64),
        rule=RULE,
        previous_model="bafkreiprevious",
        step_model="bafkreistep",
        validation="bafkreivalidation",
    )
    # What a participant reads back: the bytes whose CID is committed on-chain.
    return RoundEvidence.from_json_bytes(evidence.to_json_bytes())


def _check(evidence: RoundEvidence, value: CoalitionValue, seat: int, own: list[Update]) -> Verdict:
    step = params_from_bytes(params_to_bytes(value.model(value.everyone)))
    return verify_leave_one_out(
        evidence,
        seat,
        previous=value.previous,
        step_model=step,
        own_update=next(u.params for u in own if u.seat == seat),
        evaluate=lambda p: R.accuracy(p, VALIDATION),
    )


def test_every_participant_of_an_honest_round_verifies_its_score() -> None:
    value, updates = _round()
    evidence = _published(value, updates)
    for seat in range(len(PARTS)):
        verdict = _check(evidence, value, seat, updates)
        assert verdict.holds, verdict


def test_an_inflated_or_deflated_score_is_caught() -> None:
    value, updates = _round()
    honest = _published(value, updates)
    lowered = dict(honest.leave_one_out)
    lowered[1] -= 0.05  # the coordinator shaves seat 1's score
    lying = dataclasses.replace(honest, leave_one_out=lowered)
    assert not _check(lying, value, 1, updates).holds
    assert _check(lying, value, 2, updates).holds  # the others' checks still hold


def test_a_swapped_update_is_caught_by_its_digest() -> None:
    value, updates = _round()
    evidence = _published(value, updates)
    # The coordinator claims it used a weaker update from seat 3 than the one sent.
    weaker = [*(u for u in updates if u.seat != 3), Update(3, value.previous, 300)]
    digests = {**evidence.update_digests, 3: update_digest(weaker[-1].params)}
    swapped = dataclasses.replace(evidence, update_digests=digests)
    verdict = _check(swapped, value, 3, updates)
    assert verdict.digest_matches is False and not verdict.holds


def test_a_left_out_seat_finds_the_evidence_of_it() -> None:
    value, updates = _round()
    evidence = _published(value, [u for u in updates if u.seat != 2])
    evidence = dataclasses.replace(evidence, players=[p for p in evidence.players if 2 not in p])
    with pytest.raises(FederationError, match="did not use one from it"):
        evidence.player_of(2)


def test_a_sybil_member_cannot_check_alone_and_is_told_so() -> None:
    value, updates = _round({4: R.honest(PARTS[0], seed=0)})
    grouped = CoalitionValue(
        value.previous, updates, lambda p: R.accuracy(p, VALIDATION), groups=[{0, 4}]
    )
    evidence = _published(grouped, updates)
    verdict = _check(evidence, grouped, 0, updates)
    assert verdict.recomputed is None and verdict.digest_matches and not verdict.holds


def test_records_and_parameters_round_trip_exactly_and_bad_bytes_are_refused() -> None:
    value, updates = _round()
    evidence = _published(value, updates)
    assert RoundEvidence.from_json_bytes(evidence.to_json_bytes()) == evidence
    model = value.model(value.everyone)
    again = params_from_bytes(params_to_bytes(model))
    assert all(np.array_equal(a, b) for a, b in zip(model, again, strict=True))
    # The digest is of the values, not of the dtype a learner kept them in.
    exact = [np.array([[1.5, -2.0]], dtype=np.float32)]
    assert update_digest(exact) == update_digest([np.array([[1.5, -2.0]])])
    assert update_digest(exact) != update_digest([np.array([[1.5, -2.25]])])
    assert update_digest(exact) != update_digest([np.array([1.5, -2.0])])  # another shape
    with pytest.raises(FederationError):
        params_from_bytes(b"[[2,2]]\n" + b"\0" * 8)
    with pytest.raises(FederationError):
        RoundEvidence.from_json_bytes(b'{"version": 99}')
