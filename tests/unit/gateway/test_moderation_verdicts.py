# SPDX-License-Identifier: AGPL-3.0-only
"""A model's moderation verdict is reused from the event loop, never past a list change.

The verdict cache (`ModelVerdicts`) spares each request the index reads and CID hashing
of `ModerationPolicy.check_model`; these tests hold it to what it promises: an
operator's deny or allow applies to the very next request, what the index says is
read again after `ttl`, unreadable lists still refuse, and the cache stays bounded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from eth_utils import to_checksum_address
from multiformats import CID
from sqlalchemy import Connection, insert
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mercato.gateway.moderation import ModelVerdicts, ModerationMiddleware
from mercato.index import Index
from mercato.index import schema as s
from mercato.moderation.lists import NodeDenylists
from mercato.moderation.matcher import Decision
from mercato.moderation.policy import ModerationPolicy
from tests.event_loop import run

CREATOR = to_checksum_address("0x" + "ab" * 20)


def _digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _cid(seed: str) -> CID:
    return CID("base58btc", 0, "dag-pb", ("sha2-256", bytes.fromhex(_digest(seed))))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingPolicy(ModerationPolicy):
    """The real policy, counting the full checks it makes."""

    checks = 0

    def check_model(self, model_id: int) -> Decision | None:
        self.checks += 1
        return super().check_model(model_id)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    opened = Index.open(data_dir=tmp_path)
    with opened.engine.begin() as conn:
        conn.execute(
            insert(s.Model).values(model_id=5, creator=CREATOR, owner=CREATOR, created_block=1)
        )
        _add_version(conn, 1)
    yield opened
    opened.engine.dispose()


def _add_version(conn: Connection, version: int) -> None:
    conn.execute(
        insert(s.Version).values(
            model_id=5,
            version=version,
            artifact_cid_digest=_digest(f"artifact{version}"),
            plaintext_sha256=_digest("p"),
            manifest_cid_digest=_digest(f"manifest{version}"),
            block_number=version,
            log_index=0,
            tx_hash="0x" + "00" * 32,
        )
    )


@pytest.fixture
def lists(tmp_path: Path) -> NodeDenylists:
    return NodeDenylists(tmp_path / "data")


def _served(_request: object) -> PlainTextResponse:
    return PlainTextResponse("served")


def _getter(middleware: ModerationMiddleware) -> Callable[[str], httpx.Response]:
    def get(path: str) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=middleware)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                return await client.get(path)

        return run(fetch())

    return get


def _middleware(policy: ModerationPolicy, verdicts: ModelVerdicts) -> ModerationMiddleware:
    app = Starlette(routes=[Route("/{path:path}", _served)])
    return ModerationMiddleware(app, policy, verdicts)


def test_a_verdict_is_reused_without_a_second_check(lists: NodeDenylists, index: Index) -> None:
    policy = CountingPolicy(lists, index)
    get = _getter(_middleware(policy, ModelVerdicts(policy, clock=Clock())))
    for _ in range(5):
        assert get("/v1/models/5/try").text == "served"
    assert policy.checks == 1


def test_an_operators_deny_and_allow_apply_to_the_next_request(
    lists: NodeDenylists, index: Index
) -> None:
    policy = CountingPolicy(lists, index)
    get = _getter(_middleware(policy, ModelVerdicts(policy, clock=Clock())))  # time stands still
    assert get("/v1/models/5/try").status_code == 200
    lists.deny("5", "licence violation")
    denied = get("/v1/models/5/try")
    assert denied.status_code == 410 and "licence violation" in denied.json()["message"]
    lists.allow("5")
    assert get("/v1/models/5/try").status_code == 200
    assert policy.checks == 3


def test_a_creator_rule_applies_at_once_to_a_model_already_judged(
    lists: NodeDenylists, index: Index
) -> None:
    policy = ModerationPolicy(lists, index)
    get = _getter(_middleware(policy, ModelVerdicts(policy, clock=Clock())))
    assert get("/models/5").status_code == 200
    lists.deny(CREATOR.lower(), "spam")
    assert get("/models/5").status_code == 410


def test_what_the_index_says_is_read_again_after_the_ttl(
    lists: NodeDenylists, index: Index
) -> None:
    # A rule for a CID no version names yet: the model is served.
    lists.deny(str(_cid("artifact2")), "malware")
    clock = Clock()
    policy = CountingPolicy(lists, index)
    get = _getter(_middleware(policy, ModelVerdicts(policy, ttl=1.0, clock=clock)))
    assert get("/v1/models/5/try").status_code == 200
    with index.engine.begin() as conn:
        _add_version(conn, 2)  # the index learns of a version naming the denied CID
    clock.now += 0.5
    # Within the ttl the verdict stands: the bound the module docstring states.
    assert get("/v1/models/5/try").status_code == 200
    clock.now += 0.5
    refused = get("/v1/models/5/try")
    assert refused.status_code == 410 and "malware" in refused.json()["message"]
    assert policy.checks == 2


def test_lists_broken_after_a_verdict_was_kept_still_refuse(
    lists: NodeDenylists, index: Index
) -> None:
    lists.deny("6")
    policy = ModerationPolicy(lists, index)
    get = _getter(_middleware(policy, ModelVerdicts(policy, clock=Clock())))
    assert get("/v1/models/5").status_code == 200
    lists.local_path.write_text("version: 7\n---\n")  # an operator's broken edit
    refused = get("/v1/models/5")
    assert refused.status_code == 503
    assert refused.json()["error"] == "denylist_format"


def test_the_cache_holds_at_most_max_entries(lists: NodeDenylists, index: Index) -> None:
    clock = Clock()
    policy = ModerationPolicy(lists, index)
    verdicts = ModelVerdicts(policy, ttl=1.0, max_entries=3, clock=clock)
    for model_id in range(10):
        assert verdicts.check(model_id) is None
    assert len(verdicts) == 3
    assert verdicts.peek(9) is None  # not kept while the others were fresh
    clock.now += 1.0  # all expired: the next new one replaces them
    verdicts.check(42)
    assert len(verdicts) == 1 and verdicts.peek(42) is not None
