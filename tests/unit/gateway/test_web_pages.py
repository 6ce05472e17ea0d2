# SPDX-License-Identifier: AGPL-3.0-only
"""The web pages' building blocks: how things are written, charts, the seller probe,
and what a failing page leaves in the log. Real FastAPI apps and real HTTP servers on
loopback; nothing is mocked."""

from __future__ import annotations

import itertools
import logging
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from mercato.errors import IndexedModelNotFoundError
from mercato.gateway.charts import line_chart_svg, nice_range, nice_step
from mercato.gateway.formatting import (
    ago,
    base_model_links,
    card_body,
    card_text,
    duration,
    shape,
    span,
    summary_line,
    when,
)
from mercato.gateway.seller_probe import Reachability, SellerProbe
from mercato.gateway.web import QuietErrorRoute
from mercato.storage.remote import FetchPolicy

IRIS_TEXT = (
    "# iris-logreg\n\nClassifies iris flowers (setosa, versicolor, virginica) from "
    "sepal and petal length. Input `X`: float32 [N, 4].\n"
)


# --- writing -----------------------------------------------------------------------


def test_shapes_read_as_people_write_them() -> None:
    assert shape(["N", 4]) == "N \N{MULTIPLICATION SIGN} 4"
    assert shape([None, 3, -1]) == "? \N{MULTIPLICATION SIGN} 3 \N{MULTIPLICATION SIGN} ?"
    assert shape([]) == "scalar"
    assert shape(None) == "any"


def test_card_text_is_the_cards_own_text_without_the_repeated_name() -> None:
    manifest = {"name": "iris-logreg", "card": {"text": IRIS_TEXT, "datasets": ["x/iris"]}}
    text = card_text(manifest)
    assert "x/iris" not in text  # the index appends datasets and metrics for search only
    body = card_body(text, "iris-logreg")
    assert body.startswith("Classifies iris flowers")
    assert card_body("# Another title\n\nText", "iris-logreg").startswith("# Another title")
    assert summary_line(text, "iris-logreg") == (
        "Classifies iris flowers (setosa, versicolor, virginica) from sepal and petal "
        "length. Input X: float32 [N, 4]."
    )
    assert len(summary_line("word " * 100, None)) <= 160


def test_base_model_links_only_to_parents_the_chain_records() -> None:
    parents = {"iris-logreg": 1}
    assert base_model_links(["iris-logreg", "someone/iris-logreg", "elsewhere"], parents) == [
        ("iris-logreg", 1),
        ("someone/iris-logreg", 1),
        ("elsewhere", None),  # a card cannot make the page link anywhere it likes
    ]
    assert base_model_links("iris-logreg", parents) == [("iris-logreg", 1)]


def test_times_and_durations_in_words() -> None:
    assert span(86_400) == "1 day" and span(5_400) == "1.5 hours" and span(30) == "30 seconds"
    assert duration(0) == "perpetual" and duration(7 * 86_400) == "7 days"
    assert ago(1_000, now=1_010) == "just now"
    assert ago(1_000, now=1_000 + 3 * 3_600) == "3 hours ago"
    assert ago(1_000 + 2 * 86_400, now=1_000) == "in 2 days"
    html = str(when(1_700_000_000, now=1_700_000_000 + 120))
    assert 'datetime="2023-11-14T22:13:20Z"' in html
    assert "14 Nov 2023, 22:13 UTC" in html and "(2 minutes ago)" in html
    assert "\N{EN DASH}" in str(when(None))


# --- charts ------------------------------------------------------------------------


def test_axis_bounds_are_round_and_fit_the_data() -> None:
    assert nice_step(1.0) == 0.2 and nice_step(120) == 25 and nice_step(0.03) == 0.01
    low, high, step = nice_range(0.95, 0.99)
    assert (round(low, 10), round(high, 10), step) == (0.92, 1.02, 0.02)
    assert low > 0.5  # accuracies are not squashed into the top of a 0..1 axis
    assert nice_range(0, 120) == (0, 125, 25)


