# SPDX-License-Identifier: AGPL-3.0-only
"""`market.federation` on a real Anvil: a task from creation to claims, its model
published through the revenue splitter and sold, the sale delivered by the coordinator
node's seller agent and paid to the contributors by share; a private task's drop-out
forfeiting its stake to the seats that completed every round; refunds after a cancel
and an under-subscribed abort. No training runs here (that is `mercato.federation`): rounds
commit CIDs of small blocks."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from mercato.agent import SellerAgent
from mercato.chain.anvil import AnvilSupervisor, dev_accounts
from mercato.chain.contracts import LicenseState, TaskStatus, VersionDigests
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.client import Market
from mercato.client.artifacts import cid_digest
from mercato.client.federation import raw_cid
from mercato.client.provider import ProviderService
from mercato.config import Settings
from mercato.errors import (
    ContractRevertError,
    FederationInputError,
    FederationNotDeployedError,
    FederationTaskNotFoundError,
    NodeKeyTakenError,
)
from mercato.federation.privacy import CompletedEveryRoundScorer
from mercato.federation.shares import RoundContribution
from mercato.models.package import ModelPackage
from mercato.models.runtime import TryPool
from mercato.models.samples import build_samples

TOKEN = 10**18
REWARD = 90 * TOKEN
STAKE = 5 * TOKEN
PRICE = 10 * TOKEN
ROYALTY_BPS = 1_000
DAY = 86_400


@dataclass
class Chain:
    anvil: AnvilSupervisor
    w3: Web3
    deployment: Deployment
    accounts: list[LocalAccount]
    root: Path

    def market(self, name: str, account: LocalAccount | None = None) -> Market:
        """A market on a data directory of its own (one per node)."""
        settings = Settings(data_dir=self.root / name, rpc_url=self.anvil.rpc_url)
        return Market(settings, account=account, deployment=self.deployment)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def time_travel(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelPackage]:
    return build_samples(tmp_path_factory.mktemp("samples"), ["iris-logreg"])


@pytest.fixture
def chain(anvil: AnvilSupervisor, w3: Web3, tmp_path: Path) -> Chain:
    accounts = dev_accounts(10)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    return Chain(anvil, w3, deployment, accounts, tmp_path)


def _key(name: str) -> bytes:
    """A stand-in for the sha256 of a training node's public key."""
    return hashlib.sha256(f"node key of {name}".encode()).digest()


def _cid(text: str) -> str:
    return str(raw_cid(hashlib.sha256(text.encode()).digest()))


def _create(requester: Market, chain: Chain, **overrides: int) -> int:
    now = chain.now()
    terms = {
        "reward": REWARD,
        "stake": STAKE,
        "min_participants": 2,
        "max_participants": 3,
        "join_deadline": now + DAY,
        "finish_deadline": now + 7 * DAY,
        **overrides,
    }
    return requester.federation.create(_cid("spec"), **terms)  # type: ignore[arg-type]


