# SPDX-License-Identifier: AGPL-3.0-only
"""The gateway's side of moderation: denied models answer 410, and search hides them.

Every route that serves a model or its bytes is checked in one place, before the
route runs, by path:

    /v1/models/{id}[/...]     the API (detail, versions, try, ...), but not /reports
    /models/{id}[/...]        the web page and its try form
    /ipfs/{cid}               blocks, CARs and files: the CID itself, or the model naming it
    /v1/artifacts/{cid}       artifact downloads, likewise

A denied one gets HTTP 410 Gone with the operator's reason (`DeniedError`); other
nodes are unaffected. The lists are re-read when their files change, and subscribed
lists are refreshed in a thread every `moderation_refresh_seconds`.

Checking a model reads the index (its creator and versions' CIDs) and hashes each CID
into the lists' keys: milliseconds, in a thread. `ModelVerdicts` keeps each model's
verdict and answers from the event loop while the lists' files are unchanged and the
verdict is younger than `VERDICT_TTL`: an operator's deny or allow applies from the
next request on, and what the index says about a model (a new version, reports) counts
at most `VERDICT_TTL` seconds later than it would without the cache.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import anyio
from multiformats import CID
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mercato.client.artifacts import cid_digest
from mercato.client.fetching import fetch_policy, version_directory
from mercato.client.market import Market
from mercato.errors import DeniedError, InvalidCIDError, MercatoError
from mercato.gateway.errors import error_response
from mercato.index import schema as s
from mercato.index.search import MAX_PAGE_SIZE, SearchQuery, build_search
from mercato.index.store import Index
from mercato.moderation.lists import NodeDenylists
from mercato.moderation.matcher import Decision
from mercato.moderation.policy import ModerationPolicy
from mercato.moderation.sources import list_fetcher
from mercato.storage.cids import parse_cid

log = logging.getLogger(__name__)
_MODEL_PATH = re.compile(r"^/(?:v1/)?models/(\d{1,20})(/.*)?$")
_CID_PATH = re.compile(r"^/(?:ipfs|v1/artifacts)/([^/]{1,200})/?$")
_UNCHECKED_SUFFIXES = ("/reports",)  # why a model is reported stays readable
# Seconds a model's verdict answers without the index: below the reports' own reuse
# (`REPORTS_TTL`) and an index's lag behind the chain, so no new delay of note.
VERDICT_TTL = 1.0
MAX_VERDICTS = 10_000  # models remembered; a client may name any id


def build_policy(market: Market, index: Index) -> ModerationPolicy:
    """The node's moderation policy: its lists, and reports when a threshold is set."""
    settings = market.settings

    def models_naming(cid: CID) -> Iterable[int]:
        # Versions commit to sha2-256 dag-pb roots; no other CID is a model's.
        if cid.hashfun.name != "sha2-256" or cid.codec.name != "dag-pb":
            return []
        directory = version_directory(market)
        digest = cid_digest(cid)
        refs = directory.for_artifact(digest) + directory.for_manifest(digest)
        return sorted({ref.model_id for ref in refs})

    return ModerationPolicy(
        NodeDenylists(settings.data_dir),
        index,
        report_threshold=settings.moderation_report_threshold,
        models_naming=models_naming,
    )


def denied_error(subject: str, decision: Decision, model_id: int | None = None) -> DeniedError:
    return DeniedError(subject, decision.reason, model_id=model_id)


def subject_of(path: str) -> int | CID | None:
    """The model id or CID a request path serves, or None for a path serving neither."""
    if match := _MODEL_PATH.match(path):
        if (match.group(2) or "").endswith(_UNCHECKED_SUFFIXES):
            return None
        return int(match.group(1))
    if match := _CID_PATH.match(path):
        try:
            return parse_cid(match.group(1))
        except InvalidCIDError:
            return None  # the route answers 400 itself
    return None


def check_subject(policy: ModerationPolicy, subject: int | CID) -> DeniedError | None:
    """The error a request for a model or CID is refused with, or None to serve it.

    Raises:
        ModerationError: A list cannot be read.
    """
    if isinstance(subject, int):
        decision = policy.check_model(subject)
        return denied_error(f"model {subject}", decision, subject) if decision else None
    decision = policy.check_cid(subject)
    return denied_error(str(subject), decision) if decision else None


@dataclass(frozen=True)
class _Verdict:
    """A model's decision, the lists' stamp read before it was made, and when."""

    decision: Decision | None
    stamp: tuple[tuple[int, int], ...]
    at: float


