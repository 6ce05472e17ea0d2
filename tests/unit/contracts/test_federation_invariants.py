# SPDX-License-Identifier: AGPL-3.0-only
"""Random sequences of federated tasks against a Python model of the federation contract.

After every step: the contract holds exactly every reward and stake paid in, less every
claim paid out; for each ended task, what was paid plus what is still claimable equals
what came in (no rounding dust, nothing owed twice). Each claim pays exactly what the
model says: after a finalize, stakes back to the seats whose share is above 0 and the
reward plus every other stake (never contributed, free-rider, drop-out) by share; refunds
after a cancel or abort. At the end of each run every task is ended (aborted if it could
not finish), everyone claims, and the contract's balance is 0: no path locks tokens.
Joins, rounds and shares are sometimes wrong on purpose; each is refused with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import boa
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.unit.contracts.chain import mercato, reverts
from tests.unit.contracts.federation import (
    ABORTED,
    CANCELLED,
    FINALIZED,
    MODEL_DIGEST,
    OPEN,
    ROUND_DIGEST,
    RUNNING,
    SPEC,
    approve,
    federation,
    join,
    register,
)

BPS = 10_000
UNIT = 10**18
REWARDS = [0, 1, 7, 10**18 + 3, 100 * UNIT]
STAKES = [0, 1, 3, 5 * UNIT]
WAITS = [1, 300, 1_000, 5_000, 20_000]
JOIN_WINDOW = 1_000
FINISH_WINDOW = 5_000


@dataclass
class TaskModel:
    requester: str
    reward: int
    stake: int
    min_participants: int
    max_participants: int
    join_deadline: int
    finish_deadline: int
    status: int = OPEN
    seats: list[str] = field(default_factory=list)
    rounds: int = 0
    contributors: int = 0
    shares: list[int] = field(default_factory=list)
    paid_in: int = 0
    paid_out: int = 0
    claimed: set[str] = field(default_factory=set)

    def contributed(self, seat: int) -> bool:
        return (self.contributors >> seat) & 1 == 1

    def due(self, account: str) -> int:
        """What a claim by `account` pays now, by the rules the contract states."""
        if self.status not in (FINALIZED, CANCELLED, ABORTED) or account in self.claimed:
            return 0
        amount = 0
        counted = bin(self.contributors).count("1")
        if account in self.seats:
            seat = self.seats.index(account)
            if self.status == FINALIZED:
                kept = sum(1 for share in self.shares if share)
                pool = self.reward + self.stake * (len(self.seats) - kept)
                below, upto = sum(self.shares[:seat]), sum(self.shares[: seat + 1])
                amount += pool * upto // BPS - pool * below // BPS
                amount += self.stake if self.shares[seat] else 0
            elif self.status == ABORTED and counted and self.contributed(seat):
                rank = bin(self.contributors & ((1 << seat) - 1)).count("1")
                amount += self.stake + (
                    self.reward * (rank + 1) // counted - self.reward * rank // counted
                )
            else:
                amount += self.stake
        if account == self.requester and (
            self.status == CANCELLED or (self.status == ABORTED and counted == 0)
        ):
            amount += self.reward
        return amount


class FederationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        chain = mercato()  # deployed by the session fixture, outside this anchor
        self._anchor = boa.env.anchor()
        self._anchor.__enter__()
        self.token: Any = chain.token
        self.fed: Any = federation(chain)
        self.accounts = [*chain.accounts, chain.signer]
        self.coordinator = str(boa.env.generate_address())
        self.tasks: dict[int, TaskModel] = {}
        approve(self.token, self.fed.address, *self.accounts)

    def teardown(self) -> None:
        try:
            self._end_everything()
        finally:
            self._anchor.__exit__(None, None, None)

    # -- helpers ----------------------------------------------------------------

    def _now(self) -> int:
        return int(boa.env.timestamp)

    def _live(self) -> list[int]:
        return sorted(i for i, t in self.tasks.items() if t.status in (OPEN, RUNNING))

    def _ended(self) -> list[int]:
        return sorted(i for i, t in self.tasks.items() if t.status not in (OPEN, RUNNING))

    def _claim(self, task_id: int, account: str) -> None:
        task = self.tasks[task_id]
        expected = task.due(account)
        assert self.fed.claimable(task_id, account) == expected
        if expected == 0:
            if task.status in (OPEN, RUNNING):
                reason = "federation: task has not ended"
            else:
                reason = "federation: nothing to claim"
            with boa.env.prank(account), reverts(reason):
                self.fed.claim(task_id)
            return
        with boa.env.prank(account):
            assert self.fed.claim(task_id) == expected
        task.claimed.add(account)
        task.paid_out += expected
        event(f"claimed after status {task.status}")

    def _end_everything(self) -> None:
        boa.env.time_travel(seconds=FINISH_WINDOW * 4)
        for task_id in self._live():
            self.fed.abort(task_id)
            self._mark_aborted(task_id)
        for task_id, task in self.tasks.items():
            for account in {*task.seats, task.requester}:
                if task.due(account):
                    self._claim(task_id, account)
        assert self.token.balanceOf(self.fed.address) == 0
        for task in self.tasks.values():
            assert task.paid_out == task.paid_in

    def _mark_aborted(self, task_id: int) -> None:
        self.tasks[task_id].status = ABORTED

    # -- rules ------------------------------------------------------------------

    @initialize(reward=st.sampled_from(REWARDS), stake=st.sampled_from(STAKES))
    def seed_task(self, reward: int, stake: int) -> None:
        """A task with three seats taken, so that runs start with rounds to commit."""
        self.create(0, reward, stake, 2, 1)
        for who in (1, 2, 3):
            join(self.fed, 1, self.accounts[who])
            self.tasks[1].seats.append(self.accounts[who])
            self.tasks[1].paid_in += stake

    @precondition(lambda self: len(self.tasks) < 5)
    @rule(
        requester=st.integers(0, 5),
        reward=st.sampled_from(REWARDS),
        stake=st.sampled_from(STAKES),
        min_participants=st.integers(1, 3),
        extra=st.integers(0, 2),
    )
    def create(
        self, requester: int, reward: int, stake: int, min_participants: int, extra: int
    ) -> None:
        account = self.accounts[requester]
        start = self._now()
        with boa.env.prank(account):
            task_id = int(
                self.fed.create_task(
                    SPEC,
                    reward,
                    stake,
                    min_participants,
                    min_participants + extra,
                    start + JOIN_WINDOW,
                    start + FINISH_WINDOW,
                    self.coordinator,
                    0,
                    0,
                )
            )
        assert task_id == len(self.tasks) + 1
        self.tasks[task_id] = TaskModel(
            account,
            reward,
            stake,
            min_participants,
            min_participants + extra,
            start + JOIN_WINDOW,
            start + FINISH_WINDOW,
            paid_in=reward,
        )

    @precondition(lambda self: self.tasks)
    @rule(data=st.data(), who=st.integers(0, 5), borrowed_key=st.sampled_from([False] * 5 + [True]))
    def join(self, data: st.DataObject, who: int, borrowed_key: bool) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.tasks)))
        task = self.tasks[task_id]
        account = self.accounts[who]
        # A borrowed key is another account's, registered to that account.
        key = register(self.fed, self.accounts[(who + 1) % 6] if borrowed_key else account)
        reason = None
        if task.status != OPEN:
            reason = (
                "federation: training has started"
                if task.status == RUNNING
                else "federation: task has ended"
            )
        elif self._now() > task.join_deadline:
            reason = "federation: join deadline passed"
        elif len(task.seats) == task.max_participants:
            reason = "federation: task is full"
        elif account in task.seats:
            reason = "federation: account already holds a seat"
        elif borrowed_key:
            reason = "federation: node key is not registered to the caller"
        if reason is not None:
            with boa.env.prank(account), reverts(reason):
                self.fed.join(task_id, key)
            return
        with boa.env.prank(account):
            self.fed.join(task_id, key)
        task.seats.append(account)
        task.paid_in += task.stake

    @precondition(lambda self: self._live())
    @rule(data=st.data(), skip=st.sampled_from([0, 0, 0, 1]))
    def commit_round(self, data: st.DataObject, skip: int) -> None:
        task_id = data.draw(st.sampled_from(self._live()))
        task = self.tasks[task_id]
        contributors = data.draw(st.integers(0, (1 << max(len(task.seats), 1)) - 1))
        round_ = task.rounds + 1 + skip
        reason = None
        if self._now() > task.finish_deadline:
            reason = "federation: finish deadline passed"
        elif skip:
            reason = "federation: rounds must be committed in order"
        elif len(task.seats) < task.min_participants:
            reason = "federation: too few participants"
        elif contributors >> len(task.seats):
            reason = "federation: contributor seat not taken"
        with boa.env.prank(self.coordinator):
            if reason is not None:
                with reverts(reason):
                    self.fed.commit_round(
                        task_id, round_, MODEL_DIGEST, ROUND_DIGEST, contributors, 0
                    )
                return
            self.fed.commit_round(task_id, round_, MODEL_DIGEST, ROUND_DIGEST, contributors, 0)
        task.rounds = round_
        task.contributors |= contributors
        task.status = RUNNING

    @precondition(lambda self: any(self.tasks[i].status == RUNNING for i in self._live()))
    @rule(
        data=st.data(),
        cheat=st.sampled_from([None, None, "sum", "slash"]),
        zero=st.sampled_from([None, None, "free-rider"]),
    )
    def finalize(self, data: st.DataObject, cheat: str | None, zero: str | None) -> None:
        running = [i for i in self._live() if self.tasks[i].status == RUNNING]
        self._finalize(data.draw(st.sampled_from(running)), data, cheat, zero)

    def _trainable(self) -> list[int]:
        now = self._now()
        return [
            i
            for i in self._live()
            if len(self.tasks[i].seats) >= self.tasks[i].min_participants
            and now <= self.tasks[i].finish_deadline
        ]

    @precondition(lambda self: self._trainable())
    @rule(data=st.data(), zero=st.sampled_from([None, "free-rider", "free-rider"]))
    def train_and_finalize(self, data: st.DataObject, zero: str | None) -> None:
        """A round that used some seats (often all), then shares at once: without it
        most runs let the finish deadline pass first, and finalized tasks, with a
        contributor at share 0 among them, would be rare."""
        task_id = data.draw(st.sampled_from(self._trainable()))
        task = self.tasks[task_id]
        seats = len(task.seats)
        everyone = (1 << seats) - 1
        contributors = data.draw(st.one_of(st.just(everyone), st.integers(1, everyone)))
        with boa.env.prank(self.coordinator):
            self.fed.commit_round(
                task_id, task.rounds + 1, MODEL_DIGEST, ROUND_DIGEST, contributors, 0
            )
        task.rounds += 1
        task.contributors |= contributors
        task.status = RUNNING
        self._finalize(task_id, data, None, zero)

    def _finalize(
        self, task_id: int, data: st.DataObject, cheat: str | None, zero: str | None
    ) -> None:
        task = self.tasks[task_id]
        contributed = [s for s in range(len(task.seats)) if task.contributed(s)]
        shares = [0] * len(task.seats)
        reason = None
        if contributed:
            cuts = sorted(data.draw(st.lists(st.integers(0, BPS), max_size=len(contributed) - 1)))
            bounds = [0, *cuts, BPS]
            # Fewer cuts than contributors leave the last ones a share of 0, which is allowed.
            for seat, (low, high) in zip(contributed, pairwise(bounds), strict=False):
                shares[seat] = high - low
            if zero and len(contributed) > 1:
                # A contributor scored a free-rider (or a drop-out of a private task):
                # its share moves to another contributor and it forfeits its stake.
                victim, heir = contributed[0], contributed[-1]
                shares[heir] += shares[victim]
                shares[victim] = 0
        else:
            reason = "federation: shares must sum to 10,000"
        outsiders = [s for s in range(len(task.seats)) if not task.contributed(s)]
        if cheat == "sum" and contributed:
            shares[contributed[0]] += 1
            reason = "federation: shares must sum to 10,000"
        elif cheat == "slash" and outsiders:
            shares[outsiders[0]] = 1
            reason = "federation: share for a seat that never contributed"
        if self._now() > task.finish_deadline:
            reason = "federation: finish deadline passed"
        with boa.env.prank(self.coordinator):
            if reason is not None:
                with reverts(reason):
                    self.fed.finalize(task_id, shares)
                event(f"finalize refused: {reason}")
                return
            self.fed.finalize(task_id, shares)
        task.shares = shares
        task.status = FINALIZED
        event("finalized")
        if any(task.contributed(s) and not shares[s] for s in range(len(shares))):
            event("finalized with a contributor at share 0")

    @precondition(lambda self: self._live())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self._live()))
        task = self.tasks[task_id]
        reason = None
        if task.status != OPEN:
            reason = "federation: task is not open"
        elif self._now() > task.join_deadline:
            reason = "federation: join deadline passed"
        with boa.env.prank(task.requester):
            if reason is not None:
                with reverts(reason):
                    self.fed.cancel(task_id)
                return
            self.fed.cancel(task_id)
        task.status = CANCELLED

    @precondition(lambda self: self._live())
    @rule(data=st.data())
    def abort(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self._live()))
        task = self.tasks[task_id]
        now = self._now()
        undersubscribed = (
            task.status == OPEN
            and now > task.join_deadline
            and len(task.seats) < task.min_participants
        )
        if not (undersubscribed or now > task.finish_deadline):
            with reverts("federation: task can still finish"):
                self.fed.abort(task_id)
            return
        self.fed.abort(task_id)
        self._mark_aborted(task_id)
        event("aborted with contributors" if task.contributors else "aborted")

    @precondition(lambda self: self.tasks)
    @rule(data=st.data(), who=st.integers(0, 5))
    def claim(self, data: st.DataObject, who: int) -> None:
        task_id = data.draw(st.sampled_from(sorted(self.tasks)))
        self._claim(task_id, self.accounts[who])

    @precondition(lambda self: self._live())
    @rule(seconds=st.sampled_from(WAITS))
    def wait(self, seconds: int) -> None:
        boa.env.time_travel(seconds=seconds)

    # -- invariants -------------------------------------------------------------

    @invariant()
    def money_in_equals_money_held_plus_paid(self) -> None:
        held = sum(t.paid_in - t.paid_out for t in self.tasks.values())
        assert self.token.balanceOf(self.fed.address) == held

    @invariant()
    def ended_tasks_owe_exactly_what_came_in(self) -> None:
        for task_id in self._ended():
            task = self.tasks[task_id]
            owed = 0
            for account in {*task.seats, task.requester}:
                claimable = self.fed.claimable(task_id, account)
                assert claimable == task.due(account)
                owed += claimable
            assert task.paid_out + owed == task.paid_in

    @invariant()
    def task_views_match(self) -> None:
        for task_id, task in self.tasks.items():
            view = self.fed.task(task_id)
            assert (view.status, view.participants, view.rounds) == (
                task.status,
                len(task.seats),
                task.rounds,
            )
            assert view.contributors == task.contributors


FederationMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFederationInvariants = FederationMachine.TestCase
