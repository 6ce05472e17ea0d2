# SPDX-License-Identifier: AGPL-3.0-only
"""Three replicas of one node on a PostgreSQL index: one leads, all serve, and when the
leader is killed with SIGKILL another takes over and delivers a sale exactly once."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port
from mercato.chain.contracts import LicenseState
from mercato.chain.deployment import Deployment
from mercato.client import Market
from mercato.client.artifacts import package_tar_stream
from mercato.config import Settings
from mercato.models.package import load_package
from mercato.models.samples import build_samples
from mercato.wallet import Wallet, keystore_dir

from .conftest import PostgresServer, Replica

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery staple"
TOKEN = 10**18
TAKEOVER_DEADLINE = 90  # seconds: a follower retries every 3 s; starting its duties is quick
IRIS = {"inputs": {"X": {"dtype": "float32", "data": [[5.1, 3.5, 1.4, 0.2]]}}}


def _until(condition: object, deadline: float, what: str) -> None:
    """Polls `condition()` until it is true; fails with `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {deadline} s: {what}")


def _leaders(replicas: list[Replica]) -> list[str]:
    return [r.name for r in replicas if r.leads()]


def _search(replica: Replica, text: str) -> list[int]:
    answer = httpx.get(f"{replica.base}/v1/models", params={"q": text}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [m["model_id"] for m in answer.json()["items"]]


def _try(replica: Replica, model_id: int) -> dict[str, object]:
    answer = httpx.post(f"{replica.base}/v1/models/{model_id}/try", json=IRIS, timeout=60)
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


class Cluster:
    def __init__(self, root: Path, anvil: AnvilSupervisor, index_url: str) -> None:
        self.root, self.anvil, self.index_url = root, anvil, index_url
        self.data_dir = root / "node"  # one data directory mount for every replica
        accounts = dev_accounts(5)
        self.creator: LocalAccount = accounts[2]
        self.buyer: LocalAccount = accounts[3]
        self.password_file = root / "password"
        self.password_file.write_text(PASSWORD + "\n")
        wallet = Wallet(keystore_dir(self.data_dir), kdf="pbkdf2", iterations=1_000)
        wallet.import_private_key(self.creator.key, PASSWORD)
        args = [
            "--rpc-url", anvil.rpc_url, "--index-url", index_url,
            "--account", self.creator.address, "--password-file", str(self.password_file),
        ]  # fmt: skip
        self.replicas = [Replica(n, self.data_dir, args, free_port()) for n in "abc"]

    @property
    def deployment(self) -> Deployment:
        record = Deployment.load(self.data_dir, 31_337)
        assert record is not None
        return record

    def market(self, data_dir: Path, account: LocalAccount, provider: Replica) -> Market:
        settings = Settings(
            data_dir=data_dir, rpc_url=self.anvil.rpc_url, provider_url=provider.base
        )
        return Market(settings, account=account, deployment=self.deployment)


@pytest.fixture
def cluster(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Cluster]:
    anvil = AnvilSupervisor(tmp_path / "chain", port=free_port())
    anvil.start()
    built = Cluster(tmp_path, anvil, postgres_server.new_database())
    try:
        yield built
    finally:
        for replica in built.replicas:
            replica.stop()
        anvil.stop()


def test_one_replica_leads_and_another_takes_over_when_it_is_killed(
    cluster: Cluster, tmp_path: Path
) -> None:
    first, second, third = cluster.replicas
    first.start()  # deploys on the fresh chain (funding the dev accounts) and leads
    _until(first.leads, TAKEOVER_DEADLINE, "the only replica leads")
    second.start()
    third.start()
    for _ in range(3):  # over more than a follower's retry interval
        assert _leaders(cluster.replicas) == ["a"]
        time.sleep(2)

    samples = build_samples(tmp_path / "samples", ["iris-logreg", "digits-mlp"])
    # Buyers download from `second`'s URL, which stays up throughout.
    creator = cluster.market(cluster.data_dir, cluster.creator, second)
    iris = int(creator.models.publish(samples["iris-logreg"].root, price=5 * TOKEN).model_id)
    for replica in cluster.replicas:  # the leader indexes; every replica reads the index
        _until(lambda r=replica: iris in _search(r, "iris"), 60, f"{replica.name} finds it")
        assert "outputs" in _try(replica, iris)

    first.kill()
    survivors = [second, third]
    _until(lambda: len(_leaders(survivors)) == 1, TAKEOVER_DEADLINE, "a survivor leads")
    for _ in range(3):
        assert len(_leaders(survivors)) == 1
        time.sleep(2)

    buyer = cluster.market(tmp_path / "buyer", cluster.buyer, second)
    buyer.orders.buy(iris)
    assert buyer.orders.wait_for_delivery(iris, timeout=120).state is LicenseState.DELIVERED
    digits = int(creator.models.publish(samples["digits-mlp"].root, price=0).model_id)
    for replica in survivors:  # the new leader follows the chain; both still serve
        _until(lambda r=replica: digits in _search(r, "digits"), 60, f"{replica.name} finds it")
        assert iris in _search(replica, "iris")
        assert "outputs" in _try(replica, iris)
    delivered = buyer.logs(buyer.contracts.marketplace, "Delivered", model_id=iris)
    assert len(delivered) == 1  # exactly once, though every replica holds the key
    dest = buyer.orders.download(iris, tmp_path / "download")
    tar = b"".join(package_tar_stream(load_package(dest)))
    assert hashlib.sha256(tar).digest() == creator.models.version(iris).plaintext_sha256