class ModelVerdicts:
    """Each model's moderation decision, reused while nothing it rests on changed.

    `peek` runs on the event loop (stat calls only); `check` computes in a thread.
    """

    def __init__(
        self,
        policy: ModerationPolicy,
        ttl: float = VERDICT_TTL,
        max_entries: int = MAX_VERDICTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        Args:
            policy: The node's policy.
            ttl: Seconds a verdict is reused while the lists are unchanged.
            max_entries: Verdicts kept; past it, expired ones are dropped, and new
                ones are not kept while all are fresh.
            clock: A monotonic clock.
        """
        self.policy = policy
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._verdicts: dict[int, _Verdict] = {}
        self._lock = threading.Lock()

    def peek(self, model_id: int) -> _Verdict | None:
        """The kept verdict when it still holds, else None.

        Raises:
            OSError: A list's folder cannot be read (the caller checks in full).
        """
        with self._lock:
            verdict = self._verdicts.get(model_id)
        if verdict is None or self._clock() - verdict.at >= self.ttl:
            return None
        if self.policy.denylists.stamp() != verdict.stamp:
            return None
        return verdict

    def check(self, model_id: int) -> Decision | None:
        """`policy.check_model`, kept for later `peek`s (blocking: call in a thread).

        Raises:
            ModerationError: A list cannot be read (nothing is kept).
        """
        # Both read before the check: a list written meanwhile makes the stamp differ
        # from the files' next one, so the verdict is not reused.
        at, stamp = self._clock(), self.policy.denylists.stamp()
        decision = self.policy.check_model(model_id)
        with self._lock:
            if len(self._verdicts) >= self.max_entries:
                now = self._clock()
                self._verdicts = {
                    key: kept for key, kept in self._verdicts.items() if now - kept.at < self.ttl
                }
            if len(self._verdicts) < self.max_entries:
                self._verdicts[model_id] = _Verdict(decision, stamp, at)
        return decision

    def __len__(self) -> int:
        return len(self._verdicts)


class ModerationMiddleware:
    """Answers 410 for denied models and CIDs before any route runs."""

    def __init__(
        self, app: ASGIApp, policy: ModerationPolicy, verdicts: ModelVerdicts | None = None
    ) -> None:
        self.app = app
        self.policy = policy
        self.verdicts = verdicts if verdicts is not None else ModelVerdicts(policy)

    async def _denial(self, subject: int | CID) -> DeniedError | None:
        """The error a request for `subject` is refused with, or None to serve it.

        Raises:
            MercatoError: As `check_subject`.
        """
        if not isinstance(subject, int):
            # The check reads the index (and for a CID maybe the chain): off the loop.
            return await anyio.to_thread.run_sync(check_subject, self.policy, subject)
        try:
            verdict = self.verdicts.peek(subject)
        except OSError:
            verdict = None  # the full check in the thread says what is wrong
        if verdict is not None:
            decision = verdict.decision
        else:
            decision = await anyio.to_thread.run_sync(self.verdicts.check, subject)
        return denied_error(f"model {subject}", decision, subject) if decision else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        subject = subject_of(path)
        if subject is None:
            await self.app(scope, receive, send)
            return
        try:
            denied = await self._denial(subject)
        except MercatoError as exc:
            # Fail closed: a list the operator broke must not let denied models through.
            log.error("moderation lists unreadable; refusing %s: %s", path, exc)
            unreadable = JSONResponse(
                {
                    "error": exc.code,
                    "message": "This node cannot read its moderation lists, so it serves no "
                    "model until its operator fixes them ('mercato moderation list').",
                },
                status_code=503,
            )
            await unreadable(scope, receive, send)
            return
        if denied is None:
            await self.app(scope, receive, send)
            return
        response: Response
        if path.startswith("/models/"):
            response = HTMLResponse(
                "<!doctype html><title>Gone</title><h1>Not served by this node</h1>"
                f"<p>{html.escape(str(denied))}</p>",
                status_code=410,
            )
        else:
            response = error_response(denied)
        await response(scope, receive, send)


HIDDEN_NAME = "hidden by this node"  # what a listing shows for a denied model's name


def denied_by(policy: ModerationPolicy | None) -> frozenset[int]:
    """The models a node's policy denies (none without a policy)."""
    return policy.denied_ids() if policy is not None else frozenset()


def hidden_count(index: Index, query: SearchQuery, denied: frozenset[int]) -> int:
    """How many models matching `query` the node hides (counted up to MAX_PAGE_SIZE + 1).

    Args:
        index: The index.
        query: The search, as asked (its page and cursor are ignored).
        denied: The models the node denies.

    Returns:
        The number of denied models that match the query's filters.
    """
    if not denied:
        return 0
    whole = replace(query, exclude=frozenset(), cursor=None, limit=MAX_PAGE_SIZE)
    with index.engine.connect() as conn:
        statement = build_search(conn, whole).where(s.Model.model_id.in_(denied))
        return len(conn.execute(statement).all())


class SubscriptionRefresher:
    """Refreshes the node's subscribed denylists in a daemon thread until `stop()`."""

    def __init__(self, market: Market, denylists: NodeDenylists) -> None:
        self.market = market
        self.denylists = denylists
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mercato-denylists", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        settings = self.market.settings
        while not self._stop.wait(settings.moderation_refresh_seconds):
            try:
                fetch = list_fetcher(
                    fetch_policy(self.market), self.market.store, settings.moderation_gateway
                )
                for subscription in self.denylists.refresh(fetch):
                    if subscription.error:
                        log.warning(
                            "denylist %s kept its last copy: %s",
                            subscription.source,
                            subscription.error,
                        )
            except MercatoError as exc:
                log.error("denylist subscriptions not refreshed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
