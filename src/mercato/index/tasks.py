# SPDX-License-Identifier: AGPL-3.0-only
"""Reading federated training tasks from the index: search, and one task in full.

    page = index.tasks(TaskQuery(text="digits", status=TaskStatus.OPEN))
    task = index.task(page.items[0].task_id)   # with participants, rounds and claims

A task's status is a function of its facts (see `mercato.index.federation`); search
computes it in SQL so a status filter pages like any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from multiformats import CID, multihash
from sqlalchemy import Connection, and_, case, exists, func, literal, or_, select

from mercato.errors import IndexedTaskNotFoundError, InvalidSearchQueryError
from mercato.index import schema as s
from mercato.index.federation import spec_document

METRIC_SCALE = 1_000_000  # RoundCommitted.metric is the metric x 1e6
MAX_TASK_PAGE = 100
MAX_TASK_QUERY = 200  # characters of search text


class TaskStatus(StrEnum):
    """Where a task stands (the contract's status, read from its events)."""

    OPEN = "open"  # taking participants
    RUNNING = "running"  # a round was committed
    FINALIZED = "finalized"  # shares posted; payouts and the result model follow
    CANCELLED = "cancelled"  # by the requester before the first round; all refunded
    ABORTED = "aborted"  # too few joined, or not finalized in time; all refunded


@dataclass(frozen=True)
class TaskQuery:
    """What to list.

    Attributes:
        text: Words to find in the spec's name or description (case-insensitive).
        status: Only tasks in this state.
        requester: Only tasks this account created.
        participant: Only tasks this account joined.
        limit: Tasks per page (1-100).
        before: The `next_before` of the previous page (tasks are listed newest first).
    """

    text: str | None = None
    status: TaskStatus | None = None
    requester: str | None = None
    participant: str | None = None
    limit: int = 20
    before: int | None = None


@dataclass(frozen=True)
class TaskSummary:
    """One task as a list shows it."""

    task_id: int
    name: str | None  # None until the spec arrives (or when it names nothing)
    status: TaskStatus
    requester: str
    coordinator: str
    spec_digest: str
    reward: int
    stake: int
    min_participants: int
    max_participants: int
    participants: int
    rounds: int
    join_deadline: int
    finish_deadline: int
    parent_model_id: int  # 0: trained from the ONNX model in the spec
    block_number: int


@dataclass(frozen=True)
class TaskPage:
    items: list[TaskSummary]
    next_before: int | None  # pass as `before` for the next page; None at the end


@dataclass(frozen=True)
class ParticipantInfo:
    seat: int
    account: str
    node_key_hash: str
    block_number: int
    contributed_rounds: int  # rounds whose committed participant list names this seat
    claimed: int  # tokens this account took out of the task
    share_bps: int | None  # its share of the reward, once finalized


@dataclass(frozen=True)
class RoundInfo:
    round: int
    model_digest: str  # sha256 digest inside the round's global-model CID
    round_digest: str  # digest of the round's participant list
    contributors: list[int]  # seats whose update the round used
    metric: float
    block_number: int


@dataclass(frozen=True)
class ClaimInfo:
    account: str
    amount: int
    block_number: int


@dataclass(frozen=True)
class PrivacyBudget:
    """What a task that adds noise has spent of its (epsilon, delta) budget.

    Computed from the spec by Flower's RDP accountant (`mercato.federation.privacy`),
    the same figures each committed round record states, so a reader need not trust
    the coordinator's word for them.
    """

    epsilon: float  # after the rounds committed so far (0.0 before the first)
    delta: float
    rounds: int  # rounds counted in `epsilon`
    planned_epsilon: float  # after every round the spec plans
    planned_rounds: int


def privacy_budget(
    dp_delta: float | None, dp_epsilons: str | None, rounds: int
) -> PrivacyBudget | None:
    """The budget of a task with `rounds` committed, from its `fl_specs` columns."""
    if dp_delta is None or not dp_epsilons:
        return None
    epsilons = [float(e) for e in json.loads(dp_epsilons)]
    if not epsilons:
        return None
    counted = min(rounds, len(epsilons))
    spent = epsilons[counted - 1] if counted else 0.0
    return PrivacyBudget(spent, float(dp_delta), counted, epsilons[-1], len(epsilons))


@dataclass(frozen=True)
class TaskDetail:
    """Everything the index knows about one task."""

    summary: TaskSummary
    description: str
    spec: dict[str, Any] | None  # the spec document, once it arrived and was valid
    spec_arrived: bool
    participants: list[ParticipantInfo]
    rounds: list[RoundInfo]
    claims: list[ClaimInfo]
    ended_block: int | None
    splitter: str | None  # owner of the result model, once finalized
    result_model_id: int | None  # the model the splitter published, once indexed
    privacy: PrivacyBudget | None = None  # None: the spec adds no noise (or not arrived)


def seats(bitmap: int) -> list[int]:
    """The seat numbers set in a contributors bitmap."""
    return [i for i in range(bitmap.bit_length()) if bitmap >> i & 1]


def _status_column() -> Any:
    ended = (
        select(s.FlTaskEnd.outcome)
        .where(s.FlTaskEnd.task_id == s.FlTask.task_id)
        .order_by(s.FlTaskEnd.block_number.desc(), s.FlTaskEnd.log_index.desc())
        .limit(1)
        .scalar_subquery()
    )
    started = exists().where(s.FlRound.task_id == s.FlTask.task_id)
    return func.coalesce(
        ended,
        case((started, literal(TaskStatus.RUNNING.value)), else_=literal(TaskStatus.OPEN.value)),
    )


def _count(table: Any) -> Any:
    return (
        select(func.count())
        .select_from(table)
        .where(table.task_id == s.FlTask.task_id)
        .scalar_subquery()
    )


def _summary_select() -> Any:
    return select(
        s.FlTask,
        s.FlSpec.name.label("spec_name"),
        _status_column().label("status"),
        _count(s.FlParticipant).label("participant_count"),
        _count(s.FlRound).label("round_count"),
    ).outerjoin(s.FlSpec, and_(s.FlSpec.digest == s.FlTask.spec_digest, s.FlSpec.valid.is_(True)))


def _summary(row: Any) -> TaskSummary:
    return TaskSummary(
        task_id=row.task_id,
        name=row.spec_name,
        status=TaskStatus(row.status),
        requester=row.requester,
        coordinator=row.coordinator,
        spec_digest=row.spec_digest,
        reward=row.reward,
        stake=row.stake,
        min_participants=row.min_participants,
        max_participants=row.max_participants,
        participants=row.participant_count,
        rounds=row.round_count,
        join_deadline=row.join_deadline,
        finish_deadline=row.finish_deadline,
        parent_model_id=row.parent_model_id,
        block_number=row.block_number,
    )


def search_tasks(conn: Connection, query: TaskQuery) -> TaskPage:
    """One page of tasks matching `query`, newest first.

    Raises:
        InvalidSearchQueryError: The limit is out of range or the text too long.
    """
    if not 1 <= query.limit <= MAX_TASK_PAGE:
        raise InvalidSearchQueryError(f"limit must be between 1 and {MAX_TASK_PAGE}.")
    if query.before is not None and not 0 <= query.before < 2**63:
        raise InvalidSearchQueryError("before must be a task id (0 to 2**63 - 1).")
    stmt = _summary_select()
    if query.text and query.text.strip():
        text = query.text.strip()
        if len(text) > MAX_TASK_QUERY:
            raise InvalidSearchQueryError(
                f"The search text is longer than {MAX_TASK_QUERY} characters; shorten it."
            )
        for word in text.lower().split():
            stmt = stmt.where(
                or_(
                    func.lower(s.FlSpec.name).contains(word, autoescape=True),
                    func.lower(s.FlSpec.description).contains(word, autoescape=True),
                )
            )
    if query.status is not None:
        stmt = stmt.where(_status_column() == query.status.value)
    if query.requester is not None:
        stmt = stmt.where(s.FlTask.requester == query.requester)
    if query.participant is not None:
        stmt = stmt.where(
            exists().where(
                s.FlParticipant.task_id == s.FlTask.task_id,
                s.FlParticipant.participant == query.participant,
            )
        )
    if query.before is not None:
        stmt = stmt.where(s.FlTask.task_id < query.before)
    rows = conn.execute(stmt.order_by(s.FlTask.task_id.desc()).limit(query.limit + 1)).all()
    items = [_summary(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return TaskPage(items, items[-1].task_id if more and items else None)


def task_detail(conn: Connection, task_id: int) -> TaskDetail:
    """One task with its participants, rounds, claims and result.

    Raises:
        IndexedTaskNotFoundError: The index has no such task (yet).
    """
    row = conn.execute(_summary_select().where(s.FlTask.task_id == task_id)).first()
    if row is None:
        raise IndexedTaskNotFoundError(task_id)
    summary = _summary(row)
    spec_row = conn.execute(select(s.FlSpec).where(s.FlSpec.digest == row.spec_digest)).first()
    rounds = [
        RoundInfo(
            r.round,
            r.model_digest,
            r.round_digest,
            seats(r.contributors),
            r.metric / METRIC_SCALE,
            r.block_number,
        )
        for r in conn.execute(
            select(s.FlRound)
            .where(s.FlRound.task_id == task_id)
            .order_by(s.FlRound.block_number, s.FlRound.log_index)
        )
    ]
    claims = [
        ClaimInfo(c.account, c.amount, c.block_number)
        for c in conn.execute(
            select(s.FlClaim)
            .where(s.FlClaim.task_id == task_id)
            .order_by(s.FlClaim.block_number, s.FlClaim.log_index)
        )
    ]
    claimed: dict[str, int] = {}
    for c in claims:
        claimed[c.account] = claimed.get(c.account, 0) + c.amount
    end = conn.execute(
        select(s.FlTaskEnd)
        .where(s.FlTaskEnd.task_id == task_id)
        .order_by(s.FlTaskEnd.block_number.desc(), s.FlTaskEnd.log_index.desc())
        .limit(1)
    ).first()
    shares: list[int] = json.loads(end.shares) if end is not None and end.shares else []
    participants = [
        ParticipantInfo(
            p.seat,
            p.participant,
            p.node_key_hash,
            p.block_number,
            sum(p.seat in r.contributors for r in rounds),
            claimed.get(p.participant, 0),
            shares[p.seat] if p.seat < len(shares) else None,
        )
        for p in conn.execute(
            select(s.FlParticipant)
            .where(s.FlParticipant.task_id == task_id)
            .order_by(s.FlParticipant.seat)
        )
    ]
    splitter = end.splitter if end is not None else None
    result = None
    if splitter:
        # The splitter mints the result model, so it is that model's creator.
        result = conn.execute(
            select(s.Model.model_id)
            .where(s.Model.creator == splitter)
            .order_by(s.Model.model_id)
            .limit(1)
        ).scalar()
    valid = spec_row is not None and bool(spec_row.valid)
    return TaskDetail(
        summary=summary,
        description=spec_row.description if spec_row is not None and valid else "",
        spec=spec_document(spec_row.document) if spec_row is not None and valid else None,
        spec_arrived=spec_row is not None,
        participants=participants,
        rounds=rounds,
        claims=claims,
        ended_block=end.block_number if end is not None else None,
        splitter=splitter,
        result_model_id=int(result) if result is not None else None,
        privacy=privacy_budget(spec_row.dp_delta, spec_row.dp_epsilons, len(rounds))
        if spec_row is not None and valid
        else None,
    )


def spec_cid(digest_hex: str) -> str:
    """The CID of a task spec (a raw-codec CIDv1) from the digest an event carries (a
    round's model may be a UnixFS file: `federation.spec.round_model_cid`)."""
    return str(CID("base32", 1, "raw", multihash.get("sha2-256").wrap(bytes.fromhex(digest_hex))))


def join_command(task_id: int) -> str:
    """The command a data owner runs to join a task with their own data."""
    return f"mercato fl join {task_id} --data PATH/TO/your-data.csv"


def spec_terms(spec: dict[str, Any] | None, money: Callable[[int], str]) -> list[tuple[str, str]]:
    """The spec's training terms a data owner checks before joining, as short text.

    Args:
        spec: The spec document (someone else's: every field may be missing or odd).
        money: Writes a token amount (base units) for people.

    Returns:
        (label, text) pairs; fields of the wrong type are left out.
    """
    if not spec:
        return []
    fields: list[tuple[str, str]] = []

    def add(label: str, value: Any) -> None:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            fields.append((label, str(value)[:200]))

    learner = spec.get("learner")
    add("Learner", learner.get("kind") if isinstance(learner, dict) else learner)
    add("Rounds", spec.get("rounds"))
    add("Local epochs", spec.get("local_epochs"))
    add("Metric", spec.get("metric"))
    add("Privacy", spec.get("privacy"))
    schema = spec.get("input")
    if isinstance(schema, dict):
        names = schema.get("feature_names")
        if isinstance(names, list) and names:
            shown = ", ".join(str(n)[:40] for n in names[:12])
            more = f" and {len(names) - 12} more" if len(names) > 12 else ""
            fields.append(("Input columns", f"{shown}{more}"))
        add("Input features", schema.get("n_features"))
        add("Input dtype", schema.get("dtype"))
        classes = schema.get("classes")
        if isinstance(classes, list) and classes:
            shown = ", ".join(str(c)[:40] for c in classes[:20])
            fields.append(("Classes", shown + (" …" if len(classes) > 20 else "")))
    price = spec.get("price")
    if isinstance(price, int) and not isinstance(price, bool) and price >= 0:
        fields.append(("Result's price", money(price) if price else "free"))
    return fields
