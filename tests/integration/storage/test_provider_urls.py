# SPDX-License-Identifier: AGPL-3.0-only
"""Which provider URLs a node fetches from, on a real Anvil that is *not* a local chain
(chain id 4242, so local-chain mode is off), with providers as real HTTP servers on
loopback, let through by the settings' explicit allow-list.

Provider URLs are set by anyone, and an old one is never forgotten on-chain. The node
must only ever ask the provider URL the model's *current owner* recorded, only for
CIDs a model version names, and must post try calls nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.client.artifacts import cid_digest
from mercato.client.fetching import fetch_version_artifact, post_try
from mercato.client.metadata import StoreMetadataSource
from mercato.config import Settings
from mercato.errors import (
    BlockNotFoundError,
    ProviderRejectedError,
    ProviderUnavailableError,
    UnsafeURLError,
)
from mercato.models.package import ModelPackage
from mercato.models.samples import build_samples
from mercato.storage.blockstore import Blockstore
from mercato.storage.car import iter_car_bytes
from mercato.storage.cids import parse_cid

from .helpers import serve

pytestmark = pytest.mark.integration

CHAIN_ID = 4242  # not a local chain id: the node runs with local-chain mode off
LOOPBACK = ("127.0.0.0/8",)


@dataclass
class Chain:
    anvil: AnvilSupervisor
    deployment: Deployment
    accounts: list[LocalAccount]

    def market(
        self,
        data_dir: Path,
        account: LocalAccount | None = None,
        *,
        provider_url: str | None = None,
        allow: tuple[str, ...] = LOOPBACK,
    ) -> Market:
        settings = Settings(
            data_dir=data_dir,
            rpc_url=self.anvil.rpc_url,
            provider_url=provider_url,
            fetch_allow_networks=allow,
        )
        return Market(settings, account=account, deployment=self.deployment)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    return build_samples(tmp_path_factory.mktemp("samples"), ["iris-logreg"])["iris-logreg"]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    anvil = AnvilSupervisor(tmp_path / "anvil", port=free_port(), chain_id=CHAIN_ID)
    anvil.start()
    try:
        accounts = dev_accounts(5)
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        yield Chain(anvil, deploy(Web3Backend(w3, accounts[0])), accounts)
    finally:
        anvil.stop()


class Provider:
    """A provider's HTTP server: serves CARs from a store and records every request."""

    def __init__(self, store: Blockstore | None = None) -> None:
        self.store = store
        self.hits: list[str] = []
        self.app = FastAPI()
        self.try_answer: Callable[[], Response] = lambda: Response(status_code=404)

        @self.app.get("/ipfs/{cid}")
        def ipfs(cid: str, request: Request) -> Response:
            self.hits.append(request.url.path)
            if self.store is None:
                return Response(status_code=404)
            car = b"".join(iter_car_bytes(parse_cid(cid), self.store))
            return Response(car, media_type="application/vnd.ipld.car")

        @self.app.post("/v1/models/{model_id}/try")
        def try_call(model_id: int, request: Request) -> Response:
            self.hits.append(request.url.path)
            return self.try_answer()


