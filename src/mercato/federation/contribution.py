# SPDX-License-Identifier: AGPL-3.0-only
"""What each participant of a federated round contributed, and a global model that
survives bad updates.

In a *scored* task the coordinator sees every participant's update. It aggregates them
with a robust rule (a trimmed mean whose cut follows the replies, rounded up; Flower's
median or Krum: a poisoned update cannot drag the global model far) over the updates
worth aggregating (`worth_aggregating`: no echoes, no update that cost over five points
this round, a Sybil group once), and scores each participant on the requester's
validation set, which never leaves the coordinator:

- leave-one-out: how much worse the round's global model is without the participant;
- truncated Monte-Carlo Shapley (Ghorbani & Zou, 2019): the participant's average
  marginal value over random orders of arrival, each order cut short once the global
  model is reached, within a budget of evaluations;
- exact Shapley, over every coalition (for a handful of participants, and to check the
  estimate);
- "auto" (the default, `auto_method`): exact while 2^players evaluations fit in the
  budget, TMC-Shapley within it above. Leave-one-out can leave an honest owner whose
  data others also hold at 0, which forfeits its stake.

A coalition S of the round's n participants is valued by evaluating the previous
global model moved by its members' part of the round's mean step,
`previous + sum(update_i - previous for i in S) / n`: the empty coalition is the
previous model, the whole round is the plain mean of the updates. Each update is
valued for what it adds to that step, so an echo of the global model adds exactly
nothing, a poisoned update shows as the harm it does, and claimed example counts play
no part (claiming more earns nothing). Not the robust rule itself: it changes
behaviour with the coalition's size (a trimmed mean of four cuts two updates per
coordinate, of three none), so leaving one out would measure the rule, not the update. Scores are
summed over rounds; shares are the positive totals normalized to 10,000 basis points,
and a participant whose total is not above `min_contribution` gets nothing (an echo of
the global model, a little noise, a poisoned update). Participants whose updates point
the same way round after round (one data set joined from several addresses) are a
Sybil group and share one participant's credit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from flwr.server.strategy.aggregate import (
    aggregate,
    aggregate_krum,
    aggregate_median,
)
from numpy.typing import NDArray

from mercato.errors import FederationSpecError
from mercato.federation.shares import to_basis_points

Params = list[NDArray[np.floating]]
Evaluate = Callable[[Params], float]  # a model's validation metric; higher is better
RuleName = Literal["fedavg", "fedtrimmedavg", "fedmedian", "krum", "multikrum"]
RULES: tuple[RuleName, ...] = ("fedavg", "fedtrimmedavg", "fedmedian", "krum", "multikrum")


@dataclass(frozen=True)
class Update:
    """One participant's model after local training in a round."""

    seat: int
    params: Params
    num_examples: int


@dataclass(frozen=True)
class AggregationRule:
    """How a round's updates become the global model (a task spec setting).

    Attributes:
        name: `fedtrimmedavg` (default), `fedmedian`, `krum`, `multikrum`, or `fedavg`
            (weighted by claimed examples: not robust, for comparison).
        trim_fraction: Share of the round's updates cut from each end per coordinate
            by the trimmed mean, rounded up (`trimmed_per_side`): 0.25 cuts one of
            four updates on each side, two of five to eight, three of nine to twelve,
            never so many that no update is left.
        num_malicious: Updates Krum assumes may be hostile.
        to_keep: Updates MultiKrum averages (0: plain Krum picks one).
    """

    name: RuleName = "fedtrimmedavg"
    trim_fraction: float = 0.25
    num_malicious: int = 1
    to_keep: int = 0

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise FederationSpecError(
                f"Unknown aggregation rule {self.name!r}; use one of {', '.join(RULES)}."
            )
        if not 0 <= self.trim_fraction < 0.5:
            raise FederationSpecError(
                f"trim_fraction must be at least 0 and below 0.5, not {self.trim_fraction}."
            )
        if self.num_malicious < 0 or self.to_keep < 0:
            raise FederationSpecError("num_malicious and to_keep cannot be negative.")

    def aggregate(self, updates: Sequence[Update]) -> Params:
        """The global model these updates make (Flower's aggregation functions).

        Raises:
            ValueError: No update.
        """
        if not updates:
            raise ValueError("nothing to aggregate")
        results = [(u.params, u.num_examples) for u in updates]
        name = self.name
        # Krum needs room for its n - f - 2 neighbours; smaller coalitions (valued
        # while scoring) fall back to the median, the other rule that picks no side.
        if name in ("krum", "multikrum") and len(updates) < self.num_malicious + 3:
            name = "fedmedian"
        if name == "fedavg":
            return aggregate(results)
        if name == "fedtrimmedavg":
            return trimmed_mean([u.params for u in updates], self.trim_fraction)
        if name == "fedmedian":
            return aggregate_median(results)
        to_keep = min(self.to_keep, len(updates)) if name == "multikrum" else 0
        return aggregate_krum(results, self.num_malicious, to_keep)


