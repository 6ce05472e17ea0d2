# SPDX-License-Identifier: AGPL-3.0-only
"""A hostile provider, as real HTTP servers on loopback (uvicorn), against the node's
fetches: private targets, redirects, endless bodies, blocks outside the DAG, bodies
with secrets meant to be echoed.

Loopback is the only network these tests have, so the private-address refusal is
tested with local-chain mode off and no allow-list (the server is never reached), and
the other attacks with loopback let through by an explicit allow-list. Name
resolution is the one thing stood in for: a resolver function maps test host names to
addresses, as a DNS server under the attacker's control would.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from multiformats import CID

from mercato.errors import (
    CarUnexpectedBlockError,
    FetchTooLargeError,
    StorageBackendError,
    UnsafeURLError,
)
from mercato.storage.backends import GatewayBackend
from mercato.storage.blockstore import Blockstore
from mercato.storage.car import car_header, car_section, iter_car_bytes, iter_dag
from mercato.storage.cids import parse_cid
from mercato.storage.remote import FetchPolicy
from mercato.storage.unixfs import CHUNK_SIZE, ImportResult, import_file

from .helpers import pseudo_random, serve

pytestmark = pytest.mark.integration

DATA = pseudo_random(2 * CHUNK_SIZE + 5)
LOOPBACK = FetchPolicy.from_settings(local_chain=False, allow=["127.0.0.0/8"])


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Blockstore, ImportResult, ImportResult]:
    """A store with the DAG that is asked for and another one the provider pushes."""
    store = Blockstore(tmp_path / "origin")
    wanted = import_file(io.BytesIO(DATA), store)
    other = import_file(io.BytesIO(pseudo_random(CHUNK_SIZE + 9, seed=b"other")), store)
    return store, wanted, other


def _store_bytes(store: Blockstore) -> int:
    return sum(p.stat().st_size for p in store.blocks_dir.rglob("*") if p.is_file())


class Hits:
    """Requests a test server received (host header and path)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []


def _app(hits: Hits, handler: object) -> FastAPI:
    app = FastAPI()

    @app.get("/ipfs/{cid}")
    def ipfs(cid: str, request: Request) -> Response:
        hits.seen.append((request.headers.get("host", ""), request.url.path))
        return handler(cid)  # type: ignore[operator]

    return app


def _car_app(hits: Hits, store: Blockstore, root: ImportResult) -> FastAPI:
    return _app(
        hits,
        lambda cid: Response(
            b"".join(iter_car_bytes(root.cid, store)), media_type="application/vnd.ipld.car"
        ),
    )


def test_loopback_provider_is_refused_outside_local_mode(
    origin: tuple[Blockstore, ImportResult, ImportResult], tmp_path: Path
) -> None:
    store, wanted, _ = origin
    hits = Hits()
    local = Blockstore(tmp_path / "local")
    with serve(_car_app(hits, store, wanted)) as url:
        for target in (url, url.replace("127.0.0.1", "localhost")):
            with pytest.raises(UnsafeURLError) as info:
                GatewayBackend(target, policy=FetchPolicy()).fetch_car(wanted.cid, local)
            assert info.value.code == "unsafe_url"
        # The same server is fetched from in local-chain mode.
        GatewayBackend(url, policy=FetchPolicy(allow_private=True)).fetch_car(wanted.cid, local)
    assert len(hits.seen) == 1  # only the local-mode fetch reached the server
    assert local.pins() == [wanted.cid]


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "192.168.0.9",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "fd00::5",
        "100.64.0.1",
    ],
)
def test_names_resolving_to_non_public_addresses_are_refused(address: str) -> None:
    resolver = {"provider.test": [address]}
    policy = FetchPolicy(resolver=lambda host, port: resolver[host])
    with pytest.raises(UnsafeURLError) as info:
        policy.address_for(policy.check_url("http://provider.test:8080/"))
    assert info.value.host == "provider.test"


def test_a_name_with_one_public_and_one_private_address_is_refused() -> None:
    policy = FetchPolicy(resolver=lambda host, port: ["93.184.216.34", "127.0.0.1"])
    with pytest.raises(UnsafeURLError):
        policy.address_for(policy.check_url("https://provider.test/"))
    assert (
        FetchPolicy(resolver=lambda h, p: ["93.184.216.34"]).address_for(
            policy.check_url("https://provider.test/")
        )
        == "93.184.216.34"
    )


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/", "gopher://x", "/rel"])
def test_schemes_other_than_http_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        GatewayBackend(url)


def test_connection_goes_to_the_checked_address_not_a_second_lookup(
    origin: tuple[Blockstore, ImportResult, ImportResult], tmp_path: Path
) -> None:
    # DNS rebinding: the first answer is allowed, every later one points elsewhere.
    # The node resolves once per request and connects to that address, so the later
    # answers are never used (and "provider.test" does not exist in real DNS).
    store, wanted, _ = origin
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.9.9.9"]

    policy = FetchPolicy(allowed_networks=LOOPBACK.allowed_networks, resolver=rebinding)
    hits = Hits()
    local = Blockstore(tmp_path / "local")
    with serve(_car_app(hits, store, wanted)) as url:
        port = url.rsplit(":", 1)[1]
        GatewayBackend(f"http://provider.test:{port}", policy=policy).fetch_car(wanted.cid, local)
    assert calls == ["provider.test"]
    assert hits.seen == [(f"provider.test:{port}", f"/ipfs/{wanted.cid}")]
    assert local.pins() == [wanted.cid]


