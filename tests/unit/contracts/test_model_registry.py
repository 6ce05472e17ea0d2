# SPDX-License-Identifier: AGPL-3.0-only
"""The model registry: publishing, versions, lineage, provider URLs."""

from __future__ import annotations

from typing import Any

import boa
import pytest
from eth_utils import keccak

from tests.unit.contracts.chain import digests, events, only_event, reverts

ZERO = "0x0000000000000000000000000000000000000000"
EMPTY = bytes(32)


def _publish(registry: Any, account: str, seed: int, parents=(), shares=()) -> int:
    with boa.env.prank(account):
        return int(registry.publish(*digests(seed), list(parents), list(shares)))


def test_constants(registry: Any, marketplace: Any) -> None:
    assert registry.MAX_PARENTS() == 3
    assert registry.MAX_ROYALTY_BPS() == 5_000
    assert registry.name() == "Mercato Model"
    assert registry.symbol() == "MCTM"
    assert registry.PUBLISHER() == marketplace.address


def test_publish_succeeds(registry: Any, alice: str) -> None:
    artifact, plaintext, manifest = digests(7)
    with boa.env.prank(alice):
        model_id = registry.publish(artifact, plaintext, manifest, [], [])
    transfer = only_event(registry, "Transfer")
    added = only_event(registry, "VersionAdded")
    assert events(registry, "LineageRecorded") == []
    assert model_id == 1
    assert (transfer.sender, transfer.receiver, transfer.token_id) == (ZERO, alice, 1)
    assert (added.model_id, added.version) == (1, 1)
    assert (added.artifact_cid_digest, added.plaintext_sha256, added.manifest_cid_digest) == (
        artifact,
        plaintext,
        manifest,
    )
    assert registry.ownerOf(1) == alice
    assert registry.balanceOf(alice) == 1
    assert registry.total_models() == 1
    assert registry.version_count(1) == 1
    assert registry.lineage(1) == ([], [])


def test_model_ids_count_up(registry: Any, alice: str, bob: str) -> None:
    assert [_publish(registry, a, i) for i, a in enumerate((alice, bob, alice))] == [1, 2, 3]
    assert registry.total_models() == 3
    assert registry.balanceOf(alice) == 2


def test_version_commitment_is_keccak_of_the_three_digests(registry: Any, alice: str) -> None:
    model_id = _publish(registry, alice, 3)
    assert registry.version_commitment(model_id, 1) == keccak(b"".join(digests(3)))
    assert registry.version_commitment(model_id, 2) == EMPTY
    assert registry.version_commitment(99, 1) == EMPTY


@pytest.mark.parametrize(
    ("position", "reason"),
    [
        (0, "model_registry: artifact CID digest is empty"),
        (1, "model_registry: plaintext sha256 is empty"),
        (2, "model_registry: manifest CID digest is empty"),
    ],
)
def test_publish_empty_digest(registry: Any, alice: str, position: int, reason: str) -> None:
    values = list(digests(1))
    values[position] = EMPTY
    with boa.env.prank(alice), reverts(reason):
        registry.publish(*values, [], [])
    assert registry.total_models() == 0


def test_publish_for_succeeds_for_the_publisher(registry: Any, marketplace: Any, bob: str) -> None:
    with boa.env.prank(marketplace.address):
        model_id = registry.publish_for(bob, *digests(1), [], [], EMPTY)
    transfer = only_event(registry, "Transfer")
    assert (transfer.sender, transfer.receiver, transfer.token_id) == (ZERO, bob, model_id)
    assert only_event(registry, "VersionAdded").model_id == model_id
    assert registry.ownerOf(model_id) == bob


def test_publish_for_to_the_zero_address(registry: Any, marketplace: Any) -> None:
    with boa.env.prank(marketplace.address), reverts("erc721: mint to the zero address"):
        registry.publish_for(ZERO, *digests(1), [], [], EMPTY)


