# SPDX-License-Identifier: AGPL-3.0-only
"""The node's moderation decisions from its lists, its index and reports, on SQLite."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import to_checksum_address
from multiformats import CID
from sqlalchemy import insert

from mercato.index import Index
from mercato.index import schema as s
from mercato.moderation.lists import NodeDenylists
from mercato.moderation.policy import ModerationPolicy

# The index stores addresses checksummed, as events decode them.
CREATOR = to_checksum_address("0x" + "ab" * 20)
OTHER = to_checksum_address("0x" + "cd" * 20)
HOLDER = to_checksum_address("0x" + "11" * 20)


def _digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _cid(seed: str) -> CID:
    return CID("base58btc", 0, "dag-pb", ("sha2-256", bytes.fromhex(_digest(seed))))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    opened = Index.open(data_dir=tmp_path)
    models = [(1, CREATOR), (2, CREATOR), (3, OTHER)]
    with opened.engine.begin() as conn:
        for model_id, creator in models:
            conn.execute(
                insert(s.Model).values(
                    model_id=model_id, creator=creator, owner=creator, created_block=1
                )
            )
            conn.execute(
                insert(s.Version).values(
                    model_id=model_id,
                    version=1,
                    artifact_cid_digest=_digest(f"artifact{model_id}"),
                    plaintext_sha256=_digest("p"),
                    manifest_cid_digest=_digest(f"manifest{model_id}"),
                    block_number=1,
                    log_index=0,
                    tx_hash="0x" + "00" * 32,
                )
            )
        for i, (reporter, holder) in enumerate([(HOLDER, True), (OTHER, False), (HOLDER, True)]):
            conn.execute(
                insert(s.Report).values(
                    model_id=3,
                    reporter=reporter,
                    reason_code=2,
                    evidence_cid_digest="00" * 32,
                    license_holder=holder,
                    block_number=2,
                    log_index=i,
                )
            )
    yield opened
    opened.engine.dispose()


@pytest.fixture
def lists(tmp_path: Path) -> NodeDenylists:
    return NodeDenylists(tmp_path / "data")


def test_creator_rule_denies_every_model_the_creator_minted(
    lists: NodeDenylists, index: Index
) -> None:
    lists.deny(CREATOR.lower(), "spam")
    policy = ModerationPolicy(lists, index)
    assert policy.denied_ids() == {1, 2}
    decision = policy.check_model(2)
    assert decision is not None and decision.reason == "spam"
    assert policy.check_model(3) is None


def test_a_cid_rule_denies_the_model_whose_version_names_it(
    lists: NodeDenylists, index: Index
) -> None:
    lists.deny(str(_cid("manifest3")), "personal data")
    policy = ModerationPolicy(lists, index, models_naming=lambda cid: [3])
    assert policy.denied_ids() == {3}
    assert policy.check_model(3) is not None
    # The model's other CID is refused through the model naming it.
    decision = policy.check_cid(_cid("artifact3"))
    assert decision is not None and decision.reason == "personal data"


def test_reports_count_distinct_license_holders(lists: NodeDenylists, index: Index) -> None:
    # Model 3 has three reports: two by the same license holder, one by a non-holder.
    assert ModerationPolicy(lists, index, report_threshold=1).denied_ids() == {3}
    assert ModerationPolicy(lists, index, report_threshold=2).denied_ids() == frozenset()


def test_the_denied_set_follows_changes_to_the_lists(lists: NodeDenylists, index: Index) -> None:
    policy = ModerationPolicy(lists, index)
    assert policy.denied_ids() == frozenset()
    lists.deny("3")
    assert policy.denied_ids() == {3}
    lists.allow("3")
    assert policy.denied_ids() == frozenset()


def test_an_allow_rule_wins_over_a_creator_rule_for_one_model(
    lists: NodeDenylists, index: Index
) -> None:
    lists.deny(CREATOR)
    lists.allow("2")
    assert ModerationPolicy(lists, index).denied_ids() == {1}


def test_without_rules_or_reports_a_cid_costs_no_model_lookup(
    lists: NodeDenylists, index: Index
) -> None:
    def refuse(_cid: CID) -> list[int]:
        raise AssertionError("looked up the models naming a CID with nothing to deny")

    assert ModerationPolicy(lists, index, models_naming=refuse).check_cid(_cid("x")) is None