def test_a_task_from_creation_to_a_delivered_and_shared_sale_of_its_model(
    chain: Chain, packages: dict[str, ModelPackage], tmp_path: Path
) -> None:
    parent_creator, requester_account, *owners = chain.accounts[1:6]
    buyer, late_joiner = chain.accounts[6], chain.accounts[7]
    parent = int(
        chain.market("parent", parent_creator)
        .models.publish(packages["iris-logreg"].root, price=PRICE)
        .model_id
    )
    # The requester's node coordinates (the default coordinator is the requester).
    requester = chain.market("requester", requester_account)
    token = requester.contracts.token
    assert token.allowance(requester_account.address, chain.deployment.federation or "") == 0
    task_id = _create(
        requester, chain, parent_model_id=parent, parent_royalty_bps=ROYALTY_BPS
    )  # no allowance: one transaction with a permit
    task = requester.federation.task(task_id)
    assert (task.status, task.reward, task.stake) == (TaskStatus.OPEN, REWARD, STAKE)
    assert (task.requester, task.coordinator) == (requester_account.address,) * 2
    assert str(task.spec_cid) == _cid("spec")
    assert (task.parent_model_id, task.parent_royalty_bps) == (parent, ROYALTY_BPS)

    markets = [chain.market(f"owner-{i}", a) for i, a in enumerate([*owners, late_joiner])]
    for i, market in enumerate(markets[:3]):
        if i == 1:  # one owner approved first; the others join with a permit
            market.contracts.token.approve(chain.deployment.federation or "", STAKE)
        assert market.federation.join(task_id, _key(f"owner-{i}")) == i
    assert markets[0].federation.join(task_id, _key("owner-0")) == 0  # already seated
    with pytest.raises(NodeKeyTakenError) as taken:
        markets[3].federation.join(task_id, _key("owner-1"))
    assert taken.value.owner == owners[1].address
    assert [
        (p.seat, p.account, p.node_key_hash) for p in requester.federation.participants(task_id)
    ] == [(i, owners[i].address, _key(f"owner-{i}")) for i in range(3)]

    requester.federation.commit_round(task_id, 1, _cid("model 1"), _cid("round 1"), {0, 1}, 0.8123)
    requester.federation.commit_round(task_id, 2, _cid("model 2"), _cid("round 2"), {1}, 0.9)
    rounds = requester.federation.rounds(task_id)
    assert [(r.round, str(r.model_cid), r.contributors, r.metric) for r in rounds] == [
        (1, _cid("model 1"), frozenset({0, 1}), 0.8123),
        (2, _cid("model 2"), frozenset({1}), 0.9),
    ]
    with pytest.raises(ContractRevertError) as late:
        markets[3].federation.join(task_id, _key("owner-3"))
    assert late.value.reason == "federation: training has started"

    # Seat 2 never contributed: a share for it is refused before anything is sent.
    with pytest.raises(FederationInputError):
        requester.federation.finalize(task_id, [5_000, 4_000, 1_000])
    requester.federation.finalize(task_id, [6_000, 4_000, 0])
    pool = REWARD + STAKE  # seat 2's stake goes to the others by share
    expected = [STAKE + pool * 6 // 10, STAKE + pool * 4 // 10, 0]
    assert [m.federation.claimable(task_id) for m in markets[:3]] == expected
    for market, amount in zip(markets[:2], expected, strict=False):
        assert market.federation.claim(task_id) == amount

    model_id = requester.federation.publish_result(
        task_id, packages["iris-logreg"].root, price=PRICE
    )
    task = requester.federation.task(task_id)
    assert task.status is TaskStatus.FINALIZED and task.result_model_id == model_id
    assert requester.contracts.registry.owner_of(model_id) == task.splitter
    assert requester.models.lineage(model_id) == [(parent, ROYALTY_BPS)]
    with pytest.raises(FederationInputError):
        requester.federation.publish_result(task_id, packages["iris-logreg"].root, price=PRICE)

    # A buyer's order is delivered by the requester's node acting as the splitter's agent.
    buyer_market = chain.market("buyer", buyer)
    buyer_market.orders.buy(model_id)
    node_dir = chain.root / "requester"
    report = SellerAgent([requester], node_dir).deliver_round()
    assert [(o.model_id, o.buyer) for o in report.delivered] == [(model_id, buyer.address)]
    assert buyer_market.orders.status(model_id).state is LicenseState.DELIVERED
    # The key checks out against the plaintext sha256 on-chain.
    chain.market("requester", buyer).orders.download(model_id, tmp_path / "download")
    assert (tmp_path / "download" / "README.md").exists()
    provider = ProviderService(requester, TryPool(workers=1), accounts=[requester_account.address])
    assert provider.package_for(model_id).root.is_dir()

    # The sale pays the parent its royalty and the contributors by share.
    royalty = PRICE * ROYALTY_BPS // 10_000
    assert requester.contracts.marketplace.credits(parent_creator.address) == royalty
    revenue = PRICE - royalty - 1  # the marketplace keeps one unit of a withdrawn credit
    assert markets[0].federation.releasable(task_id) == revenue * 6 // 10
    assert markets[0].federation.release(task_id) == revenue * 6 // 10
    assert requester.federation.release(task_id, owners[1].address) == revenue * 4 // 10
    assert markets[2].federation.releasable(task_id) == 0


def test_a_copycat_model_handed_to_the_splitter_gets_no_key(
    chain: Chain, packages: dict[str, ModelPackage]
) -> None:
    """Anyone may give the splitter a model that commits to the result's public digests;
    the coordinator's node never uses the result's key for it (its version was sent by
    the copycat, not by the agent the splitter named)."""
    requester_account, owner, copycat, buyer = chain.accounts[1:5]
    requester = chain.market("requester", requester_account)
    task_id = _create(requester, chain, min_participants=1, max_participants=1)
    chain.market("owner", owner).federation.join(task_id, _key("owner"))
    requester.federation.commit_round(task_id, 1, _cid("model"), _cid("round"), {0}, 0.5)
    requester.federation.finalize(task_id, [10_000])
    model_id = requester.federation.publish_result(
        task_id, packages["iris-logreg"].root, price=PRICE
    )
    splitter = requester.federation.task(task_id).splitter
    assert splitter is not None

    copier = chain.market("copycat", copycat)
    version = copier.models.version(model_id)
    digests = VersionDigests(
        cid_digest(version.artifact_cid), version.plaintext_sha256, cid_digest(version.manifest_cid)
    )
    fake = int(copier.contracts.marketplace.publish(digests, 1))
    copier.contracts.registry.transfer_from(copycat.address, splitter, fake)
    chain.market("buyer", buyer).orders.buy(fake)
    chain.market("buyer-2", chain.accounts[5]).orders.buy(model_id)

    report = SellerAgent([requester], chain.root / "requester").deliver_round()

    assert [o.model_id for o in report.delivered] == [model_id]
    assert [(o.model_id, reason) for o, reason in report.skipped] == [
        (fake, "content_key_not_bound")
    ]


def test_a_private_task_s_drop_out_forfeits_its_stake_to_the_seats_that_stayed(
    chain: Chain,
) -> None:
    """Private mode's shares (equal among the seats that completed every round, from
    the same records the rounds were committed with) posted on-chain: the seat that
    dropped out of round 2 is in round 1's bitmap but gets 0, claims nothing, and its
    stake is shared by the two others, whose claims add up to everything paid in."""
    requester_account, *owners = chain.accounts[1:5]
    requester = chain.market("requester", requester_account)
    token = requester.contracts.token
    federation = chain.deployment.federation or ""
    task_id = _create(requester, chain, min_participants=3, max_participants=3)
    markets = [chain.market(f"owner-{i}", a) for i, a in enumerate(owners)]
    start = [token.balance_of(a.address) for a in owners]
    for i, market in enumerate(markets):
        market.federation.join(task_id, _key(f"owner-{i}"))
    # Each seat's update weighs 1 in a private round; seat 2 left before round 2.
    records = [RoundContribution(1, {0: 1, 1: 1, 2: 1}), RoundContribution(2, {0: 1, 1: 1})]
    for record in records:
        requester.federation.commit_round(
            task_id,
            record.round,
            _cid(f"model {record.round}"),
            _cid(f"round {record.round}"),
            set(record.examples),
            0.5,
        )
    assert requester.federation.task(task_id).contributors == {0, 1, 2}
    shares = CompletedEveryRoundScorer().shares(3, records)
    assert shares == [5_000, 5_000, 0]
    requester.federation.finalize(task_id, shares)

    assert markets[2].federation.claimable(task_id) == 0
    with pytest.raises(ContractRevertError) as nothing:
        markets[2].federation.claim(task_id)
    assert nothing.value.reason == "federation: nothing to claim"
    pool = REWARD + STAKE  # the drop-out's stake joins the reward
    paid = [market.federation.claim(task_id) for market in markets[:2]]
    assert paid == [STAKE + pool // 2, STAKE + pool - pool // 2]
    assert sum(paid) == REWARD + 3 * STAKE
    assert [token.balance_of(a.address) for a in owners] == [
        start[0] + pool // 2,
        start[1] + pool - pool // 2,
        start[2] - STAKE,
    ]
    assert token.balance_of(federation) == 0


def test_cancelled_and_undersubscribed_tasks_refund_everyone(chain: Chain) -> None:
    requester_account, owner = chain.accounts[1:3]
    requester = chain.market("requester", requester_account)
    owner_market = chain.market("owner", owner)
    token = requester.contracts.token
    start = {a: token.balance_of(a.address) for a in (requester_account, owner)}

    cancelled = _create(requester, chain)
    owner_market.federation.join(cancelled, _key("owner"))
    requester.federation.cancel(cancelled)
    undersubscribed = _create(requester, chain)
    owner_market.federation.join(undersubscribed, _key("owner"))  # 1 of the 2 needed
    with pytest.raises(ContractRevertError) as early:
        owner_market.federation.abort(undersubscribed)
    assert early.value.reason == "federation: task can still finish"
    chain.time_travel(DAY + 1)
    owner_market.federation.abort(undersubscribed)

    for task_id in (cancelled, undersubscribed):
        assert requester.federation.claim(task_id) == REWARD
        assert owner_market.federation.claim(task_id) == STAKE
        assert requester.federation.task(task_id).status in (
            TaskStatus.CANCELLED,
            TaskStatus.ABORTED,
        )
    assert {a: token.balance_of(a.address) for a in start} == start
    assert token.balance_of(chain.deployment.federation or "") == 0


def test_bad_input_gets_typed_errors_and_sends_nothing(chain: Chain) -> None:
    requester_account = chain.accounts[1]
    requester = chain.market("requester", requester_account)
    nonce = chain.w3.eth.get_transaction_count(requester_account.address)
    with pytest.raises(FederationTaskNotFoundError):
        requester.federation.join(7, _key("x"))
    with pytest.raises(FederationInputError):
        _create(requester, chain, min_participants=3, max_participants=2)
    with pytest.raises(FederationInputError):
        _create(requester, chain, reward=2**96)
    with pytest.raises(FederationInputError):
        requester.federation.create(
            "not a cid",
            reward=1,
            stake=1,
            min_participants=1,
            max_participants=1,
            join_deadline=chain.now() + 10,
            finish_deadline=chain.now() + 20,
        )
    task_id = _create(requester, chain)
    with pytest.raises(FederationInputError):
        requester.federation.join(task_id, b"\x01" * 31)
    with pytest.raises(FederationInputError):
        requester.federation.commit_round(task_id, 1, _cid("m"), _cid("r"), {0}, 0.5)  # no seats
    assert chain.w3.eth.get_transaction_count(requester_account.address) == nonce + 1

    # A deployment recorded before federated training existed says how to get one.
    old = dataclasses.replace(chain.deployment, federation=None, revenue_splitter=None)
    settings = Settings(data_dir=chain.root / "old", rpc_url=chain.anvil.rpc_url)
    with pytest.raises(FederationNotDeployedError):
        Market(settings, account=requester_account, deployment=old).federation.task(1)