def test_publish_for_by_non_publisher(registry: Any, alice: str, bob: str) -> None:
    with boa.env.prank(alice), reverts("model_registry: caller is not the publisher"):
        registry.publish_for(bob, *digests(1), [], [], EMPTY)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_lineage_packs_and_unpacks(registry: Any, alice: str, bob: str, count: int) -> None:
    owners = [alice, bob, alice]
    parents = [_publish(registry, owners[i], i) for i in range(3)][:count]
    shares = [1_234, 5, 3_000 - 1_239][:count]
    # Reverse the order so the lineage is not just the ids in ascending order.
    parents, shares = parents[::-1], shares[::-1]
    with boa.env.prank(bob):
        child = registry.publish(*digests(9), parents, shares)
    recorded = only_event(registry, "LineageRecorded")
    assert (recorded.model_id, recorded.parents, recorded.royalty_bps) == (child, parents, shares)
    assert registry.lineage(child) == (parents, shares)
    owner, versions, parent_owners, payout_shares = registry.payout_info(child)
    assert (owner, versions) == (bob, 1)
    expected_owners = [owners[p - 1] for p in parents]
    assert list(parent_owners) == expected_owners + [ZERO] * (3 - count)
    assert list(payout_shares) == shares + [0] * (3 - count)


def test_lineage_royalty_at_the_cap_succeeds(registry: Any, alice: str) -> None:
    parents = [_publish(registry, alice, i) for i in range(3)]
    child = _publish(registry, alice, 9, parents, [2_500, 2_000, 500])
    assert registry.lineage(child) == (parents, [2_500, 2_000, 500])


def test_lineage_zero_shares_are_kept(registry: Any, alice: str) -> None:
    # A parent may be credited with no royalty; it still belongs to the lineage.
    parents = [_publish(registry, alice, i) for i in range(3)]
    child = _publish(registry, alice, 9, parents, [5_000, 0, 0])
    assert registry.lineage(child) == (parents, [5_000, 0, 0])
    _owner, _versions, _parent_owners, shares = registry.payout_info(child)
    assert list(shares) == [5_000, 0, 0]


def test_lineage_length_mismatch(registry: Any, alice: str) -> None:
    parent = _publish(registry, alice, 1)
    with (
        boa.env.prank(alice),
        reverts("model_registry: parents and royalty shares differ in length"),
    ):
        registry.publish(*digests(2), [parent], [100, 100])


def test_lineage_missing_parent(registry: Any, alice: str) -> None:
    parent = _publish(registry, alice, 1)
    with boa.env.prank(alice), reverts("model_registry: parent model does not exist"):
        registry.publish(*digests(2), [parent, parent + 1], [100, 100])


