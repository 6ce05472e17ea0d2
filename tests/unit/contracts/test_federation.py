# SPDX-License-Identifier: AGPL-3.0-only
"""The federation contract: tasks, seats, rounds, shares and every way money leaves it."""

from __future__ import annotations

from typing import Any

import boa
import pytest

from mercato.chain.artifacts import load_artifact
from mercato.chain.boa_backend import BoaBackend
from tests.unit.contracts.chain import Mercato, only_event, reverts, sign_permit
from tests.unit.contracts.federation import (
    ABORTED,
    CANCELLED,
    FINALIZED,
    FINISH_WINDOW,
    JOIN_WINDOW,
    MODEL_DIGEST,
    OPEN,
    REWARD,
    ROUND_DIGEST,
    RUNNING,
    SPEC,
    STAKE,
    UNIT,
    TaskTerms,
    approve,
    bitmap,
    commit,
    create,
    federation,
    join,
    join_all,
    node_key,
    now,
    register,
    splitter_at,
)


@pytest.fixture
def fed(chain: Mercato) -> Any:
    return federation(chain)


@pytest.fixture
def coordinator() -> str:
    return str(boa.env.generate_address())


@pytest.fixture
def participants(chain: Mercato, token: Any, fed: Any) -> list[str]:
    """bob, carol and dave, each letting the federation spend its tokens."""
    accounts = list(chain.accounts[1:4])
    approve(token, fed.address, *accounts)
    return accounts


@pytest.fixture
def task(fed: Any, token: Any, alice: str, coordinator: str) -> int:
    """An open task by alice: reward 100, stake 5, 2 to 4 seats."""
    approve(token, fed.address, alice)
    return create(fed, alice, coordinator)


@pytest.fixture
def joined(fed: Any, task: int, participants: list[str]) -> int:
    join_all(fed, task, participants)
    return task


def _status(fed: Any, task_id: int) -> int:
    return int(fed.task(task_id).status)


def _claim(fed: Any, account: str, task_id: int) -> int:
    with boa.env.prank(account):
        return int(fed.claim(task_id))


# -- create ---------------------------------------------------------------------------


def test_create_task_succeeds(fed: Any, token: Any, alice: str, coordinator: str) -> None:
    approve(token, fed.address, alice)
    before = token.balanceOf(alice)
    start = now()
    task_id = create(fed, alice, coordinator)
    assert task_id == 1
    event = only_event(fed, "TaskCreated")
    assert (event.task_id, event.requester, event.coordinator) == (1, alice, coordinator)
    assert (event.spec_digest, event.reward, event.stake) == (SPEC, REWARD, STAKE)
    assert (event.min_participants, event.max_participants) == (2, 4)
    assert (event.join_deadline, event.finish_deadline) == (
        start + JOIN_WINDOW,
        start + FINISH_WINDOW,
    )
    task = fed.task(task_id)
    assert (task.requester, task.coordinator, task.spec_digest) == (alice, coordinator, SPEC)
    assert (task.reward, task.stake, task.status, task.participants) == (REWARD, STAKE, OPEN, 0)
    assert (task.join_deadline, task.finish_deadline) == (
        start + JOIN_WINDOW,
        start + FINISH_WINDOW,
    )
    assert token.balanceOf(alice) == before - REWARD
    assert token.balanceOf(fed.address) == REWARD
    assert create(fed, alice, coordinator) == 2


def test_create_task_with_permit_succeeds(
    fed: Any, token: Any, signer: str, coordinator: str
) -> None:
    deadline = now() + 600
    v, r, s = sign_permit(token, fed.address, REWARD, deadline)
    with boa.env.prank(signer):
        task_id = fed.create_task_with_permit(*TaskTerms().args(coordinator), deadline, v, r, s)
    assert fed.task(task_id).requester == signer
    assert token.balanceOf(fed.address) == REWARD


def test_create_task_without_allowance(fed: Any, alice: str, coordinator: str) -> None:
    with boa.env.prank(alice), reverts("erc20: insufficient allowance"):
        fed.create_task(*TaskTerms().args(coordinator))