def trimmed_per_side(trim_fraction: float, replies: int) -> int:
    """How many updates the trimmed mean cuts from each end, per coordinate.

    `trim_fraction` of the updates that replied, rounded *up*, so that as many hostile
    updates as the fraction promises are cut however many seats replied (Flower's
    FedTrimmedAvg rounds down: at 0.25 it cuts one of six, and a second poisoner stays
    in the mean); at most `(replies - 1) // 2`, so at least one update is left (the
    median of an odd count). A trimmed mean tolerates this many hostile updates.
    """
    if replies <= 0:
        return 0
    wanted = math.ceil(trim_fraction * replies - 1e-9)  # 0.25 * 4 is one, not two
    return max(0, min(wanted, (replies - 1) // 2))


def trimmed_mean(models: Sequence[Params], trim_fraction: float) -> Params:
    """The coordinate-wise mean of the models after cutting `trimmed_per_side` of them
    from each end (unweighted, as Flower's FedTrimmedAvg: claimed example counts
    cannot buy weight)."""
    cut = trimmed_per_side(trim_fraction, len(models))
    out: Params = []
    for layers in zip(*models, strict=True):
        stacked = np.sort(np.stack([np.asarray(layer) for layer in layers]), axis=0)
        out.append(np.mean(stacked[cut : len(models) - cut], axis=0))
    return out


def tolerated_bad_seats(
    aggregation: str, trim_fraction: float, krum_malicious: int, replies: int
) -> int:
    """How many hostile updates among `replies` a rule keeps out of the global model.

    The trimmed mean: `trimmed_per_side`; the median: fewer than half; Krum: the
    `krum_malicious` it is told to expect (when it has room for its neighbours);
    FedAvg: none (one scaled update moves the mean anywhere).
    """
    if aggregation == "trimmed_mean":
        return trimmed_per_side(trim_fraction, replies)
    if aggregation == "median":
        return max(0, (replies - 1) // 2)
    if aggregation == "krum":
        return krum_malicious if replies >= krum_malicious + 3 else max(0, (replies - 1) // 2)
    return 0


_RULE_OF_SETTING: Mapping[str, RuleName] = {
    "trimmed_mean": "fedtrimmedavg",
    "median": "fedmedian",
    "krum": "krum",
    "fedavg": "fedavg",
}


def rule_for(aggregation: str, trim_fraction: float, krum_malicious: int) -> AggregationRule:
    """The rule a spec's `[scoring]` settings name (`mercato.federation.spec.ScoringSettings`).

    Raises:
        FederationSpecError: an unknown aggregation or a setting out of range.
    """
    if aggregation not in _RULE_OF_SETTING:
        raise FederationSpecError(
            f"Unknown aggregation {aggregation!r}; use one of {', '.join(_RULE_OF_SETTING)}."
        )
    return AggregationRule(
        name=_RULE_OF_SETTING[aggregation],
        trim_fraction=float(trim_fraction),
        num_malicious=int(krum_malicious),
    )


def distinct_updates(updates: Iterable[Update]) -> list[Update]:
    """One update per seat: the first each seat sent (sending twice earns nothing)."""
    seen: dict[int, Update] = {}
    for update in updates:
        seen.setdefault(update.seat, update)
    return list(seen.values())


class CoalitionValue:
    """v(S) for coalitions of a round's players (module docstring), memoized.

    A player is one seat, or a Sybil group of seats counted as one participant: its
    step is the mean of its members' steps, and its members split what it scores.
    Scoring functions see players by index (0..m-1); `per_seat` turns their scores
    into scores per seat.
    """

    def __init__(
        self,
        previous: Params,
        updates: Sequence[Update],
        evaluate: Evaluate,
        groups: Sequence[set[int]] = (),
    ) -> None:
        self.previous = previous
        self.evaluate = evaluate
        self.evaluations = 0
        by_seat = {u.seat: u for u in distinct_updates(updates)}
        units = [frozenset(g) & by_seat.keys() for g in groups]
        units = [u for u in units if len(u) > 1]
        grouped = set().union(*units) if units else set()
        units += [frozenset({seat}) for seat in by_seat if seat not in grouped]
        self.players: list[frozenset[int]] = sorted(units, key=min)
        m = max(len(self.players), 1)
        self._steps = [
            [
                sum(by_seat[seat].params[k] - previous[k] for seat in unit) / (len(unit) * m)
                for k in range(len(previous))
            ]
            for unit in self.players
        ]
        self._memo: dict[frozenset[int], float] = {}

    def model(self, coalition: Iterable[int]) -> Params:
        """The previous model moved by the coalition's steps (players by index)."""
        model: Params = [np.array(layer, dtype=np.float64) for layer in self.previous]
        for player in sorted(set(coalition)):
            for layer, step in zip(model, self._steps[player], strict=True):
                layer += step
        return model

    def __call__(self, coalition: Iterable[int]) -> float:
        key = frozenset(coalition)
        if key not in self._memo:
            self.evaluations += 1
            self._memo[key] = float(self.evaluate(self.model(key)))
        return self._memo[key]

    @property
    def everyone(self) -> frozenset[int]:
        return frozenset(range(len(self.players)))

    def per_seat(self, scores: Mapping[int, float]) -> dict[int, float]:
        """Player scores as seat scores: a group's members split its score equally."""
        return {
            seat: scores[player] / len(unit)
            for player, unit in enumerate(self.players)
            for seat in unit
        }


def leave_one_out(value: CoalitionValue) -> dict[int, float]:
    """Each seat's score: v(all) - v(all without its player). n + 1 evaluations.

    Cheap, but it under-credits participants whose data overlap (each covers for the
    other, so leaving either out changes little): prefer Shapley when the budget allows.
    """
    whole = value(value.everyone)
    return value.per_seat({p: whole - value(value.everyone - {p}) for p in value.everyone})


def exact_shapley(value: CoalitionValue) -> dict[int, float]:
    """Each seat's Shapley value over every coalition: 2^m evaluations (m <= 12)."""
    m = len(value.players)
    if m > 12:
        raise ValueError(f"exact Shapley over {m} participants needs 2^{m} evaluations")
    scores = dict.fromkeys(range(m), 0.0)
    for player in range(m):
        others = [p for p in range(m) if p != player]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for coalition in itertools.combinations(others, size):
                scores[player] += weight * (value({*coalition, player}) - value(coalition))
    return value.per_seat(scores)


def tmc_shapley(
    value: CoalitionValue,
    *,
    budget: int,
    tolerance: float = 0.0,
    rng: np.random.Generator | None = None,
) -> dict[int, float]:
    """Truncated Monte-Carlo Shapley within `budget` new evaluations.

    Random orders of arrival; along each, a player's marginal value is what it adds to
    those before it. Once the coalition's value is within `tolerance` of the whole
    round's, the rest of the order is counted as adding nothing (the truncation).

    Args:
        value: The round's coalition values.
        budget: Most evaluations to spend (memoized ones are free); at least one whole
            order is always walked.
        tolerance: Truncation distance to v(all).
        rng: Source of the orders; seeded by the caller so anyone can recompute them.

    Returns:
        The estimate per seat.
    """
    rng = rng or np.random.default_rng(0)
    m = len(value.players)
    whole = value(value.everyone)
    start = value.evaluations
    totals = dict.fromkeys(range(m), 0.0)
    orders = 0
    while orders == 0 or value.evaluations - start < budget:
        order = [int(i) for i in rng.permutation(m)]
        # Each order and its reverse (antithetic sampling): a player early in one is
        # late in the other, which cancels much of the variance of the first places.
        for walk in (order, order[::-1]):
            coalition: list[int] = []
            before = value(coalition)
            for player in walk:
                after = before if abs(whole - before) <= tolerance else value([*coalition, player])
                totals[player] += after - before
                coalition.append(player)
                before = after
            orders += 1
        if m <= 1 or orders >= 10 * math.factorial(min(m, 10)):
            break  # far more orders than there are: the estimate is as good as exact
    return value.per_seat({p: total / orders for p, total in totals.items()})


def auto_method(players: int, budget: int) -> str:
    """What valuation "auto" uses for a round of `players` players: "exact" when its
    2^m evaluations fit in `budget`, else "tmc_shapley" within it. Anyone recomputes
    it from the round's published players and the spec's budget."""
    return "exact" if players <= 12 and 2**players <= budget else "tmc_shapley"


def shapley(
    value: CoalitionValue, *, budget: int, rng: np.random.Generator | None = None
) -> dict[int, float]:
    """Exact Shapley when 2^m evaluations fit in `budget`, else the TMC estimate."""
    if auto_method(len(value.players), budget) == "exact":
        return exact_shapley(value)
    return tmc_shapley(value, budget=budget, rng=rng)


IDLE_STEP = 0.01  # of the round's median step length: an update that moved nothing
HARMFUL_ROUND_SCORE = -0.05  # a round's score below this: it cost over five points


def worth_aggregating(
    previous: Params,
    updates: Sequence[Update],
    scores: Mapping[int, float],
    players: Sequence[frozenset[int]] = (),
) -> list[Update]:
    """The round's updates that go into the global model: one per player.

    A Sybil group (`players`: `CoalitionValue.players`) goes in as one update, the
    mean of its members' (under the seat of its first member): one data set joined
    from two addresses would otherwise sit twice among a median's or trimmed mean's
    values and pull the model toward its own data, as it is paid once.

    Left out: an update that moved the model less than `IDLE_STEP` of the round's
    median step length (an echo of the global model, a little noise: each pulls every
    coordinate of a trimmed mean toward the previous model, and takes a place the cut
    would otherwise spend on a hostile update), and one whose score this round is
    below `HARMFUL_ROUND_SCORE` (it made the model lose more than five points of the
    validation metric: a poisoner, which the trimmed mean otherwise only cuts from the
    coordinates where it is extreme). Honest data owners' updates scored a little
    below 0 late in a task (the model already knows what they hold) stay in. Leaving an
    update out changes nothing about its seat's score or share. When nothing is left
    every update is kept (the robust rule alone decides), so a round always has a
    model.
    """
    distinct = distinct_updates(updates)
    lengths = {u.seat: float(np.linalg.norm(update_direction(u, previous))) for u in distinct}
    typical = float(np.median(list(lengths.values()))) if lengths else 0.0
    kept = [
        u
        for u in distinct
        if lengths[u.seat] > IDLE_STEP * typical and scores.get(u.seat, 0.0) >= HARMFUL_ROUND_SCORE
    ]
    chosen = kept or distinct
    merged: list[Update] = []
    placed: set[int] = set()
    group_of = {seat: unit for unit in players if len(unit) > 1 for seat in unit}
    for update in chosen:
        if update.seat in placed:
            continue
        members = [u for u in chosen if u.seat in group_of.get(update.seat, {update.seat})]
        placed.update(u.seat for u in members)
        if len(members) == 1:
            merged.append(update)
            continue
        merged.append(
            Update(
                seat=min(u.seat for u in members),
                params=[
                    np.mean([np.asarray(u.params[k], dtype=np.float64) for u in members], axis=0)
                    for k in range(len(update.params))
                ],
                num_examples=max(u.num_examples for u in members),
            )
        )
    return merged


def update_direction(update: Update, previous: Params) -> NDArray[np.floating]:
    """The update's change from the previous global model, as one flat vector."""
    return np.concatenate(
        [np.ravel(a - b) for a, b in zip(update.params, previous, strict=True)]
    ).astype(np.float64)


@dataclass
class SybilDetector:
    """Finds seats whose update directions agree round after round.

    Two honest data owners hold different data, so their updates differ; one data set
    joined under two addresses gives (nearly) the same update twice. The mean cosine
    similarity of each pair's update directions over the rounds both sent one is
    compared with `threshold` (a task spec setting). Observe a round before scoring it,
    so a pair found in round 1 is scored as one player from round 1.
    """

    threshold: float = 0.98
    _sums: dict[tuple[int, int], float] = field(default_factory=dict)
    _counts: dict[tuple[int, int], int] = field(default_factory=dict)

    def observe(self, previous: Params, updates: Sequence[Update]) -> None:
        """Adds one round's updates."""
        directions = {u.seat: update_direction(u, previous) for u in distinct_updates(updates)}
        for a, b in itertools.combinations(sorted(directions), 2):
            na, nb = np.linalg.norm(directions[a]), np.linalg.norm(directions[b])
            if na == 0 or nb == 0:
                continue  # an echo has no direction: scoring gives it nothing anyway
            cosine = float(directions[a] @ directions[b] / (na * nb))
            self._sums[(a, b)] = self._sums.get((a, b), 0.0) + cosine
            self._counts[(a, b)] = self._counts.get((a, b), 0) + 1

    def to_state(self) -> dict[str, list[list[float]]]:
        """What it has observed, as JSON-ready data (checkpointed with each round)."""
        return {
            "pairs": [
                [a, b, self._sums[(a, b)], self._counts[(a, b)]] for a, b in sorted(self._sums)
            ]
        }

    @classmethod
    def from_state(cls, threshold: float, state: Mapping[str, Any]) -> SybilDetector:
        """A detector that has observed what `to_state` recorded.

        Raises:
            ValueError: the state is not one `to_state` wrote.
        """
        detector = cls(threshold=threshold)
        try:
            for a, b, total, count in state["pairs"]:
                detector._sums[(int(a), int(b))] = float(total)
                detector._counts[(int(a), int(b))] = int(count)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a Sybil detector's state: {exc}") from exc
        return detector

    def similarity(self, a: int, b: int) -> float | None:
        pair = (min(a, b), max(a, b))
        count = self._counts.get(pair)
        return None if not count else self._sums[pair] / count

    def groups(self) -> list[set[int]]:
        """Seats linked by a pair above the threshold, as groups (two or more seats)."""
        parent: dict[int, int] = {}

        def root(seat: int) -> int:
            while parent.setdefault(seat, seat) != seat:
                seat = parent[seat]
            return seat

        for (a, b), total in self._sums.items():
            if total / self._counts[(a, b)] >= self.threshold:
                parent[root(a)] = root(b)
        grouped: dict[int, set[int]] = {}
        for seat in list(parent):
            grouped.setdefault(root(seat), set()).add(seat)
        return [g for g in grouped.values() if len(g) > 1]


DEFAULT_MIN_CONTRIBUTION = 0.01  # one point of accuracy, summed over the rounds


def shares_bps(
    totals: Mapping[int, float], *, min_contribution: float = DEFAULT_MIN_CONTRIBUTION
) -> dict[int, int]:
    """Basis points per seat from summed scores, adding up to exactly 10,000.

    Args:
        totals: Each seat's score summed over rounds.
        min_contribution: A total at or below this earns nothing (and the seat is
            slashed as a free-rider): a little noise on the global model can move the
            metric by a validation example or two by luck, never by a point.

    Returns:
        Shares by seat (0 for free-riders); all 0 when nobody contributed.
    """
    credit = {seat: total if total > min_contribution else 0.0 for seat, total in totals.items()}
    if not any(credit.values()):
        return dict.fromkeys(totals, 0)
    seats = sorted(credit)
    return dict(zip(seats, to_basis_points([credit[s] for s in seats]), strict=True))


def free_riders(shares: Mapping[int, int]) -> set[int]:
    """Seats whose share is 0: slashed at finalize."""
    return {seat for seat, bps in shares.items() if bps == 0}
