# SPDX-License-Identifier: AGPL-3.0-only
"""Moderation each node controls, on two real nodes sharing one Anvil.

The creator's node (A) denies a model with `mercato moderation deny`: A answers 410 with
the reason on every route that serves it, hides it from search with a count, refuses
try calls and never delivers its sales (the buyer takes a refund). The buyer's node
(B) decides for itself and still serves it, in the same test. Reports filed on-chain
are indexed and counted, and the auto-deny threshold denies a model reported by enough
license holders.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mercato.chain.contracts import LicenseState, ReportReason
from mercato.client import Market
from mercato.index import Index
from mercato.models.samples import build_samples
from mercato.moderation.lists import NodeDenylists
from mercato.moderation.policy import ModerationPolicy

from .conftest import Network

TOKEN = 10**18
REASON = "illegal content (ticket 7)"
POLL_LIMIT = 120.0  # seconds a node may take to index what the chain already holds


def mercato(network: Network, *args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    env |= {"MERCATO_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mercato.cli", *args],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def until(check: Callable[[], Any], what: str) -> Any:
    """Polls `check` until it returns something truthy (a node catching up), bounded."""
    deadline = time.monotonic() + POLL_LIMIT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


def gateway_of(network: Network, node: str) -> str:
    if node == "A":
        return network.creator_gateway
    port = network.buyer_node.args[network.buyer_node.args.index("--gateway-port") + 1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("moderation")
    return build_samples(folder, ["iris-logreg"])["iris-logreg"].root


def publish(
    network: Network, sample: Path, name: str, price: int, parents: tuple[int, ...] = ()
) -> tuple[int, Market]:
    creating = network.market(network.creator_dir, network.creator)
    published = creating.models.publish(
        sample, price=price, name=name, parents=parents, royalty_bps=(0,) * len(parents)
    )
    return int(published.model_id), creating


def indexed(base: str, model_id: int) -> bool:
    return httpx.get(f"{base}/v1/models/{model_id}").status_code in (200, 410)


def test_a_model_denied_on_one_node_is_refused_there_and_served_by_another(
    network: Network, sample: Path
) -> None:
    a, b = gateway_of(network, "A"), gateway_of(network, "B")
    denied_id, creating = publish(network, sample, "moderation-denied", TOKEN)
    witness_id, _ = publish(network, sample, "moderation-witness", TOKEN)
    child_id, _ = publish(network, sample, "moderation-child", 0, parents=(denied_id,))
    artifact = creating.models.show(denied_id).latest.artifact_cid
    until(lambda: indexed(a, denied_id) and indexed(b, denied_id), "both nodes to index it")
    # Node B fetches the artifact from A's provider URL while A still serves it.
    before = httpx.get(f"{b}/v1/artifacts/{artifact}", timeout=60)
    assert before.status_code == 200

    denied = mercato(
        network, "moderation", "deny", str(denied_id), "--reason", REASON,
        data_dir=network.creator_dir,
    )  # fmt: skip
    assert denied.returncode == 0, denied.stderr

    # Node A refuses it everywhere it would serve it, with the reason.
    for path in (
        f"/v1/models/{denied_id}",
        f"/v1/models/{denied_id}/versions",
        f"/ipfs/{artifact}",
        f"/ipfs/{artifact}?format=car",
        f"/v1/artifacts/{artifact}",
    ):
        answer = httpx.get(a + path)
        assert answer.status_code == 410, path
        assert answer.json()["error"] == "denied"
        assert REASON in answer.json()["message"]
    page = httpx.get(f"{a}/models/{denied_id}")
    assert page.status_code == 410 and "illegal content (ticket 7)" in page.text
    tried = httpx.post(f"{a}/v1/models/{denied_id}/try", json={"inputs": {"X": [[1, 2, 3, 4]]}})
    assert tried.status_code == 410
    tried_cli = mercato(
        network, "try", str(denied_id), '{"X": [[5.1, 3.5, 1.4, 0.2]]}',
        data_dir=network.buyer_dir,
    )  # fmt: skip
    # The CLI names the refusal's stable code, never the provider's own text.
    assert tried_cli.returncode == 82 and "refused the call (denied): HTTP 410" in tried_cli.stderr
    search = httpx.get(f"{a}/v1/models", params={"q": "moderation-denied"}).json()
    assert denied_id not in [m["model_id"] for m in search["items"]]
    assert search["hidden"] == 1
    home = httpx.get(f"{a}/", params={"q": "moderation-denied"})
    assert "1 matching model hidden by this node's moderation" in home.text
    # A's other pages never name it either: the creator's page counts it, the publish
    # form's parents leave it out, and its child's lineage shows it as hidden.
    until(lambda: indexed(a, child_id), "node A to index the child")
    creator_page = httpx.get(f"{a}/creators/{network.creator.address}").text
    assert "moderation-witness" in creator_page and "moderation-denied" not in creator_page
    assert "1 model hidden by this node's moderation" in creator_page
    assert "moderation-denied" not in httpx.get(f"{a}/publish").text
    child_page = httpx.get(f"{a}/models/{child_id}").text
    assert "moderation-denied" not in child_page and "hidden by this node" in child_page

    # Node B decides for itself: it serves the model, its page, search and its bytes.
    assert httpx.get(f"{b}/v1/models/{denied_id}").status_code == 200
    assert httpx.get(f"{b}/models/{denied_id}").status_code == 200
    found = httpx.get(f"{b}/v1/models", params={"q": "moderation-denied"}).json()
    assert denied_id in [m["model_id"] for m in found["items"]] and found["hidden"] == 0
    assert "moderation-denied" in httpx.get(f"{b}/creators/{network.creator.address}").text
    until(lambda: indexed(b, child_id), "node B to index the child")
    assert "moderation-denied" in httpx.get(f"{b}/models/{child_id}").text
    after = httpx.get(f"{b}/v1/artifacts/{artifact}", timeout=60)
    assert after.status_code == 200 and after.content == before.content
    assert httpx.get(f"{b}/ipfs/{artifact}").status_code == 200

    # A's agent never delivers the denied model: it declines the order, and the buyer
    # has the whole price back at once. The witness, bought after it, is delivered.
    buyer = network.buyers[0]
    buying = network.market(network.buyer_dir, buyer)
    token = buying.contracts.token
    balance = token.balance_of(buyer.address)
    buying.orders.buy(denied_id)
    buying.orders.buy(witness_id)
    buying.orders.wait_for_delivery(witness_id, timeout=120)
    until(
        lambda: buying.orders.status(denied_id).state is LicenseState.REFUNDED,
        "node A's agent to decline the denied model's order",
    )
    assert not buying.orders.status(denied_id).licensed  # never delivered
    assert token.balance_of(buyer.address) == balance - TOKEN  # only the witness was paid

    # Its rule dropped, A serves it again.
    forgot = mercato(network, "moderation", "forget", str(denied_id), data_dir=network.creator_dir)
    assert forgot.returncode == 0, forgot.stderr
    assert httpx.get(f"{a}/v1/models/{denied_id}").status_code == 200


def test_a_denied_cid_is_refused_with_its_model(network: Network, sample: Path) -> None:
    a = gateway_of(network, "A")
    model_id, creating = publish(network, sample, "moderation-cid", 0)
    manifest = creating.models.show(model_id).latest.manifest_cid
    until(lambda: indexed(a, model_id), "node A to index the model")
    denied = mercato(network, "moderation", "deny", str(manifest), data_dir=network.creator_dir)
    assert denied.returncode == 0, denied.stderr
    assert httpx.get(f"{a}/ipfs/{manifest}").status_code == 410
    # The model whose version names the CID is refused too.
    assert httpx.get(f"{a}/v1/models/{model_id}").status_code == 410
    mercato(network, "moderation", "forget", str(manifest), data_dir=network.creator_dir)
    assert httpx.get(f"{a}/ipfs/{manifest}").status_code == 200


def test_reports_are_counted_and_past_the_threshold_deny_the_model(
    network: Network, sample: Path, tmp_path: Path
) -> None:
    b = gateway_of(network, "B")
    model_id, _ = publish(network, sample, "moderation-reported", 0)
    holders = network.buyers[1:3]
    for account in holders:
        reporting = network.market(network.buyer_dir, account)
        reporting.orders.buy(model_id)  # free: the license is granted at once
        assert reporting.contracts.reports is not None
        reporting.contracts.reports.report(model_id, ReportReason.MALWARE, b"\x07" * 32)
    # Anyone can report, from the command line too; the same account counts once.
    auth = ["--account", network.buyers[3].address, "--password-file", str(network.password_file)]
    for _ in range(2):
        filed = mercato(
            network, "moderation", "report", str(model_id), "other", *auth,
            data_dir=network.buyer_dir,
        )  # fmt: skip
        assert filed.returncode == 0, filed.stderr
        assert f"Model {model_id}: reported (other)" in filed.stdout
    missing = mercato(
        network, "moderation", "report", "999999", "malware", *auth, data_dir=network.buyer_dir
    )
    assert missing.returncode == 61 and "does not exist" in missing.stderr

    def counted() -> dict[str, Any] | None:
        answer = httpx.get(f"{b}/v1/models/{model_id}/reports")
        body: dict[str, Any] = answer.json()
        return body if answer.status_code == 200 and body["reporters"] == 3 else None

    reports = until(counted, "node B to index the reports")
    assert reports["license_holders"] == 2
    assert reports["by_reason"] == {"malware": 2, "other": 1}
    assert len(reports["items"]) == 4
    holders_only = httpx.get(
        f"{b}/v1/models/{model_id}/reports", params={"license_holders": "true"}
    ).json()
    assert {r["reporter"] for r in holders_only["items"]} == {a.address for a in holders}
    by_reason = httpx.get(f"{b}/v1/models/{model_id}/reports", params={"reason": 5}).json()
    assert [r["reason"] for r in by_reason["items"]] == ["other", "other"]
    page = httpx.get(f"{b}/models/{model_id}")
    assert "Reported on-chain by 3 accounts (2 holding a license)" in page.text

    # The threshold counts distinct license holders only, from node B's own index.
    index = Index.open(data_dir=network.buyer_dir)
    lists = NodeDenylists(tmp_path)
    over = ModerationPolicy(lists, index, report_threshold=2).check_model(model_id)
    assert over is not None and over.reason == "reported by 2 license holders"
    assert ModerationPolicy(lists, index, report_threshold=3).check_model(model_id) is None
    assert ModerationPolicy(lists, index, report_threshold=0).check_model(model_id) is None
    # An operator's allow rule wins over the reports; forgetting it lets them decide.
    lists.allow(str(model_id))
    assert ModerationPolicy(lists, index, report_threshold=2).check_model(model_id) is None
    lists.forget(str(model_id))
    assert ModerationPolicy(lists, index, report_threshold=2).check_model(model_id) is not None
    index.engine.dispose()
