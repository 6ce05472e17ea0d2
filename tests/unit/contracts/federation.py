# SPDX-License-Identifier: AGPL-3.0-only
"""What the federation contract tests share: handles, a default task, seats and rounds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import boa

from mercato.chain.artifacts import load_artifact
from mercato.chain.boa_backend import BoaBackend
from tests.unit.contracts.chain import Mercato

UNIT = 10**18
REWARD = 100 * UNIT
STAKE = 5 * UNIT
SPEC = b"\x5e" * 32
JOIN_WINDOW = 1_000
FINISH_WINDOW = 10_000
MODEL_DIGEST = b"\x6d" * 32
ROUND_DIGEST = b"\x72" * 32
OPEN, RUNNING, FINALIZED, CANCELLED, ABORTED = 1, 2, 3, 4, 5


def federation(chain: Mercato) -> Any:
    assert chain.deployment.federation is not None
    return BoaBackend.at(load_artifact("federation"), chain.deployment.federation)


def splitter_at(address: str) -> Any:
    return BoaBackend.at(load_artifact("revenue_splitter"), address)


def node_key(account: str) -> bytes:
    """A stand-in for the hash of `account`'s training node public key."""
    return hashlib.sha256(b"node key of " + account.encode()).digest()


def register(fed: Any, account: str) -> bytes:
    """Registers `account`'s node key unless it already is; returns the key hash."""
    key = node_key(account)
    if fed.node_key_owner(key) != account:
        with boa.env.prank(account):
            fed.register_node_key(key)
    return key


def now() -> int:
    return int(boa.env.timestamp)


@dataclass(frozen=True)
class TaskTerms:
    reward: int = REWARD
    stake: int = STAKE
    min_participants: int = 2
    max_participants: int = 4
    join_window: int = JOIN_WINDOW
    finish_window: int = FINISH_WINDOW
    parent_model_id: int = 0
    parent_royalty_bps: int = 0

    def args(self, coordinator: str, spec: bytes = SPEC) -> tuple[Any, ...]:
        start = now()
        return (
            spec,
            self.reward,
            self.stake,
            self.min_participants,
            self.max_participants,
            start + self.join_window,
            start + self.finish_window,
            coordinator,
            self.parent_model_id,
            self.parent_royalty_bps,
        )


def approve(token: Any, spender: str, *accounts: str) -> None:
    for account in accounts:
        with boa.env.prank(account):
            token.approve(spender, 2**256 - 1)


def create(fed: Any, requester: str, coordinator: str, terms: TaskTerms | None = None) -> int:
    with boa.env.prank(requester):
        return int(fed.create_task(*(terms or TaskTerms()).args(coordinator)))


def join(fed: Any, task_id: int, account: str) -> None:
    key = register(fed, account)
    with boa.env.prank(account):
        fed.join(task_id, key)


def join_all(fed: Any, task_id: int, accounts: list[str]) -> None:
    for account in accounts:
        join(fed, task_id, account)


def commit(fed: Any, task_id: int, coordinator: str, round_: int, contributors: int) -> None:
    with boa.env.prank(coordinator):
        fed.commit_round(task_id, round_, MODEL_DIGEST, ROUND_DIGEST, contributors, 900_000)


def bitmap(*seats: int) -> int:
    return sum(1 << s for s in set(seats))
