# SPDX-License-Identifier: AGPL-3.0-only
"""Reviews by license holders and evaluations attested by anyone."""

from __future__ import annotations

from typing import Any

import boa
import pytest

from tests.unit.contracts.chain import WRAPPED_KEY, digests, only_event, reverts, terms

TEXT = b"\x42" * 32
DATASET = b"\x17" * 32
ACCURACY = b"accuracy".ljust(32, b"\x00")
DAY = 86_400


@pytest.fixture
def licensed(marketplace: Any, pending: int, alice: str, bob: str) -> int:
    """Bob holds a delivered, perpetual license of alice's model."""
    with boa.env.prank(alice):
        marketplace.deliver(pending, bob, 1, WRAPPED_KEY)
    return pending


def test_review_succeeds(reviews: Any, licensed: int, bob: str) -> None:
    with boa.env.prank(bob):
        reviews.review(licensed, 4, TEXT)
    event = only_event(reviews, "Reviewed")
    assert (event.model_id, event.reviewer, event.rating) == (licensed, bob, 4)
    assert (event.text_cid_digest, event.updated) == (TEXT, False)
    assert reviews.rating_of(licensed, bob) == 4


def test_review_update_is_flagged(reviews: Any, licensed: int, bob: str) -> None:
    with boa.env.prank(bob):
        reviews.review(licensed, 4, TEXT)
        reviews.review(licensed, 2, bytes(32))  # no text this time
    event = only_event(reviews, "Reviewed")
    assert (event.rating, event.text_cid_digest, event.updated) == (2, bytes(32), True)
    assert reviews.rating_of(licensed, bob) == 2


def test_review_by_pending_buyer(
    reviews: Any, marketplace: Any, licensed: int, bob: str, carol: str
) -> None:
    with boa.env.prank(bob):
        reviews.review(licensed, 5, TEXT)
    with boa.env.prank(carol):
        marketplace.purchase(licensed, 2**96 - 1, b"\x01" * 32)
    with boa.env.prank(carol), reverts("reviews: only license holders can review this model"):
        reviews.review(licensed, 1, TEXT)  # pending, not yet delivered


@pytest.mark.parametrize("rating", [1, 5])
def test_review_rating_bounds_accepted(reviews: Any, licensed: int, bob: str, rating: int) -> None:
    with boa.env.prank(bob):
        reviews.review(licensed, rating, TEXT)
    assert only_event(reviews, "Reviewed").rating == rating


@pytest.mark.parametrize("rating", [0, 6, 2**256 - 1])
def test_review_rating_out_of_bounds(reviews: Any, licensed: int, bob: str, rating: int) -> None:
    with boa.env.prank(bob), reverts("reviews: rating must be between 1 and 5"):
        reviews.review(licensed, rating, TEXT)


def test_review_by_non_licensee(reviews: Any, licensed: int, carol: str) -> None:
    with boa.env.prank(carol), reverts("reviews: only license holders can review this model"):
        reviews.review(licensed, 3, TEXT)
    assert reviews.rating_of(licensed, carol) == 0


def test_review_by_owner(
    reviews: Any, registry: Any, marketplace: Any, licensed: int, alice: str, bob: str
) -> None:
    with boa.env.prank(alice), reverts("reviews: the model's owner cannot review it"):
        reviews.review(licensed, 5, TEXT)
    # The owner at review time counts: bob's license does not let him rate the model
    # once he owns it, and alice, who sold it, may rate it once she holds a license.
    with boa.env.prank(alice):
        registry.transferFrom(alice, bob, licensed)
    with boa.env.prank(bob), reverts("reviews: the model's owner cannot review it"):
        reviews.review(licensed, 5, TEXT)
    with boa.env.prank(alice):
        marketplace.purchase(licensed, 2**96 - 1, b"\x02" * 32)
    with boa.env.prank(bob):
        marketplace.deliver(licensed, alice, 1, WRAPPED_KEY)
    with boa.env.prank(alice):
        reviews.review(licensed, 2, TEXT)
    assert reviews.rating_of(licensed, alice) == 2
    assert reviews.rating_of(licensed, bob) == 0


def test_review_of_a_missing_model(reviews: Any, bob: str) -> None:
    with boa.env.prank(bob), reverts("erc721: token does not exist"):
        reviews.review(99, 5, TEXT)


def test_review_after_license_expiry(reviews: Any, marketplace: Any, alice: str, bob: str) -> None:
    with boa.env.prank(alice):
        model_id = marketplace.publish(*digests(1), [], [], 0, DAY)
    with boa.env.prank(bob):
        marketplace.purchase(model_id, terms(0, DAY), bytes(32))
        reviews.review(model_id, 3, TEXT)  # a free license counts
    boa.env.time_travel(seconds=DAY)
    with boa.env.prank(bob), reverts("reviews: only license holders can review this model"):
        reviews.review(model_id, 1, TEXT)
    assert reviews.rating_of(model_id, bob) == 3


def test_attest_succeeds(reviews: Any, model: int, carol: str) -> None:
    with boa.env.prank(carol):  # anyone, licensed or not
        reviews.attest(model, 1, DATASET, ACCURACY, -930_000)
    event = only_event(reviews, "EvaluationAttested")
    assert (event.model_id, event.author, event.version) == (model, carol, 1)
    assert (event.dataset_cid_digest, event.metric, event.score) == (DATASET, ACCURACY, -930_000)


def test_attest_a_later_version(reviews: Any, registry: Any, model: int, alice: str) -> None:
    with boa.env.prank(alice):
        registry.add_version(model, *digests(9))
        reviews.attest(model, 2, DATASET, ACCURACY, 2**255 - 1)
    assert only_event(reviews, "EvaluationAttested").version == 2


@pytest.mark.parametrize(("model_id", "version"), [(1, 0), (1, 2), (2, 1)])
def test_attest_missing_version(
    reviews: Any, model: int, carol: str, model_id: int, version: int
) -> None:
    assert model == 1
    with boa.env.prank(carol), reverts("reviews: version does not exist"):
        reviews.attest(model_id, version, DATASET, ACCURACY, 1)


def test_attest_empty_metric(reviews: Any, model: int, carol: str) -> None:
    with boa.env.prank(carol), reverts("reviews: metric is empty"):
        reviews.attest(model, 1, DATASET, bytes(32), 1)