def test_manifests_and_artifacts_come_only_from_the_current_owners_provider(
    chain: Chain, package: ModelPackage, tmp_path: Path
) -> None:
    creator, other, new_owner = chain.accounts[1], chain.accounts[2], chain.accounts[3]
    creator_dir = tmp_path / "creator"
    honest, stale, stranger = Provider(), Provider(), Provider()
    with (
        serve(stale.app) as stale_url,
        serve(stranger.app) as stranger_url,
        serve(honest.app) as honest_url,
    ):
        market = chain.market(creator_dir, creator, provider_url=stale_url)
        published = market.models.publish(package.root, price=0)  # records stale_url
        honest.store = market.store  # the new owner serves the same bytes
        chain.market(tmp_path / "o", other).contracts.registry.set_provider(stranger_url)
        registry = market.contracts.registry
        registry.transfer_from(creator.address, new_owner.address, published.model_id)
        chain.market(tmp_path / "n", new_owner).contracts.registry.set_provider(honest_url)
        # The previous owner records a newer URL after the transfer: still not asked.
        market.contracts.registry.set_provider(stale_url + "/newer")

        node = chain.market(tmp_path / "node")
        source = StoreMetadataSource(node)
        digest = cid_digest(published.manifest_cid)
        assert source.provider_urls(digest) == [honest_url]
        manifest = source.manifest(digest)
        assert manifest is not None and manifest["name"] == package.name
        assert node.store.is_pinned(published.manifest_cid)
        fetch_version_artifact(node, published.artifact_cid)
        assert node.store.is_pinned(published.artifact_cid)
    assert honest.hits == [
        f"/ipfs/{published.manifest_cid}",
        f"/ipfs/{published.artifact_cid}",
    ]
    assert stale.hits == [] and stranger.hits == []


def test_only_cids_a_version_names_are_fetched(
    chain: Chain, package: ModelPackage, tmp_path: Path
) -> None:
    provider = Provider()
    with serve(provider.app) as url:
        market = chain.market(tmp_path / "creator", chain.accounts[1], provider_url=url)
        market.models.publish(package.root, price=0)
        provider.store = market.store
        node = chain.market(tmp_path / "node")
        unnamed = parse_cid("QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB")
        with pytest.raises(BlockNotFoundError):
            fetch_version_artifact(node, unnamed)
        raw_leaf = parse_cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
        with pytest.raises(BlockNotFoundError):
            fetch_version_artifact(node, raw_leaf)
    assert provider.hits == []
    assert node.store.pins() == []


def test_a_loopback_provider_is_refused_without_the_allow_list(
    chain: Chain, package: ModelPackage, tmp_path: Path
) -> None:
    provider = Provider()
    with serve(provider.app) as url:
        market = chain.market(tmp_path / "creator", chain.accounts[1], provider_url=url)
        published = market.models.publish(package.root, price=0)
        provider.store = market.store
        node = chain.market(tmp_path / "node", allow=())
        assert StoreMetadataSource(node).manifest(cid_digest(published.manifest_cid)) is None
        with pytest.raises(ProviderUnavailableError) as info:
            fetch_version_artifact(node, published.artifact_cid)
        assert isinstance(info.value.__cause__, UnsafeURLError)
        with pytest.raises(UnsafeURLError):
            post_try(node, url, published.model_id, b"{}")
    assert provider.hits == []
    assert node.store.pins() == []


def test_try_calls_to_a_hostile_provider(chain: Chain, tmp_path: Path) -> None:
    provider = Provider()
    node = chain.market(tmp_path / "node")
    secret = "db-password=hunter2"
    answers: dict[str, Callable[[], Response]] = {
        "redirect": lambda: RedirectResponse("http://127.0.0.1:9/steal", status_code=307),
        "error text": lambda: Response(f"Traceback: {secret}", status_code=500),
        "mercato error": lambda: Response(
            json.dumps({"error": "inference_input_invalid", "message": secret}),
            status_code=422,
            media_type="application/json",
        ),
        "endless": lambda: StreamingResponse(_endless(), media_type="application/json"),
    }
    with serve(provider.app) as url:
        for name, answer in answers.items():
            provider.try_answer = answer
            expected = (
                ProviderRejectedError if name == "mercato error" else ProviderUnavailableError
            )
            with pytest.raises(expected) as info:
                post_try(node, url, 1, b"{}")
            assert secret not in str(info.value), name
            assert "127.0.0.1" in str(info.value)
        provider.try_answer = lambda: Response(b'{"outputs": {}}', media_type="application/json")
        assert post_try(node, url, 1, b"{}") == b'{"outputs": {}}'
    assert len(provider.hits) == len(answers) + 1


def _endless() -> Iterator[bytes]:
    chunk = b" " * 65536
    while True:
        yield chunk
