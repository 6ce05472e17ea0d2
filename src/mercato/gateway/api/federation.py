# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/tasks`: federated training tasks, answered from the index.

A requester escrows a reward for a model trained on data it does not have; data owners
stake and join, train on their own machines, and are paid by share. These routes list
the tasks and show one with its participants, rounds (metric per round) and result.
Token amounts are decimal strings of base units, like everywhere in this API.
"""

from __future__ import annotations

from typing import Annotated, Any

from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from mercato.errors import InvalidSearchQueryError
from mercato.federation.spec import scoring_in_effect
from mercato.gateway.api.schemas import ErrorOut
from mercato.gateway.dependencies import MAX_ID, State
from mercato.index.tasks import (
    MAX_TASK_PAGE,
    MAX_TASK_QUERY,
    ParticipantInfo,
    RoundInfo,
    TaskDetail,
    TaskQuery,
    TaskStatus,
    TaskSummary,
    join_command,
    spec_cid,
)

router = APIRouter(prefix="/v1/tasks", tags=["federation"], responses={422: {"model": ErrorOut}})

TaskId = Annotated[int, Path(ge=0, le=MAX_ID, description="A federated training task's id.")]


def _address(value: str) -> str:
    if not is_address(value):
        raise InvalidSearchQueryError(
            f"{value[:60]!r} is not an Ethereum address (0x + 40 hex digits)."
        )
    return to_checksum_address(value)


def task_query(
    q: Annotated[str | None, Query(max_length=MAX_TASK_QUERY)] = None,
    status: TaskStatus | None = None,
    requester: str | None = None,
    participant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TASK_PAGE)] = 20,
    before: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> TaskQuery:
    """The index query the list parameters describe (shared with the web pages).

    Raises:
        InvalidSearchQueryError: `requester` or `participant` is not an address.
    """
    return TaskQuery(
        text=q or None,
        status=status,
        requester=_address(requester) if requester else None,
        participant=_address(participant) if participant else None,
        limit=limit,
        before=before,
    )


class TaskOut(BaseModel):
    task_id: int
    name: str | None
    status: TaskStatus
    requester: str
    coordinator: str
    spec_cid: str
    reward: str
    stake: str
    min_participants: int
    max_participants: int
    participants: int
    rounds: int
    join_deadline: int
    finish_deadline: int
    parent_model_id: int | None
    block_number: int

    @classmethod
    def of(cls, t: TaskSummary) -> TaskOut:
        fields = {k: v for k, v in t.__dict__.items() if k != "spec_digest"}
        return cls(
            **fields
            | {
                "spec_cid": spec_cid(t.spec_digest),
                "reward": str(t.reward),
                "stake": str(t.stake),
                "parent_model_id": t.parent_model_id or None,
            }
        )


class TaskPageOut(BaseModel):
    items: list[TaskOut]
    next_before: int | None


class ParticipantOut(BaseModel):
    seat: int
    account: str
    node_key_hash: str
    block_number: int
    contributed_rounds: int
    share_bps: int | None
    claimed: str

    @classmethod
    def of(cls, p: ParticipantInfo) -> ParticipantOut:
        return cls(**p.__dict__ | {"claimed": str(p.claimed)})


class RoundOut(BaseModel):
    round: int
    model_digest: str
    round_digest: str
    contributors: list[int]
    metric: float
    block_number: int

    @classmethod
    def of(cls, r: RoundInfo) -> RoundOut:
        return cls(**r.__dict__)


class PrivacyOut(BaseModel):
    """A task's (epsilon, delta) budget (`mercato.index.tasks.PrivacyBudget`)."""

    epsilon: float
    delta: float
    rounds: int
    planned_epsilon: float
    planned_rounds: int


class TaskDetailOut(TaskOut):
    description: str
    spec: dict[str, Any] | None
    spec_arrived: bool
    metric_name: str | None
    participant_list: list[ParticipantOut]
    round_list: list[RoundOut]
    splitter: str | None
    result_model_id: int | None
    join_command: str | None
    privacy: PrivacyOut | None = Field(
        None,
        description="Epsilon spent after the committed rounds and delta, from Flower's RDP "
        "accountant on the spec's noise (null: the task adds no noise).",
    )
    scoring: dict[str, Any] | None = Field(
        None,
        description="The scoring settings in effect, defaults filled in (null: the task "
        "is not scored, is private, or its spec is not here or unreadable).",
    )

    @classmethod
    def of_detail(cls, d: TaskDetail) -> TaskDetailOut:
        metric = (d.spec or {}).get("metric")
        return cls(
            **TaskOut.of(d.summary).model_dump(),
            description=d.description,
            spec=d.spec,
            spec_arrived=d.spec_arrived,
            metric_name=metric if isinstance(metric, str) else None,
            participant_list=[ParticipantOut.of(p) for p in d.participants],
            round_list=[RoundOut.of(r) for r in d.rounds],
            splitter=d.splitter,
            result_model_id=d.result_model_id,
            join_command=join_command(d.summary.task_id)
            if d.summary.status == TaskStatus.OPEN
            else None,
            privacy=PrivacyOut(**d.privacy.__dict__) if d.privacy is not None else None,
            scoring=scoring_in_effect(d.spec),
        )


@router.get("", response_model=TaskPageOut)
def list_tasks(state: State, query: Annotated[TaskQuery, Depends(task_query)]) -> TaskPageOut:
    """Lists tasks, newest first: words of the spec's name or description (`q`), status,
    requester or participant; `before` is the previous page's `next_before`."""
    page = state.index.tasks(query)
    return TaskPageOut(items=[TaskOut.of(t) for t in page.items], next_before=page.next_before)


@router.get("/{task_id}", response_model=TaskDetailOut, responses={404: {"model": ErrorOut}})
def get_task(task_id: TaskId, state: State) -> TaskDetailOut:
    """One task: terms, spec, participants (seat, stake, contributed rounds, claimed),
    rounds (global-model digest, contributors, metric), and the result model."""
    return TaskDetailOut.of_detail(state.index.task(task_id))
