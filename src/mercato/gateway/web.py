# SPDX-License-Identifier: AGPL-3.0-only
"""The web marketplace: server-rendered pages (Jinja2), HTMX for partial updates.

Every page reads without JavaScript; the wallet bundle (`static/wallet.js`) only adds
what needs a signature: sign-in, buy, download and decrypt, publish, review.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from mercato.chain.contracts import LicenseState
from mercato.chain.deployment import LOCAL_CHAIN_IDS
from mercato.client.artifacts import cid_from_digest
from mercato.client.fetching import current_provider_url, fetch_policy, post_try
from mercato.client.license_terms import page_terms_digest
from mercato.errors import IndexedModelNotFoundError, MercatoError
from mercato.gateway.api.models import search_query
from mercato.gateway.card_view import card_view
from mercato.gateway.charts import Node, line_chart_svg, lineage_svg
from mercato.gateway.dependencies import optional_session
from mercato.gateway.errors import status_for
from mercato.gateway.formatting import (
    TOKEN,
    ago,
    base_model_links,
    card_body,
    card_text,
    duration,
    mct,
    shape,
    short,
    span,
    summary_line,
    when,
)
from mercato.gateway.moderation import HIDDEN_NAME, denied_by, hidden_count
from mercato.gateway.provider import try_wait
from mercato.gateway.seller_probe import Reachability, SellerProbe
from mercato.gateway.state import GatewayState
from mercato.gateway.try_form import one_line, try_examples, try_fields, try_request, try_views
from mercato.index import Sort
from mercato.index.reports import report_counts

log = logging.getLogger(__name__)
TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
# CommonMark with raw HTML off: a card's Markdown is rendered, never its markup or scripts.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def cid(digest_hex: str) -> str:
    """The CID (as `ipfs add` prints it) of an artifact or manifest from its on-chain digest."""
    return str(cid_from_digest(bytes.fromhex(digest_hex.removeprefix("0x"))))


def markdown(text: str) -> Markup:
    """A model card's Markdown as safe HTML."""
    return Markup(_MARKDOWN.render(text))


SCORE_SCALE = 1_000_000

TEMPLATES.env.filters.update(
    mct=mct,
    duration=duration,
    span=span,
    short=short,
    markdown=markdown,
    cid=cid,
    shape=shape,
    when=when,
    ago=ago,
)


def _error_page(request: Request, status_code: int, message: str | None) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request,
        "missing.html",
        {"session": None, "chain_id": "", "failed": True, "error": message},
        status_code=status_code,
    )


