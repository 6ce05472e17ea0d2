# SPDX-License-Identifier: AGPL-3.0-only
"""The web marketplace: server-rendered pages (Jinja2), HTMX for partial updates.

Every page reads without JavaScript; the wallet bundle (`static/wallet.js`) only adds
what needs a signature: sign-in, buy, download and decrypt, publish, review.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from mercato.client.artifacts import cid_from_digest
from mercato.client.fetching import current_provider_url, post_try
from mercato.errors import IndexedModelNotFoundError, MercatoError
from mercato.gateway.api.models import search_query
from mercato.gateway.charts import Node, line_chart_svg, lineage_svg
from mercato.gateway.dependencies import optional_session
from mercato.gateway.provider import try_wait
from mercato.gateway.state import GatewayState
from mercato.gateway.try_form import one_line, try_fields, try_request, try_views
from mercato.index import Sort

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
# CommonMark with raw HTML off: a card's Markdown is rendered, never its markup or scripts.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def cid(digest_hex: str) -> str:
    """The CID (as `ipfs add` prints it) of an artifact or manifest from its on-chain digest."""
    return str(cid_from_digest(bytes.fromhex(digest_hex.removeprefix("0x"))))


def markdown(text: str) -> Markup:
    """A model card's Markdown as safe HTML."""
    return Markup(_MARKDOWN.render(text))


TOKEN = Decimal(10**18)
SCORE_SCALE = 1_000_000


def mct(amount: int | str) -> str:
    """Base units as a short MCT amount: 5000000000000000000 -> '5 MCT'."""
    value = Decimal(int(amount)) / TOKEN
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{text} MCT"


def duration(seconds: int) -> str:
    """A license length in words."""
    if seconds == 0:
        return "perpetual"
    days = seconds / 86_400
    return f"{days:g} days" if days >= 1 else f"{seconds / 3600:g} hours"


def short(address: str | None) -> str:
    """0x1234…abcd."""
    return f"{address[:6]}…{address[-4:]}" if address else ""


TEMPLATES.env.filters.update(mct=mct, duration=duration, short=short, markdown=markdown, cid=cid)


def create_web_router(state: GatewayState) -> APIRouter:
    """The HTML pages (left out of the OpenAPI document)."""
    router = APIRouter(include_in_schema=False)
    index = state.index

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        session = optional_session(request, state)
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {"session": session, "chain_id": state.chain_id, **context},
        )

    @router.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        params = request.query_params
        error = None
        try:
            query = search_query(
                q=params.get("q"),
                task=params.get("task"),
                license=params.get("license"),
                free=params.get("free") == "on",
                max_price=int(Decimal(params["max_price"]) * TOKEN)
                if params.get("max_price")
                else None,
                min_rating=float(params["min_rating"]) if params.get("min_rating") else None,
                sort=Sort(params.get("sort") or Sort.NEWEST),
                cursor=params.get("cursor"),
            )
            results = index.search(query)
        except (MercatoError, ValueError, ArithmeticError) as exc:
            error = str(exc) if isinstance(exc, MercatoError) else "A filter value is not valid."
            results = None
        name = "_results.html" if request.headers.get("hx-request") else "index.html"
        qs = urlencode([(k, v) for k, v in params.multi_items() if k != "cursor"])
        return page(
            request, name, results=results, params=params, qs=qs, error=error, sorts=list(Sort)
        )

    @router.get("/models/{model_id}", response_class=HTMLResponse)
    def model_page(request: Request, model_id: int) -> HTMLResponse:
        try:
            detail = index.model(model_id)
        except IndexedModelNotFoundError:
            return page(request, "missing.html", model_id=model_id)
        lineage = index.lineage(model_id)

        def node(mid: int, note: str = "") -> Node:
            try:
                label = index.model(mid).summary.name or "unnamed"
            except IndexedModelNotFoundError:
                label = "not indexed"
            return Node(mid, label, note)

        graph = lineage_svg(
            Node(model_id, detail.summary.name or "unnamed"),
            [node(p, f"{bps / 100:g}% royalty") for p, bps in lineage.parents],
            [node(c) for c in lineage.children],
        )
        evaluations = index.evaluations(model_id)
        series: dict[str, list[tuple[float, float]]] = {}
        for e in evaluations:
            series.setdefault(e.metric, []).append((e.version, e.score / SCORE_SCALE))
        chart = line_chart_svg(
            series, title="Evaluations by version", x_label="version", y_label="score"
        )
        manifest = detail.manifest or {}
        fee_bps = state.fees.fee_bps()
        royalty_bps = sum(b for _, b in lineage.parents)
        return page(
            request,
            "model.html",
            d=detail,
            m=detail.summary,
            card=manifest.get("card", {}),
            inputs=manifest.get("inputs", []),
            outputs=manifest.get("outputs", []),
            fields=try_fields(manifest),
            lineage=lineage,
            graph=graph,
            chart=chart,
            evaluations=evaluations,
            reviews=index.reviews(model_id),
            fee_bps=fee_bps,
            fee=detail.summary.price * fee_bps // 10_000,
            royalty_bps=royalty_bps,
            royalties=detail.summary.price * royalty_bps // 10_000,
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
        return page(request, "publish.html", models=index.search(search_query(limit=100)).items)

    @router.get("/creators/{address}", response_class=HTMLResponse)
    def dashboard(request: Request, address: str) -> HTMLResponse:
        try:
            creator = index.creator(address)
            earned = index.earnings(creator.account)
        except MercatoError as exc:
            return page(request, "missing.html", error=str(exc))
        models = index.search(search_query(creator=creator.account, limit=100)).items
        running = 0
        points: list[tuple[float, float]] = []
        for credit in earned.credits:
            running += credit.amount
            points.append((credit.block_number, float(Decimal(running) / TOKEN)))
        chart = line_chart_svg(
            {"earned (MCT)": points},
            title="Earnings over time",
            x_label="block",
            y_label="MCT",
        )
        return page(
            request,
            "dashboard.html",
            creator=creator,
            earned=earned,
            models=models,
            chart=chart,
            names={m.model_id: m.name for m in models},
        )

    return router