def test_create_task_with_a_parent_model(
    fed: Any, token: Any, listed: int, alice: str, coordinator: str
) -> None:
    approve(token, fed.address, alice)
    task_id = create(
        fed, alice, coordinator, TaskTerms(parent_model_id=listed, parent_royalty_bps=1_500)
    )
    task = fed.task(task_id)
    assert (task.parent_model_id, task.parent_royalty_bps) == (listed, 1_500)
    assert fed.splitter_terms(task_id) == (coordinator, listed, 1_500)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"spec": bytes(32)}, "federation: spec digest is empty"),
        ({"reward": 2**96}, "federation: amount too large"),
        ({"stake": 2**96}, "federation: amount too large"),
        ({"min": 0}, "federation: minimum participants must be between 1 and the maximum"),
        (
            {"min": 5, "max": 4},
            "federation: minimum participants must be between 1 and the maximum",
        ),
        ({"max": 129}, "federation: too many participants"),
        ({"join": 0}, "federation: join deadline is not in the future"),
        ({"finish": JOIN_WINDOW}, "federation: finish deadline is not after the join deadline"),
        ({"finish": 2**40}, "federation: finish deadline too far"),
        ({"coordinator": "0x" + "00" * 20}, "federation: coordinator is the zero address"),
        ({"royalty": 100}, "federation: royalty without a parent model"),
        ({"parent": 999, "royalty": 100}, "federation: parent model does not exist"),
        ({"parent": "listed", "royalty": 5_001}, "federation: royalty above 50%"),
    ],
)
def test_create_task_refusals(
    fed: Any,
    token: Any,
    listed: int,
    alice: str,
    coordinator: str,
    change: dict[str, Any],
    reason: str,
) -> None:
    approve(token, fed.address, alice)
    start = now()
    parent = change.get("parent", 0)
    args = [
        change.get("spec", SPEC),
        change.get("reward", REWARD),
        change.get("stake", STAKE),
        change.get("min", 2),
        change.get("max", 4),
        start + change.get("join", JOIN_WINDOW),
        change["finish"]
        if change.get("finish", 0) >= 2**40
        else start + change.get("finish", FINISH_WINDOW),
        change.get("coordinator", coordinator),
        listed if parent == "listed" else parent,
        change.get("royalty", 0),
    ]
    with boa.env.prank(alice), reverts(reason):
        fed.create_task(*args)


# -- register_node_key and join ------------------------------------------------------


def test_register_node_key_succeeds(fed: Any, bob: str) -> None:
    with boa.env.prank(bob):
        fed.register_node_key(node_key(bob))
    event = only_event(fed, "NodeKeyRegistered")
    assert (event.node_key_hash, event.account) == (node_key(bob), bob)
    assert fed.node_key_owner(node_key(bob)) == bob


def test_register_node_key_already_registered(fed: Any, bob: str, carol: str) -> None:
    """A key hash copied from someone's pending registration is the copier's, and the
    victim's registration is refused: it makes a new key instead."""
    register(fed, bob)
    with boa.env.prank(carol), reverts("federation: node key already registered"):
        fed.register_node_key(node_key(bob))
    with boa.env.prank(bob), reverts("federation: node key already registered"):
        fed.register_node_key(node_key(bob))


def test_register_node_key_empty(fed: Any, bob: str) -> None:
    with boa.env.prank(bob), reverts("federation: node key hash is empty"):
        fed.register_node_key(bytes(32))


def test_join_succeeds(fed: Any, token: Any, task: int, participants: list[str]) -> None:
    bob, carol = participants[:2]
    before = token.balanceOf(bob)
    key = register(fed, bob)
    with boa.env.prank(bob):
        fed.join(task, key)
    event = only_event(fed, "Joined")
    assert (event.task_id, event.participant, event.seat, event.node_key_hash) == (
        task,
        bob,
        0,
        key,
    )
    join(fed, task, carol)
    assert only_event(fed, "Joined").seat == 1
    assert (fed.seat_of(task, bob), fed.seat_of(task, carol)) == (1, 2)
    assert fed.seat_of_key(task, node_key(carol)) == 2
    assert fed.seat_of_key(task, node_key(participants[2])) == 0
    assert fed.task(task).participants == 2
    assert token.balanceOf(bob) == before - STAKE
    assert token.balanceOf(fed.address) == REWARD + 2 * STAKE


def test_join_with_permit_succeeds(fed: Any, token: Any, task: int, signer: str) -> None:
    key = register(fed, signer)
    deadline = now() + 600
    v, r, s = sign_permit(token, fed.address, STAKE, deadline)
    with boa.env.prank(signer):
        fed.join_with_permit(task, key, STAKE, deadline, v, r, s)
    assert fed.seat_of(task, signer) == 1
    assert token.allowance(signer, fed.address) == 0