def test_redirects_are_not_followed(
    origin: tuple[Blockstore, ImportResult, ImportResult], tmp_path: Path
) -> None:
    store, wanted, _ = origin
    target_hits = Hits()
    local = Blockstore(tmp_path / "local")
    with serve(_car_app(target_hits, store, wanted)) as target:
        redirect_hits = Hits()
        app = _app(
            redirect_hits,
            lambda cid: RedirectResponse(f"{target}/ipfs/{cid}?format=car", status_code=302),
        )
        with serve(app) as url:
            backend = GatewayBackend(url, policy=LOOPBACK)
            with pytest.raises(StorageBackendError) as info:
                backend.fetch_car(wanted.cid, local)
            assert info.value.status == 302
            with pytest.raises(StorageBackendError):
                backend.get_block(wanted.cid)
    assert len(redirect_hits.seen) == 2
    assert target_hits.seen == []
    assert local.pins() == []


def test_endless_body_is_cut_at_the_byte_cap(
    origin: tuple[Blockstore, ImportResult, ImportResult], tmp_path: Path
) -> None:
    # A valid CAR that never ends: the root's section repeated for ever. Repeats are
    # not written again, so only the byte cap stops it, while the stream flows.
    store, wanted, _ = origin
    root_block = store.get(wanted.cid)
    sent: list[int] = []

    def endless(cid: str) -> StreamingResponse:
        def body() -> Iterator[bytes]:
            yield car_header([wanted.cid])
            section = car_section(wanted.cid, root_block)
            while True:
                sent.append(len(section))
                yield section * 16

        return StreamingResponse(body(), media_type="application/vnd.ipld.car")

    local = Blockstore(tmp_path / "local")
    cap = 4 * 1024 * 1024
    with serve(_app(Hits(), endless)) as url, pytest.raises(FetchTooLargeError) as info:
        GatewayBackend(url, policy=LOOPBACK).fetch_car(wanted.cid, local, max_bytes=cap)
    assert info.value.limit == cap
    assert local.pins() == []
    assert _store_bytes(local) <= len(root_block)


def test_announced_length_above_the_cap_is_refused_before_reading(
    origin: tuple[Blockstore, ImportResult, ImportResult], tmp_path: Path
) -> None:
    store, wanted, _ = origin
    car = b"".join(iter_car_bytes(wanted.cid, store))
    local = Blockstore(tmp_path / "local")
    with serve(_car_app(Hits(), store, wanted)) as url:
        with pytest.raises(FetchTooLargeError):
            GatewayBackend(url, policy=LOOPBACK).fetch_car(
                wanted.cid, local, max_bytes=len(car) - 1
            )
        policy = FetchPolicy(allowed_networks=LOOPBACK.allowed_networks, max_bytes=len(car) - 1)
        with pytest.raises(FetchTooLargeError):  # the policy's limit caps any max_bytes
            GatewayBackend(url, policy=policy).fetch_car(wanted.cid, local, max_bytes=len(car))
    assert _store_bytes(local) == 0


@pytest.mark.parametrize("where", ["after", "before", "between"])
def test_extra_blocks_in_a_car_are_refused_and_not_stored(
    origin: tuple[Blockstore, ImportResult, ImportResult], tmp_path: Path, where: str
) -> None:
    store, wanted, other = origin
    sections = [car_section(c, b) for c, b in _dag(store, wanted)]
    extra = [car_section(c, b) for c, b in _dag(store, other)]
    if where == "after":
        body = sections + extra
    elif where == "before":
        body = extra + sections
    else:
        body = sections[:1] + extra + sections[1:]
    car = car_header([wanted.cid, other.cid]) + b"".join(body)
    local = Blockstore(tmp_path / "local")
    app = _app(Hits(), lambda cid: Response(car, media_type="application/vnd.ipld.car"))
    with serve(app) as url, pytest.raises(CarUnexpectedBlockError) as info:
        GatewayBackend(url, policy=LOOPBACK).fetch_car(wanted.cid, local)
    assert info.value.root == str(wanted.cid)
    assert local.pins() == []
    for cid, _ in _dag(store, other):
        assert not local.has(cid)


def test_error_bodies_are_not_echoed(tmp_path: Path) -> None:
    secret = "internal-token=7f3a9c; ssh-rsa AAAA"
    app = _app(Hits(), lambda cid: Response(secret, status_code=500))
    local = Blockstore(tmp_path / "local")
    cid = parse_cid("QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB")
    with serve(app) as url:
        backend = GatewayBackend(url, policy=LOOPBACK)
        for call in (lambda: backend.fetch_car(cid, local), lambda: backend.get_block(cid)):
            with pytest.raises(StorageBackendError) as info:
                call()
            assert info.value.status == 500
            assert "internal-token" not in str(info.value)
            assert "ssh-rsa" not in str(info.value)
            assert url in str(info.value)


def _dag(store: Blockstore, result: ImportResult) -> list[tuple[CID, bytes]]:
    return list(iter_dag(result.cid, store))


def test_a_provider_that_trickles_bytes_is_cut_off(
    origin: tuple[Blockstore, ImportResult, ImportResult], tmp_path: Path
) -> None:
    # One byte now and then never trips a read timeout; the fetch's own deadline does.
    store, wanted, _ = origin
    car = b"".join(iter_car_bytes(wanted.cid, store))

    def trickle(cid: str) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for index in range(60):  # 3 s of trickle, well past the 1 s deadline
                await asyncio.sleep(0.05)
                yield car[index : index + 1]

        return StreamingResponse(body(), media_type="application/vnd.ipld.car")

    local = Blockstore(tmp_path / "local")
    with serve(_app(Hits(), trickle)) as url, pytest.raises(StorageBackendError) as info:
        GatewayBackend(url, policy=LOOPBACK).fetch_car(wanted.cid, local, max_seconds=1.0)
    assert "took more than" in str(info.value)
    assert local.pins() == []