def _ticks(svg: str) -> list[float]:
    labels = re.findall(r'text-anchor="end">([-0-9.]+)</text>', svg)
    return [float(t) for t in labels]


def test_a_score_chart_has_round_ticks_a_bounded_range_and_a_legend() -> None:
    svg = str(
        line_chart_svg(
            {"accuracy · a": [(1, 0.95), (2, 0.97)], "accuracy · <b>": [(1, 0.99)]},
            title="Scores",
            x_label="version",
            y_label="score",
            y_bounds=(0.0, 1.0),
        )
    )
    ticks = _ticks(svg)
    assert ticks[0] == 0.92 and ticks[-1] == 1.0  # never above 1 on a score axis
    steps = {round(b - a, 10) for a, b in itertools.pairwise(ticks)}
    assert steps == {0.02}
    assert svg.count('class="legend-item"') == 2
    assert "&lt;b&gt;" in svg and "<b>" not in svg  # names are escaped
    versions = re.findall(r'class="tick" text-anchor="middle">([^<]+)</text>', svg)
    assert versions == ["1", "2"]  # whole versions only, no 0 or 2.5


def test_the_earnings_chart_is_a_time_series_with_date_ticks() -> None:
    day = 1_700_006_400  # a midnight, UTC
    points: list[tuple[float, float]] = [(day + 3_600, 0.0), (day + 7_200, 5.0)]
    points.append((day + 3 * 86_400, 9.0))
    svg = str(
        line_chart_svg(
            {"earned": points},
            title="Earnings",
            x_label="date",
            y_label="MCT",
            time_axis=True,
            step_lines=True,
            y_from_zero=True,
        )
    )
    labels = re.findall(r'class="tick" text-anchor="middle">([^<]+)</text>', svg)
    assert labels and all(re.fullmatch(r"\d\d [A-Z][a-z]{2}( \d\d:\d\d)?", t) for t in labels)
    polyline = re.search(r'<polyline points="([^"]+)"', svg)
    assert polyline is not None and len(polyline.group(1).split()) == 5  # 3 points + 2 steps
    assert _ticks(svg)[0] == 0


# --- the seller probe ----------------------------------------------------------------

LOCAL = FetchPolicy.from_settings(local_chain=True)  # providers on loopback, as in the demo


class _Health(BaseHTTPRequestHandler):
    status = 200
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(self.status)
        if self.status == 302:
            self.send_header("Location", "http://127.0.0.1:1/v1/health")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Health]]]:
    handler = type("Handler", (_Health,), {"hits": 0, "status": 200})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def test_a_node_that_answers_its_health_check_is_online_and_cached(
    server: tuple[str, type[_Health]],
) -> None:
    url, handler = server
    probe = SellerProbe(LOCAL)
    assert probe.check(url + "/") == Reachability.ONLINE
    assert probe.check(url) == Reachability.ONLINE
    assert handler.hits == 1  # one check per URL per ttl, however many pages ask
    probe.close()


@pytest.mark.parametrize("status", [302, 404, 500])
def test_redirects_and_errors_count_as_offline(
    server: tuple[str, type[_Health]], status: int
) -> None:
    url, handler = server
    handler.status = status
    probe = SellerProbe(LOCAL)
    assert probe.check(url) == Reachability.OFFLINE
    assert handler.hits == 1  # the redirect was not followed
    probe.close()


def test_a_closed_port_or_a_silent_server_is_offline() -> None:
    probe = SellerProbe(LOCAL, deadline=0.5)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert probe.check(f"http://127.0.0.1:{port}") == Reachability.OFFLINE
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert probe.check(f"http://127.0.0.1:{silent.getsockname()[1]}") == (Reachability.OFFLINE)
    probe.close()


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "http://user:secret@127.0.0.1:9/",
        "http://[::1",
        "not a url",
    ],
)
def test_urls_the_probe_refuses_are_not_contacted(url: str | None) -> None:
    probe = SellerProbe(LOCAL)
    assert probe.check(url) == Reachability.UNCHECKED
    probe.close()