def test_join_after_the_deadline(fed: Any, task: int, participants: list[str]) -> None:
    key = register(fed, participants[0])
    boa.env.time_travel(seconds=JOIN_WINDOW + 1)
    with boa.env.prank(participants[0]), reverts("federation: join deadline passed"):
        fed.join(task, key)


def test_join_when_full(
    fed: Any, token: Any, alice: str, coordinator: str, participants: list[str]
) -> None:
    approve(token, fed.address, alice)
    task_id = create(fed, alice, coordinator, TaskTerms(min_participants=1, max_participants=2))
    join_all(fed, task_id, participants[:2])
    key = register(fed, participants[2])
    with boa.env.prank(participants[2]), reverts("federation: task is full"):
        fed.join(task_id, key)


def test_join_twice(fed: Any, task: int, participants: list[str]) -> None:
    join(fed, task, participants[0])
    with boa.env.prank(participants[0]):
        fed.register_node_key(b"\x02" * 32)
        with reverts("federation: account already holds a seat"):
            fed.join(task, b"\x02" * 32)


def test_join_with_another_accounts_key(fed: Any, task: int, participants: list[str]) -> None:
    """Nobody binds a key whose updates someone else's node would send."""
    bob, carol = participants[:2]
    key = register(fed, bob)
    with boa.env.prank(carol), reverts("federation: node key is not registered to the caller"):
        fed.join(task, key)


def test_join_with_an_unregistered_key(fed: Any, task: int, participants: list[str]) -> None:
    with boa.env.prank(participants[0]):
        with reverts("federation: node key is not registered to the caller"):
            fed.join(task, node_key(participants[0]))
        with reverts("federation: node key is not registered to the caller"):
            fed.join(task, bytes(32))


def test_join_a_task_that_does_not_exist(fed: Any, participants: list[str]) -> None:
    key = register(fed, participants[0])
    with boa.env.prank(participants[0]), reverts("federation: task does not exist"):
        fed.join(42, key)


def test_join_after_the_first_round(
    fed: Any, token: Any, joined: int, coordinator: str, signer: str
) -> None:
    commit(fed, joined, coordinator, 1, bitmap(0, 1))
    approve(token, fed.address, signer)
    key = register(fed, signer)
    with boa.env.prank(signer), reverts("federation: training has started"):
        fed.join(joined, key)


def test_join_a_cancelled_task(fed: Any, task: int, alice: str, participants: list[str]) -> None:
    key = register(fed, participants[0])
    with boa.env.prank(alice):
        fed.cancel(task)
    with boa.env.prank(participants[0]), reverts("federation: task has ended"):
        fed.join(task, key)


# -- cancel ---------------------------------------------------------------------------


def test_cancel_succeeds_and_everyone_is_refunded(
    fed: Any, token: Any, joined: int, alice: str, participants: list[str]
) -> None:
    balances = {a: token.balanceOf(a) for a in (alice, *participants)}
    with boa.env.prank(alice):
        fed.cancel(joined)
    assert only_event(fed, "Cancelled").task_id == joined
    assert _status(fed, joined) == CANCELLED
    assert fed.claimable(joined, alice) == REWARD
    assert _claim(fed, alice, joined) == REWARD
    for account in participants:
        assert fed.claimable(joined, account) == STAKE
        assert _claim(fed, account, joined) == STAKE
    for account, before in balances.items():
        expected = before + (REWARD if account == alice else STAKE)
        assert token.balanceOf(account) == expected
    assert token.balanceOf(fed.address) == 0


def test_cancel_by_someone_else(fed: Any, task: int, coordinator: str) -> None:
    with boa.env.prank(coordinator), reverts("federation: caller is not the requester"):
        fed.cancel(task)


def test_cancel_after_the_join_deadline(fed: Any, task: int, alice: str) -> None:
    boa.env.time_travel(seconds=JOIN_WINDOW + 1)
    with boa.env.prank(alice), reverts("federation: join deadline passed"):
        fed.cancel(task)


def test_cancel_after_the_first_round(fed: Any, joined: int, alice: str, coordinator: str) -> None:
    """Once a round used the participants' work, the requester cannot take the reward back."""
    commit(fed, joined, coordinator, 1, bitmap(0))
    with boa.env.prank(alice), reverts("federation: task is not open"):
        fed.cancel(joined)