class QuietErrorRoute(APIRoute):
    """A page route whose unexpected failures log one line (a traceback only at DEBUG).

    A broken page answers 500 with a short page, and the log shows what failed, not a
    screenful of stack per request (a visitor can repeat a failing request at will).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def quiet(request: Request) -> Response:
            try:
                return await handler(request)
            except MercatoError as exc:  # meant for people: the page shows its sentence
                log.warning("page %s failed: %s", request.url.path, exc)
                return _error_page(request, status_for(exc), str(exc))
            except Exception as exc:  # the last stop before the server's own log
                log.error(
                    "page %s %s failed: %s: %s",
                    request.method,
                    request.url.path,
                    type(exc).__name__,
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                return _error_page(request, 500, None)

        return quiet


def _chain_rpc_hint(state: GatewayState) -> str | None:
    """The RPC address a browser wallet needs to add this chain, shown on local chains only.

    A remote endpoint's URL often embeds an API key (in its credentials, path or query),
    so only a bare local address is ever printed.
    """
    if state.chain_id not in LOCAL_CHAIN_IDS:
        return None
    parts = urlsplit(state.market.rpc_url)
    if parts.username or parts.password or parts.query or parts.path.strip("/"):
        return None
    return state.market.rpc_url


def create_web_router(state: GatewayState) -> APIRouter:
    """The HTML pages (left out of the OpenAPI document)."""
    router = APIRouter(include_in_schema=False, route_class=QuietErrorRoute)
    index = state.index
    probe = SellerProbe(fetch_policy(state.market))
    window: list[int] = []  # the marketplace's delivery window, read once (immutable)

    def delivery_window() -> int:
        if not window:
            window.append(state.market.contracts.marketplace.delivery_window())
        return window[0]

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        session = optional_session(request, state)
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {
                "session": session,
                "chain_id": state.chain_id,
                "rpc_hint": _chain_rpc_hint(state),
                **context,
            },
            status_code=status_code,
        )

    @router.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        params = request.query_params
        error = None
        try:
            query = search_query(
                q=params.get("q"),
                task=params.get("task") or None,
                license=params.get("license") or None,
                free=params.get("free") == "on",
                max_price=int(Decimal(params["max_price"]) * TOKEN)
                if params.get("max_price")
                else None,
                min_rating=float(params["min_rating"]) if params.get("min_rating") else None,
                sort=Sort(params.get("sort") or Sort.NEWEST),
                cursor=params.get("cursor"),
            )
            denied = denied_by(state.moderation)
            results = index.search(replace(query, exclude=denied))
            hidden = hidden_count(index, query, denied)
        except (MercatoError, ValueError, ArithmeticError) as exc:
            error = str(exc) if isinstance(exc, MercatoError) else "A filter value is not valid."
            results, hidden = None, 0
        manifests = index.manifests(m.model_id for m in results.items) if results else {}
        summaries = {
            mid: summary_line(card_text(doc), doc.get("name")) for mid, doc in manifests.items()
        }
        name = "_results.html" if request.headers.get("hx-request") else "index.html"
        qs = urlencode([(k, v) for k, v in params.multi_items() if k != "cursor"])
        return page(
            request,
            name,
            results=results,
            hidden=hidden,
            summaries=summaries,
            facets=index.facets(),
            params=params,
            qs=qs,
            error=error,
            sorts=list(Sort),
        )

    def buyer_view(model_id: int, account: str | None) -> dict[str, Any]:
        """What the buy box shows the signed-in wallet: its license or pending order."""
        if not account:
            return {"licensed": False, "refund_at": None}
        try:
            order = state.market.orders.status(model_id, account)
        except MercatoError as exc:
            log.warning("license of %s for model %s unknown: %s", account, model_id, exc)
            return {"licensed": False, "refund_at": None}
        pending = order.state == LicenseState.PENDING
        return {"licensed": order.licensed, "refund_at": order.time if pending else None}

    @router.get("/models/{model_id}", response_class=HTMLResponse)
    def model_page(request: Request, model_id: int) -> HTMLResponse:
        try:
            detail = index.model(model_id)
        except IndexedModelNotFoundError:
            return page(request, "missing.html", status_code=404, model_id=model_id)
        lineage = index.lineage(model_id)
        parent_names: dict[str, int] = {}

        denied = denied_by(state.moderation)

        def node(mid: int, note: str = "") -> Node:
            try:
                label = index.model(mid).summary.name or "unnamed"
            except IndexedModelNotFoundError:
                label = "not indexed"
            return Node(mid, HIDDEN_NAME if mid in denied else label, note)

        parents = [node(p, f"{bps / 100:g}% royalty") for p, bps in lineage.parents]
        parent_names = {n.label: n.model_id for n in parents}
        graph = lineage_svg(
            Node(model_id, detail.summary.name or "unnamed"),
            parents,
            [node(c) for c in lineage.children],
        )
        evaluations = index.evaluations(model_id)
        series: dict[str, list[tuple[float, float]]] = {}
        for e in evaluations:
            # One line per metric and evaluator: two evaluators' scores are not one series.
            key = f"{e.metric} · {short(e.author)}"
            series.setdefault(key, []).append((e.version, e.score / SCORE_SCALE))
        chart = line_chart_svg(
            series,
            title="Evaluations by version",
            x_label="version",
            y_label="score",
            width=440,  # drawn in half the page's width: fewer units, larger type
            y_bounds=(0.0, 1.0) if all(0 <= e.score <= SCORE_SCALE for e in evaluations) else None,
        )
        reviews = index.reviews(model_id)
        times = index.block_times(
            [v.block_number for v in detail.versions]
            + [r.block_number for r in reviews]
            + [e.block_number for e in evaluations]
        )
        manifest = detail.manifest or {}
        card = manifest.get("card", {})
        fee_bps = state.fees.fee_bps()
        royalty_bps = sum(b for _, b in lineage.parents)
        session = optional_session(request, state)
        account = session.address if session else None
        summary = detail.summary
        latest = next((v for v in reversed(detail.versions) if not v.deprecated), None)
        return page(
            request,
            "model.html",
            d=detail,
            m=summary,
            card=card,
            hub=card_view(manifest),
            body=card_body(card_text(manifest), summary.name),
            base_models=base_model_links(card.get("base_model") or [], parent_names),
            inputs=manifest.get("inputs", []),
            outputs=manifest.get("outputs", []),
            fields=try_fields(manifest),
            examples=try_examples(manifest),
            lineage=lineage,
            graph=graph,
            chart=chart,
            evaluations=evaluations,
            reviews=reviews,
            reports=report_counts(index, model_id),
            times=times,
            fee_bps=fee_bps,
            fee=summary.price * fee_bps // 10_000,
            royalty_bps=royalty_bps,
            royalties=summary.price * royalty_bps // 10_000,
            owns=bool(account) and account == summary.owner,
            latest=latest,
            # What the buy box's purchase commits to: the licence terms this page shows.
            terms_digest=page_terms_digest(manifest),
            delivery_window=delivery_window(),
            seller=probe.check(detail.provider_url),
            Reachability=Reachability,
            **buyer_view(model_id, account),
        )

    @router.post("/models/{model_id}/try", response_class=HTMLResponse)
    async def try_form(request: Request, model_id: int) -> Response:
        # HTMX swaps in the fragment; a plain form post (no JavaScript) gets a page.
        name = "_try_result.html" if request.headers.get("hx-request") else "try_page.html"
        form = parse_qs((await request.body()).decode(errors="replace"))
        session = optional_session(request, state)
        client = request.client.host if request.client else "unknown"
        wait = try_wait(
            state.try_by_address,
            state.try_by_wallet,
            client,
            session.address.lower() if session else "",
        )
        if wait:
            return page(
                request, name, model_id=model_id, error=f"Too many tries: wait {wait:.0f} s."
            )
        try:
            detail = await run_in_threadpool(index.model, model_id)
            manifest = detail.manifest or {}
            body = try_request(manifest, form)
            # The call goes to this node's own runtime or to the provider URL the model's
            # current owner recorded on-chain, checked like every URL others choose.
            provider = await run_in_threadpool(current_provider_url, state.market, model_id)
            if provider.rstrip("/") == state.market.settings.public_url.rstrip("/"):
                answer = await state.provider.try_json_async(model_id, body)
            else:
                answer = await run_in_threadpool(post_try, state.market, provider, model_id, body)
            # Labelled probabilities (a ZipMap's too); a malformed answer is a typed error.
            views = try_views(answer, manifest)
        except MercatoError as exc:
            return page(request, name, model_id=model_id, error=one_line(exc))
        return page(request, name, model_id=model_id, views=views, error=None)

    @router.get("/publish", response_class=HTMLResponse)
    def publish_page(request: Request) -> HTMLResponse:
        listed = replace(search_query(limit=100), exclude=denied_by(state.moderation))
        return page(request, "publish.html", models=index.search(listed).items)

    @router.get("/dashboard", response_class=HTMLResponse, response_model=None)
    def my_dashboard(request: Request) -> Response:
        session = optional_session(request, state)
        if session is not None:
            return RedirectResponse(f"/creators/{session.address}", status_code=303)
        return page(request, "dashboard_signin.html")

    @router.get("/creators/{address}", response_class=HTMLResponse)
    def dashboard(request: Request, address: str) -> HTMLResponse:
        try:
            creator = index.creator(address)
            earned = index.earnings(creator.account)
        except MercatoError as exc:
            return page(request, "missing.html", status_code=404, error=str(exc))
        # Like search, the page lists only what this node serves (the moderation's
        # denied models are counted, and named nowhere on it).
        denied = denied_by(state.moderation)
        listed = search_query(creator=creator.account, limit=100)
        models = index.search(replace(listed, exclude=denied)).items
        hidden = hidden_count(index, listed, denied)
        # The contract keeps one base unit credited after a withdrawal (a cheaper next
        # credit), so what can leave now is the credit less that unit.
        credit = int(state.market.contracts.marketplace.credits(creator.account))
        withdrawable = credit - 1 if credit > 1 else 0
        session = optional_session(request, state)
        mine = session is not None and session.address == creator.account
        # A signed-in creator also sees their own purchases here, with dates.
        orders = index.orders(creator.account) if mine else []
        times = index.block_times(
            [c.block_number for c in earned.credits]
            + [o.block_number for o in orders]
            + [o.closed_block for o in orders if o.closed_block is not None]
        )
        running = 0
        points: list[tuple[float, float]] = []
        per_model: dict[int, int] = {}
        for c in earned.credits:
            stamp = times.get(c.block_number)
            if stamp is None:
                continue
            if not points:  # the line starts at zero just before the first credit
                points.append((stamp - 1, 0.0))
            running += c.amount
            points.append((stamp, float(Decimal(running) / TOKEN)))
        if points and points[-1][0] < time.time():  # the total holds until now
            points.append((time.time(), points[-1][1]))
        for c in earned.credits:
            per_model[c.model_id] = per_model.get(c.model_id, 0) + c.amount
        chart = line_chart_svg(
            {"earned in total (MCT)": points},
            title="Earnings over time",
            x_label="date (UTC)",
            y_label="MCT",
            time_axis=True,
            step_lines=True,
            y_from_zero=True,
            width=480,
        )
        names = {m.model_id: m.name for m in models}
        missing = [mid for mid in {*per_model, *(o.model_id for o in orders)} if mid not in names]
        for mid in missing:
            try:
                names[mid] = HIDDEN_NAME if mid in denied else index.model(mid).summary.name
            except IndexedModelNotFoundError:
                names[mid] = None
        return page(
            request,
            "dashboard.html",
            creator=creator,
            hidden=hidden,
            earned=earned,
            withdrawable=withdrawable,
            per_model=sorted(per_model.items(), key=lambda kv: -kv[1]),
            models=models,
            chart=chart,
            times=times,
            names=names,
            mine=mine,
            orders=orders,
            # A pending order's refund opens DELIVERY_WINDOW after the purchase's block.
            refund_from={
                o.block_number: times[o.block_number] + delivery_window()
                for o in orders
                if o.state == "pending" and o.block_number in times
            },
        )

    return router
