# SPDX-License-Identifier: AGPL-3.0-only
"""The web pages of federated training tasks: the task list and one task.

Server-rendered like the rest of the marketplace, with no JavaScript: joining a task is
a step on the data owner's machine (`mercato fl join`), so the page shows the command
to run. A spec is a document its requester wrote: its name and description are shown
as escaped text, never as markup.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mercato.errors import IndexedModelNotFoundError, IndexedTaskNotFoundError, MercatoError
from mercato.federation.spec import round_model_cid, scoring_terms
from mercato.gateway.api.federation import task_query
from mercato.gateway.charts import line_chart_svg
from mercato.gateway.dependencies import MAX_ID, optional_session
from mercato.gateway.formatting import mct
from mercato.gateway.moderation import HIDDEN_NAME, denied_by
from mercato.gateway.state import GatewayState
from mercato.gateway.web import TEMPLATES, QuietErrorRoute, _chain_rpc_hint
from mercato.index.tasks import TaskDetail, TaskStatus, join_command, spec_cid, spec_terms


def metric_chart(detail: TaskDetail) -> Any:
    """The global model's metric after each committed round, as an SVG line chart."""
    metric = (detail.spec or {}).get("metric")
    name = metric if isinstance(metric, str) and metric else "metric"
    points = [(float(r.round), r.metric) for r in detail.rounds]
    return line_chart_svg(
        {name[:40]: points} if points else {},
        title=f"{name} of the global model per round",
        x_label="round",
        y_label=name[:40],
        width=520,
        y_bounds=(0.0, 1.0) if all(0 <= r.metric <= 1 for r in detail.rounds) else None,
    )


def create_task_pages(state: GatewayState) -> APIRouter:
    """The task pages (left out of the OpenAPI document)."""
    router = APIRouter(include_in_schema=False, route_class=QuietErrorRoute)
    index = state.index

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {
                "session": optional_session(request, state),
                "chain_id": state.chain_id,
                "rpc_hint": _chain_rpc_hint(state),
                **context,
            },
            status_code=status_code,
        )

    @router.get("/tasks", response_class=HTMLResponse)
    def task_list(request: Request) -> HTMLResponse:
        params = request.query_params
        error = None
        results = None
        try:
            status = params.get("status") or None
            before = params.get("before")
            query = task_query(
                q=(params.get("q") or "")[:200] or None,
                status=TaskStatus(status) if status else None,
                before=int(before) if before and before.isdigit() and len(before) < 19 else None,
            )
            results = index.tasks(query)
        except MercatoError as exc:
            error = str(exc)
        except ValueError:
            error = "A filter value is not valid."
        return page(
            request,
            "tasks.html",
            results=results,
            params=params,
            statuses=list(TaskStatus),
            error=error,
            now=time.time(),
        )

    @router.get("/tasks/{task_id}", response_class=HTMLResponse)
    def task_page(request: Request, task_id: int) -> HTMLResponse:
        if not 0 <= task_id <= MAX_ID:
            return page(request, "missing.html", status_code=404, error=f"No task {task_id}.")
        try:
            detail = index.task(task_id)
        except IndexedTaskNotFoundError as exc:
            return page(request, "missing.html", status_code=404, error=str(exc))
        t = detail.summary
        denied = denied_by(state.moderation)

        def name_of(model_id: int) -> str | None:
            if model_id in denied:
                return HIDDEN_NAME
            try:
                return index.model(model_id).summary.name
            except IndexedModelNotFoundError:
                return None

        result_name = None if detail.result_model_id is None else name_of(detail.result_model_id)
        parent_name = name_of(t.parent_model_id) if t.parent_model_id else None
        times = index.block_times(
            [t.block_number]
            + [p.block_number for p in detail.participants]
            + [r.block_number for r in detail.rounds]
            + [c.block_number for c in detail.claims]
        )
        now = time.time()
        joinable = (
            t.status == TaskStatus.OPEN
            and now < t.join_deadline
            and t.participants < t.max_participants
        )
        return page(
            request,
            "task.html",
            d=detail,
            t=t,
            chart=metric_chart(detail),
            spec_cid=spec_cid(t.spec_digest),
            round_cids={
                r.round: str(round_model_cid(state.market.store, bytes.fromhex(r.model_digest)))
                for r in detail.rounds
            },
            spec_fields=spec_terms(detail.spec, mct) + scoring_terms(detail.spec),
            result_name=result_name,
            parent_name=parent_name,
            times=times,
            joinable=joinable,
            join_command=join_command(t.task_id),
            seats_left=max(t.max_participants - t.participants, 0),
            now=now,
        )

    return router