# -- abort ----------------------------------------------------------------------------


def test_abort_an_undersubscribed_task(
    fed: Any, token: Any, task: int, alice: str, participants: list[str], stranger: str
) -> None:
    join(fed, task, participants[0])
    with reverts("federation: task can still finish"):
        fed.abort(task)  # the join deadline has not passed
    boa.env.time_travel(seconds=JOIN_WINDOW + 1)
    with boa.env.prank(stranger):
        fed.abort(task)
    assert only_event(fed, "Aborted").task_id == task
    assert _status(fed, task) == ABORTED
    assert _claim(fed, alice, task) == REWARD
    assert _claim(fed, participants[0], task) == STAKE
    assert token.balanceOf(fed.address) == 0


def test_abort_a_subscribed_task_before_the_finish_deadline(fed: Any, joined: int) -> None:
    boa.env.time_travel(seconds=JOIN_WINDOW + 1)
    with reverts("federation: task can still finish"):
        fed.abort(joined)


def test_abort_an_overdue_task_without_rounds(
    fed: Any, token: Any, joined: int, alice: str, participants: list[str]
) -> None:
    boa.env.time_travel(seconds=FINISH_WINDOW + 1)
    fed.abort(joined)
    assert _claim(fed, alice, joined) == REWARD
    for account in participants:
        assert _claim(fed, account, joined) == STAKE
    assert token.balanceOf(fed.address) == 0


def test_abort_an_overdue_task_after_rounds_pays_the_contributors(
    fed: Any, token: Any, joined: int, alice: str, coordinator: str, participants: list[str]
) -> None:
    """A coordinator that keeps the model and never finalizes: the reward still goes to
    the seats whose updates the rounds used, equally; the requester gets nothing back."""
    commit(fed, joined, coordinator, 1, bitmap(0, 2))
    boa.env.time_travel(seconds=FINISH_WINDOW + 1)
    fed.abort(joined)
    bob, carol, dave = participants
    assert fed.claimable(joined, alice) == 0
    with boa.env.prank(alice), reverts("federation: nothing to claim"):
        fed.claim(joined)
    assert _claim(fed, bob, joined) == STAKE + REWARD // 2
    assert _claim(fed, carol, joined) == STAKE  # never contributed: stake back, no reward
    assert _claim(fed, dave, joined) == STAKE + REWARD - REWARD // 2
    assert token.balanceOf(fed.address) == 0


def test_abort_splits_an_odd_reward_exactly(
    fed: Any, token: Any, alice: str, coordinator: str, participants: list[str]
) -> None:
    approve(token, fed.address, alice)
    task_id = create(fed, alice, coordinator, TaskTerms(reward=1_000_000_000_000_000_001, stake=7))
    join_all(fed, task_id, participants)
    commit(fed, task_id, coordinator, 1, bitmap(0, 1, 2))
    boa.env.time_travel(seconds=FINISH_WINDOW + 1)
    fed.abort(task_id)
    paid = [_claim(fed, a, task_id) for a in participants]
    assert sum(paid) == 1_000_000_000_000_000_001 + 3 * 7
    assert max(paid) - min(paid) <= 1
    assert token.balanceOf(fed.address) == 0


def test_abort_a_finalized_task(fed: Any, joined: int, coordinator: str) -> None:
    commit(fed, joined, coordinator, 1, bitmap(0))
    with boa.env.prank(coordinator):
        fed.finalize(joined, [10_000, 0, 0])
    boa.env.time_travel(seconds=FINISH_WINDOW + 1)
    with reverts("federation: task has ended"):
        fed.abort(joined)


# -- commit_round ---------------------------------------------------------------------


def test_commit_round_succeeds(fed: Any, joined: int, coordinator: str) -> None:
    with boa.env.prank(coordinator):
        fed.commit_round(joined, 1, MODEL_DIGEST, ROUND_DIGEST, bitmap(0, 1), 812_345)
    event = only_event(fed, "RoundCommitted")
    assert (event.task_id, event.round, event.contributors, event.metric) == (
        joined,
        1,
        bitmap(0, 1),
        812_345,
    )
    assert (event.model_digest, event.round_digest) == (MODEL_DIGEST, ROUND_DIGEST)
    commit(fed, joined, coordinator, 2, bitmap(2))
    task = fed.task(joined)
    assert (task.status, task.rounds, task.contributors) == (RUNNING, 2, bitmap(0, 1, 2))