def test_a_name_resolving_to_a_private_address_is_not_probed(
    server: tuple[str, type[_Health]],
) -> None:
    url, handler = server
    port = url.rsplit(":", 1)[1]
    # "localhost" resolves to loopback: refused by address, not by how the URL looks.
    probe = SellerProbe(FetchPolicy.from_settings(local_chain=False))
    assert probe.check(f"http://localhost:{port}") == Reachability.UNCHECKED
    assert handler.hits == 0
    allowed = FetchPolicy.from_settings(local_chain=False, allow=["127.0.0.0/8", "::1/128"])
    assert SellerProbe(allowed).check(f"http://localhost:{port}") == Reachability.ONLINE
    probe.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254"])
def test_private_addresses_are_not_probed_outside_a_local_chain(
    server: tuple[str, type[_Health]], host: str
) -> None:
    url, handler = server
    port = url.rsplit(":", 1)[1]
    probe = SellerProbe(FetchPolicy.from_settings(local_chain=False))
    assert probe.check(f"http://{host}:{port}") == Reachability.UNCHECKED
    assert handler.hits == 0
    probe.close()


# --- page errors -----------------------------------------------------------------------


def _failing_app() -> FastAPI:
    router = APIRouter(route_class=QuietErrorRoute)

    @router.get("/broken")
    def broken() -> None:
        raise RuntimeError("the index file vanished")

    @router.get("/missing")
    def missing() -> None:
        raise IndexedModelNotFoundError(42)

    app = FastAPI()
    app.include_router(router)
    return app


def test_a_failing_page_logs_one_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(_failing_app(), raise_server_exceptions=False)
    with caplog.at_level(logging.INFO, logger="mercato.gateway.web"):
        response = client.get("/broken")
    assert response.status_code == 500 and "could not be shown" in response.text
    records = [r for r in caplog.records if r.name == "mercato.gateway.web"]
    assert len(records) == 1
    assert records[0].getMessage() == (
        "page GET /broken failed: RuntimeError: the index file vanished"
    )
    assert not records[0].exc_info
    assert "Traceback" not in caplog.text


def test_debug_logging_keeps_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(_failing_app(), raise_server_exceptions=False)
    with caplog.at_level(logging.DEBUG, logger="mercato.gateway.web"):
        client.get("/broken")
    records = [r for r in caplog.records if r.name == "mercato.gateway.web"]
    assert len(records) == 1 and records[0].exc_info


def test_a_typed_error_on_a_page_shows_its_sentence_and_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(_failing_app(), raise_server_exceptions=False)
    with caplog.at_level(logging.INFO, logger="mercato.gateway.web"):
        response = client.get("/missing")
    assert response.status_code == 404
    assert "42" in response.text and response.headers["content-type"].startswith("text/html")
    assert [r.levelno for r in caplog.records if r.name == "mercato.gateway.web"] == [
        logging.WARNING
    ]


# --- the RPC address shown for adding the chain to a wallet ---------------------------


@pytest.mark.parametrize(
    ("chain_id", "rpc_url", "shown"),
    [
        (31_337, "http://127.0.0.1:8545", True),
        (31_337, "http://127.0.0.1:8545/", True),
        (31_337, "https://rpc.example/v3/0123456789abcdef", False),  # a key in the path
        (31_337, "https://user:secret@rpc.example", False),
        (31_337, "https://rpc.example/?apikey=secret", False),
        (1, "http://127.0.0.1:8545", False),  # only local chains are added by hand
    ],
)
def test_the_rpc_address_is_shown_only_when_it_holds_no_secret(
    chain_id: int, rpc_url: str, shown: bool
) -> None:
    from types import SimpleNamespace

    from mercato.gateway.web import _chain_rpc_hint

    # Only the two values the function reads; a whole node is not needed for them.
    state = SimpleNamespace(chain_id=chain_id, market=SimpleNamespace(rpc_url=rpc_url))
    assert _chain_rpc_hint(state) == (rpc_url if shown else None)  # type: ignore[arg-type]
