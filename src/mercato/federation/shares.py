# SPDX-License-Identifier: AGPL-3.0-only
"""How a task's reward is split: each seat's share in basis points.

The coordinator records, for every round, which seats' updates it used and with how
many examples. A `Scorer` turns that record into shares; the default one pays in
proportion to example-weighted updates over the rounds a seat contributed to. Other
scorers (issue 15's contribution scores) plug in behind the same interface.

The contract's rules hold for every scorer: shares sum to exactly 10,000 and a seat
that never contributed gets 0. A share of 0 forfeits the seat's stake at `finalize`,
so a seat with any positive weight gets at least 1 basis point (`to_basis_points`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from mercato.errors import FederationError

BPS = 10_000


@dataclass(frozen=True)
class RoundContribution:
    """One round's record: the examples behind each seat's update that was used."""

    round: int
    examples: Mapping[int, int]  # seat -> examples its update was trained on


class Scorer(Protocol):
    """Turns the rounds' records into shares."""

    def shares(self, seats: int, rounds: Sequence[RoundContribution]) -> list[int]:
        """Shares in basis points, one per seat (index = seat), summing to 10,000.

        Args:
            seats: Number of seats in the task.
            rounds: Every committed round's record.

        Returns:
            The shares.

        Raises:
            FederationError: no seat contributed to any round.
        """
        ...


def to_basis_points(weights: Sequence[float]) -> list[int]:
    """Normalise non-negative weights to integers summing to exactly 10,000.

    Largest remainder: each gets its floor, and the leftover points go to the largest
    fractional parts (ties to the lower seat), so rounding never drifts the sum and a
    zero weight always stays zero. A positive weight never rounds down to 0: the
    contract takes the stake of a seat whose share is 0, so such a seat gets 1 point,
    taken from the largest share (ties to the lower seat).

    Raises:
        FederationError: every weight is zero (or one is negative), or more than
            10,000 weights are positive.
    """
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise FederationError("No seat contributed to any round, so there is nothing to share.")
    if sum(1 for w in weights if w > 0) > BPS:
        raise FederationError(f"More than {BPS:,} seats contributed; a share is at least 1 bps.")
    exact = [w * BPS / total for w in weights]
    shares = [int(x) for x in exact]
    leftover = BPS - sum(shares)
    order = sorted(
        (i for i, w in enumerate(weights) if w > 0), key=lambda i: (shares[i] - exact[i], i)
    )
    for i in order[:leftover]:
        shares[i] += 1
    for i, weight in enumerate(weights):
        if weight > 0 and shares[i] == 0:
            largest = max(range(len(shares)), key=lambda j: (shares[j], -j))
            shares[largest] -= 1
            shares[i] = 1
    return shares


class ExampleWeightedScorer:
    """Shares in proportion to the examples behind each seat's used updates, summed
    over rounds (what FedAvg weighted each update by)."""

    def shares(self, seats: int, rounds: Sequence[RoundContribution]) -> list[int]:
        """See `Scorer.shares`."""
        weights = [0.0] * seats
        for record in rounds:
            for seat, examples in record.examples.items():
                if not 0 <= seat < seats:
                    raise FederationError(f"Round {record.round} names seat {seat} of {seats}.")
                weights[seat] += max(0, examples)
        return to_basis_points(weights)