def test_commit_round_by_someone_else(fed: Any, joined: int, alice: str) -> None:
    with boa.env.prank(alice), reverts("federation: caller is not the coordinator"):
        fed.commit_round(joined, 1, MODEL_DIGEST, ROUND_DIGEST, 1, 0)


@pytest.mark.parametrize("sequence", [[2], [1, 1], [1, 3], [0]])
def test_commit_round_out_of_order(
    fed: Any, joined: int, coordinator: str, sequence: list[int]
) -> None:
    *accepted, refused = sequence
    for round_ in accepted:
        commit(fed, joined, coordinator, round_, 1)
    with boa.env.prank(coordinator), reverts("federation: rounds must be committed in order"):
        fed.commit_round(joined, refused, MODEL_DIGEST, ROUND_DIGEST, 1, 0)


def test_commit_round_after_the_finish_deadline(fed: Any, joined: int, coordinator: str) -> None:
    boa.env.time_travel(seconds=FINISH_WINDOW + 1)
    with boa.env.prank(coordinator), reverts("federation: finish deadline passed"):
        fed.commit_round(joined, 1, MODEL_DIGEST, ROUND_DIGEST, 1, 0)


def test_commit_round_with_too_few_participants(
    fed: Any, task: int, coordinator: str, participants: list[str]
) -> None:
    join_all(fed, task, participants[:1])
    with boa.env.prank(coordinator), reverts("federation: too few participants"):
        fed.commit_round(task, 1, MODEL_DIGEST, ROUND_DIGEST, 1, 0)


def test_commit_round_names_a_seat_not_taken(fed: Any, joined: int, coordinator: str) -> None:
    with boa.env.prank(coordinator), reverts("federation: contributor seat not taken"):
        fed.commit_round(joined, 1, MODEL_DIGEST, ROUND_DIGEST, bitmap(0, 3), 0)


def test_commit_round_after_finalize(fed: Any, joined: int, coordinator: str) -> None:
    commit(fed, joined, coordinator, 1, bitmap(0))
    with boa.env.prank(coordinator):
        fed.finalize(joined, [10_000, 0, 0])
        with reverts("federation: task is not running"):
            fed.commit_round(joined, 2, MODEL_DIGEST, ROUND_DIGEST, 1, 0)


# -- finalize and claim ---------------------------------------------------------------