def test_lineage_parent_zero_does_not_exist(registry: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("model_registry: parent model does not exist"):
        registry.publish(*digests(2), [0], [100])


def test_lineage_duplicate_parent(registry: Any, alice: str) -> None:
    first = _publish(registry, alice, 1)
    second = _publish(registry, alice, 2)
    with boa.env.prank(alice), reverts("model_registry: parent listed twice"):
        registry.publish(*digests(3), [first, second, first], [100, 100, 100])


def test_lineage_royalty_over_half(registry: Any, alice: str) -> None:
    first = _publish(registry, alice, 1)
    second = _publish(registry, alice, 2)
    with boa.env.prank(alice), reverts("model_registry: royalty shares exceed 50%"):
        registry.publish(*digests(3), [first, second], [2_500, 2_501])
    assert registry.total_models() == 2


def test_lineage_follows_parent_transfers_in_payout_info(
    registry: Any, alice: str, bob: str, carol: str
) -> None:
    parent = _publish(registry, alice, 1)
    child = _publish(registry, bob, 2, [parent], [1_000])
    with boa.env.prank(alice):
        registry.transferFrom(alice, carol, parent)
    _owner, _versions, parent_owners, _shares = registry.payout_info(child)
    assert parent_owners[0] == carol


def test_payout_info_counts_versions(registry: Any, model: int, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        registry.add_version(model, *digests(20))
        registry.add_version(model, *digests(21))
        registry.transferFrom(alice, bob, model)  # the count shares the owner's slot
    owner, versions, _parent_owners, _shares = registry.payout_info(model)
    assert (owner, versions) == (bob, 3)


def test_payout_info_of_missing_model(registry: Any) -> None:
    with reverts("erc721: token does not exist"):
        registry.payout_info(1)


def test_add_version_succeeds(registry: Any, model: int, alice: str) -> None:
    artifact, plaintext, manifest = digests(20)
    with boa.env.prank(alice):
        version = registry.add_version(model, artifact, plaintext, manifest)
    added = only_event(registry, "VersionAdded")
    assert version == 2
    assert (added.model_id, added.version) == (model, 2)
    assert (added.artifact_cid_digest, added.plaintext_sha256, added.manifest_cid_digest) == (
        artifact,
        plaintext,
        manifest,
    )
    assert registry.version_count(model) == 2
    # The first version is untouched.
    assert registry.version_commitment(model, 1) == keccak(b"".join(digests(1)))
    assert registry.version_commitment(model, 2) == keccak(artifact + plaintext + manifest)
    # The version count lives beside the owner: ownership is unchanged.
    assert registry.ownerOf(model) == alice


def test_version_count_survives_transfer(registry: Any, model: int, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        registry.add_version(model, *digests(5))
        registry.transferFrom(alice, bob, model)
    assert registry.version_count(model) == 2
    with boa.env.prank(bob):
        assert registry.add_version(model, *digests(6)) == 3


def test_add_version_too_many_versions(registry: Any, model: int, alice: str) -> None:
    # The version count is the 32-bit aux beside the owner in erc721_lean's
    # `_owner_data`, the registry's first storage slot (a HashMap: keccak(slot ‖ key)).
    slot = int.from_bytes(keccak((0).to_bytes(32, "big") + model.to_bytes(32, "big")), "big")
    owner_data = boa.env.get_storage(registry.address, slot)
    assert owner_data == int(alice, 16) | (1 << 160)  # found the slot: alice, one version
    boa.env.set_storage(registry.address, slot, int(alice, 16) | ((2**32 - 1) << 160))
    assert registry.version_count(model) == 2**32 - 1
    with boa.env.prank(alice), reverts("model_registry: too many versions"):
        registry.add_version(model, *digests(5))


def test_add_version_by_non_owner(registry: Any, model: int, bob: str) -> None:
    with boa.env.prank(bob), reverts("model_registry: caller is not the model owner"):
        registry.add_version(model, *digests(5))


def test_add_version_of_missing_model(registry: Any, alice: str) -> None:
    with boa.env.prank(alice), reverts("erc721: token does not exist"):
        registry.add_version(5, *digests(5))


@pytest.mark.parametrize(
    ("position", "reason"),
    [
        (0, "model_registry: artifact CID digest is empty"),
        (1, "model_registry: plaintext sha256 is empty"),
        (2, "model_registry: manifest CID digest is empty"),
    ],
)
def test_add_version_empty_digest(
    registry: Any, model: int, alice: str, position: int, reason: str
) -> None:
    values = list(digests(5))
    values[position] = EMPTY
    with boa.env.prank(alice), reverts(reason):
        registry.add_version(model, *values)
    assert registry.version_count(model) == 1


def test_deprecate_version_succeeds(registry: Any, model: int, alice: str) -> None:
    with boa.env.prank(alice):
        registry.deprecate_version(model, 1)
    deprecated = only_event(registry, "VersionDeprecated")
    assert (deprecated.model_id, deprecated.version) == (model, 1)
    assert registry.is_deprecated(model, 1)
    # Deprecated, never rewritten.
    assert registry.version_commitment(model, 1) == keccak(b"".join(digests(1)))


def test_deprecate_version_twice(registry: Any, model: int, alice: str) -> None:
    with boa.env.prank(alice):
        registry.deprecate_version(model, 1)
    with boa.env.prank(alice), reverts("model_registry: version already deprecated"):
        registry.deprecate_version(model, 1)


@pytest.mark.parametrize("version", [0, 2])
def test_deprecate_missing_version(registry: Any, model: int, alice: str, version: int) -> None:
    with boa.env.prank(alice), reverts("model_registry: version does not exist"):
        registry.deprecate_version(model, version)


def test_deprecate_version_by_non_owner(registry: Any, model: int, bob: str) -> None:
    with boa.env.prank(bob), reverts("model_registry: caller is not the model owner"):
        registry.deprecate_version(model, 1)
    assert not registry.is_deprecated(model, 1)


def test_set_provider_succeeds(registry: Any, model: int, alice: str, bob: str) -> None:
    url = "https://node.example/" + "x" * 235  # 256 characters, the maximum
    with boa.env.prank(alice):
        registry.set_provider(url)
    provider = only_event(registry, "ProviderSet")
    assert (provider.account, provider.url) == (alice, url)
    assert registry.provider_url(alice) == url
    assert registry.provider_of(model) == url
    # The provider follows the model's owner.
    with boa.env.prank(alice):
        registry.transferFrom(alice, bob, model)
    assert registry.provider_of(model) == ""


def test_set_provider_clears(registry: Any, alice: str) -> None:
    with boa.env.prank(alice):
        registry.set_provider("http://127.0.0.1:8000")
        registry.set_provider("")
    assert only_event(registry, "ProviderSet").url == ""
    assert registry.provider_url(alice) == ""


def test_provider_of_missing_model(registry: Any) -> None:
    with reverts("erc721: token does not exist"):
        registry.provider_of(3)