def test_finalize_succeeds_and_pays_by_share(
    fed: Any, token: Any, joined: int, alice: str, coordinator: str, participants: list[str]
) -> None:
    """Seat 2 never contributed: it gets nothing and its stake goes to the others by share."""
    commit(fed, joined, coordinator, 1, bitmap(0))
    commit(fed, joined, coordinator, 2, bitmap(1))
    with boa.env.prank(coordinator):
        splitter = fed.finalize(joined, [7_000, 3_000, 0])
    event = only_event(fed, "Finalized")
    assert (event.task_id, event.splitter, list(event.shares)) == (
        joined,
        splitter,
        [7_000, 3_000, 0],
    )
    task = fed.task(joined)
    assert (task.status, task.splitter) == (FINALIZED, splitter)
    assert splitter_at(splitter).task() == (fed.address, joined)
    bob, carol, dave = participants
    assert [fed.share_of(joined, a) for a in participants] == [7_000, 3_000, 0]
    pool = REWARD + STAKE
    expected = {bob: STAKE + pool * 7 // 10, carol: STAKE + pool * 3 // 10}
    for account, amount in expected.items():
        assert fed.claimable(joined, account) == amount
        assert _claim(fed, account, joined) == amount
        claimed = only_event(fed, "Claimed")
        assert (claimed.task_id, claimed.account, claimed.amount) == (joined, account, amount)
    assert fed.claimable(joined, dave) == 0
    with boa.env.prank(dave), reverts("federation: nothing to claim"):
        fed.claim(joined)
    with boa.env.prank(alice), reverts("federation: nothing to claim"):
        fed.claim(joined)
    assert token.balanceOf(fed.address) == 0


def test_finalize_pays_uneven_shares_without_dust(
    fed: Any, token: Any, alice: str, coordinator: str, participants: list[str], signer: str
) -> None:
    approve(token, fed.address, alice, signer)
    terms = TaskTerms(reward=10**18 + 7, stake=3, min_participants=4)
    task_id = create(fed, alice, coordinator, terms)
    seated = [*participants, signer]
    join_all(fed, task_id, seated)
    commit(fed, task_id, coordinator, 1, bitmap(0, 1, 3))
    with boa.env.prank(coordinator):
        fed.finalize(task_id, [3_333, 3_333, 0, 3_334])
    paid = sum(_claim(fed, a, task_id) for a in (seated[0], seated[1], seated[3]))
    assert paid == 10**18 + 7 + 4 * 3
    assert token.balanceOf(fed.address) == 0


def test_finalize_a_free_rider_given_no_share_forfeits_its_stake(
    fed: Any, token: Any, joined: int, coordinator: str, participants: list[str]
) -> None:
    """Scored mode: carol sent updates every round (she is in the bitmaps) but scored
    nothing; her share of 0 forfeits her stake, like dave's who never sent one."""
    commit(fed, joined, coordinator, 1, bitmap(0, 1))
    commit(fed, joined, coordinator, 2, bitmap(0, 1))
    with boa.env.prank(coordinator):
        fed.finalize(joined, [10_000, 0, 0])
    bob, carol, dave = participants
    assert fed.task(joined).contributors == bitmap(0, 1)
    for account in (carol, dave):
        assert (fed.share_of(joined, account), fed.claimable(joined, account)) == (0, 0)
    assert _claim(fed, bob, joined) == STAKE + REWARD + 2 * STAKE
    assert token.balanceOf(fed.address) == 0


def test_finalize_a_drop_out_of_a_private_task_forfeits_its_stake(
    fed: Any, token: Any, joined: int, coordinator: str, participants: list[str]
) -> None:
    """Private mode: equal shares among the seats that completed every round; dave
    dropped out of round 2, so his share is 0 and his stake goes to bob and carol."""
    commit(fed, joined, coordinator, 1, bitmap(0, 1, 2))
    commit(fed, joined, coordinator, 2, bitmap(0, 1))
    with boa.env.prank(coordinator):
        fed.finalize(joined, [5_000, 5_000, 0])
    bob, carol, dave = participants
    balance = token.balanceOf(dave)
    with boa.env.prank(dave), reverts("federation: nothing to claim"):
        fed.claim(joined)
    pool = REWARD + STAKE
    assert _claim(fed, bob, joined) == STAKE + pool // 2
    assert _claim(fed, carol, joined) == STAKE + pool - pool // 2
    assert token.balanceOf(dave) == balance
    assert token.balanceOf(fed.address) == 0


def test_finalize_forfeited_stakes_split_without_dust(
    fed: Any, token: Any, alice: str, coordinator: str, participants: list[str], signer: str
) -> None:
    """Odd amounts, two forfeits (one free-rider, one never seen) and three uneven shares:
    the claims add up to everything paid in."""
    approve(token, fed.address, alice, signer)
    terms = TaskTerms(reward=10**18 + 7, stake=3 * UNIT + 1, min_participants=4)
    task_id = create(fed, alice, coordinator, terms)
    seated = [*participants, signer]
    join_all(fed, task_id, seated)
    commit(fed, task_id, coordinator, 1, bitmap(0, 1, 3))
    with boa.env.prank(coordinator):
        fed.finalize(task_id, [3_333, 0, 0, 6_667])
    pool = 10**18 + 7 + 2 * (3 * UNIT + 1)
    paid = [_claim(fed, seated[0], task_id), _claim(fed, seated[3], task_id)]
    assert paid == [
        3 * UNIT + 1 + pool * 3_333 // 10_000,
        3 * UNIT + 1 + pool - pool * 3_333 // 10_000,
    ]
    assert sum(paid) == 10**18 + 7 + 4 * (3 * UNIT + 1)
    assert token.balanceOf(fed.address) == 0


def test_a_seat_with_no_share_cannot_get_its_stake_back(
    fed: Any, token: Any, joined: int, coordinator: str, participants: list[str]
) -> None:
    """Threat model: a seat given 0 tries every way out — claim, abort after the finish
    deadline, the revenue splitter — and gets nothing."""
    commit(fed, joined, coordinator, 1, bitmap(0, 1, 2))
    with boa.env.prank(coordinator):
        splitter = splitter_at(fed.finalize(joined, [6_000, 4_000, 0]))
    dave = participants[2]
    before = token.balanceOf(dave)
    assert fed.claimable(joined, dave) == 0
    with boa.env.prank(dave), reverts("federation: nothing to claim"):
        fed.claim(joined)
    boa.env.time_travel(seconds=FINISH_WINDOW + 1)
    with boa.env.prank(dave), reverts("federation: task has ended"):
        fed.abort(joined)
    assert splitter.releasable(dave) == 0
    assert token.balanceOf(dave) == before


def test_a_coordinator_zeroing_an_honest_seat_gains_nothing_itself(
    fed: Any, token: Any, joined: int, alice: str, coordinator: str, participants: list[str]
) -> None:
    """Threat model: the contract cannot judge scores, so a share of 0 for a seat in
    every round's bitmap is accepted. What it enforces: the seat's work stays on record
    (each round's bitmap), and its stake goes only to the seats with a share, never to
    the coordinator or the requester."""
    commit(fed, joined, coordinator, 1, bitmap(0, 1, 2))
    assert only_event(fed, "RoundCommitted").contributors == bitmap(0, 1, 2)
    commit(fed, joined, coordinator, 2, bitmap(0, 1, 2))
    assert only_event(fed, "RoundCommitted").contributors == bitmap(0, 1, 2)
    with boa.env.prank(coordinator):
        fed.finalize(joined, [5_000, 5_000, 0])
    for account in (coordinator, alice):
        assert fed.claimable(joined, account) == 0
        with boa.env.prank(account), reverts("federation: nothing to claim"):
            fed.claim(joined)
    bob, carol, _ = participants
    paid = _claim(fed, bob, joined) + _claim(fed, carol, joined)
    assert paid == REWARD + 3 * STAKE
    assert token.balanceOf(fed.address) == 0


def test_claim_twice_after_finalize(
    fed: Any, token: Any, joined: int, coordinator: str, participants: list[str]
) -> None:
    """Threat model: a seat with a share claims again; the second claim pays nothing."""
    commit(fed, joined, coordinator, 1, bitmap(0, 1))
    with boa.env.prank(coordinator):
        fed.finalize(joined, [7_000, 3_000, 0])
    bob = participants[0]
    first = _claim(fed, bob, joined)
    assert first == STAKE + (REWARD + STAKE) * 7 // 10
    held = token.balanceOf(fed.address)
    assert fed.claimable(joined, bob) == 0
    with boa.env.prank(bob), reverts("federation: nothing to claim"):
        fed.claim(joined)
    assert token.balanceOf(fed.address) == held
    assert fed.share_of(joined, bob) == 7_000  # the splitter still pays the share


def test_finalize_with_seventeen_seats_reads_across_words(
    fed: Any, token: Any, chain: Mercato, alice: str, coordinator: str
) -> None:
    """Running sums are packed 16 per word: seat 16 reads seat 15's sum from the word before."""
    seated = [str(boa.env.generate_address()) for _ in range(17)]
    for account in seated:
        with boa.env.prank(chain.deployer):
            token.mint(account, STAKE)
    approve(token, fed.address, alice, *seated)
    task_id = create(fed, alice, coordinator, TaskTerms(min_participants=17, max_participants=17))
    join_all(fed, task_id, seated)
    commit(fed, task_id, coordinator, 1, bitmap(*range(17)))
    shares = [500] * 16 + [2_000]
    with boa.env.prank(coordinator):
        fed.finalize(task_id, shares)
    assert [fed.share_of(task_id, a) for a in seated] == shares
    assert sum(_claim(fed, a, task_id) for a in seated) == REWARD + 17 * STAKE
    assert token.balanceOf(fed.address) == 0


@pytest.mark.parametrize(
    ("shares", "reason"),
    [
        ([5_000, 4_999, 0], "federation: shares must sum to 10,000"),
        ([5_000, 5_001, 0], "federation: shares must sum to 10,000"),
        ([65_535, 0, 0], "federation: shares must sum to 10,000"),
        ([5_000, 0, 5_000], "federation: share for a seat that never contributed"),
        ([10_000, 0], "federation: one share per seat"),
        ([10_000, 0, 0, 0], "federation: one share per seat"),
    ],
)
def test_finalize_refusals(
    fed: Any, joined: int, coordinator: str, shares: list[int], reason: str
) -> None:
    commit(fed, joined, coordinator, 1, bitmap(0, 1))
    with boa.env.prank(coordinator), reverts(reason):
        fed.finalize(joined, shares)


def test_finalize_by_someone_else(fed: Any, joined: int, alice: str, coordinator: str) -> None:
    commit(fed, joined, coordinator, 1, bitmap(0))
    with boa.env.prank(alice), reverts("federation: caller is not the coordinator"):
        fed.finalize(joined, [10_000, 0, 0])


def test_finalize_before_any_round(fed: Any, joined: int, coordinator: str) -> None:
    with boa.env.prank(coordinator), reverts("federation: task is not running"):
        fed.finalize(joined, [10_000, 0, 0])


def test_finalize_after_the_finish_deadline(fed: Any, joined: int, coordinator: str) -> None:
    commit(fed, joined, coordinator, 1, bitmap(0))
    boa.env.time_travel(seconds=FINISH_WINDOW + 1)
    with boa.env.prank(coordinator), reverts("federation: finish deadline passed"):
        fed.finalize(joined, [10_000, 0, 0])


def test_claim_before_the_task_ends(fed: Any, joined: int, participants: list[str]) -> None:
    assert fed.claimable(joined, participants[0]) == 0
    with boa.env.prank(participants[0]), reverts("federation: task has not ended"):
        fed.claim(joined)


def test_claim_twice(fed: Any, joined: int, alice: str, participants: list[str]) -> None:
    with boa.env.prank(alice):
        fed.cancel(joined)
    assert _claim(fed, participants[0], joined) == STAKE
    assert fed.claimable(joined, participants[0]) == 0
    with boa.env.prank(participants[0]), reverts("federation: nothing to claim"):
        fed.claim(joined)
    assert _claim(fed, alice, joined) == REWARD
    with boa.env.prank(alice), reverts("federation: nothing to claim"):
        fed.claim(joined)


def test_claim_by_a_requester_who_also_joined(fed: Any, token: Any, task: int, alice: str) -> None:
    join(fed, task, alice)
    with boa.env.prank(alice):
        fed.cancel(task)
        assert fed.claimable(task, alice) == REWARD + STAKE
        assert fed.claim(task) == REWARD + STAKE
        with reverts("federation: nothing to claim"):
            fed.claim(task)
    assert token.balanceOf(fed.address) == 0


def test_tasks_do_not_share_money(
    fed: Any, token: Any, joined: int, alice: str, coordinator: str, participants: list[str]
) -> None:
    """A second task's escrow is never paid out by the first task's claims."""
    second = create(fed, alice, coordinator, TaskTerms(reward=3 * UNIT))
    with boa.env.prank(alice):
        fed.cancel(joined)
    for account in participants:
        _claim(fed, account, joined)
    _claim(fed, alice, joined)
    assert token.balanceOf(fed.address) == 3 * UNIT
    with boa.env.prank(participants[0]), reverts("federation: task has not ended"):
        fed.claim(second)


# -- a token that calls back cannot claim twice -----------------------------------------

# Stands in for a token with transfer hooks that is also the requester: on the claim's
# transfer it calls `claim` again for the same task, before the first call has finished.
REENTRANT_TOKEN = """
# pragma version ~=0.4.3
target: public(address)
task_id: public(uint256)
reentered: public(bool)
reentry_succeeded: public(bool)

@external
def act(target: address, data: Bytes[1024]):
    raw_call(target, data)

@external
def arm(target: address, task_id: uint256):
    self.target = target
    self.task_id = task_id

@external
def transfer(to: address, amount: uint256) -> bool:
    if self.target != empty(address) and not self.reentered:
        self.reentered = True
        self.reentry_succeeded = raw_call(
            self.target,
            abi_encode(self.task_id, method_id=method_id("claim(uint256)")),
            revert_on_failure=False,
        )
    return True

@external
def transferFrom(owner: address, to: address, amount: uint256) -> bool:
    return True
"""


def test_claim_cannot_be_reentered(chain: Mercato, coordinator: str) -> None:
    token = boa.loads(REENTRANT_TOKEN)
    address = BoaBackend(chain.deployer).create(
        load_artifact("federation"),
        str(token.address),
        chain.deployment.model_registry,
        chain.deployment.revenue_splitter,
    )
    fed = BoaBackend.at(load_artifact("federation"), address)
    token.act(address, fed.create_task.prepare_calldata(*TaskTerms().args(coordinator)))
    token.act(address, fed.cancel.prepare_calldata(1))
    token.arm(address, 1)
    token.act(address, fed.claim.prepare_calldata(1))
    assert token.reentered()
    assert not token.reentry_succeeded()
    assert fed.claimable(1, str(token.address)) == 0
