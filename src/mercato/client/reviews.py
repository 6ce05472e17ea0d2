# SPDX-License-Identifier: AGPL-3.0-only
"""`market.reviews`: reviews by license holders, evaluations by anyone, and the history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from multiformats import CID

from mercato.client.artifacts import cid_digest, cid_from_digest
from mercato.errors import LicenseRequiredError

if TYPE_CHECKING:
    from mercato.client.market import Market

SCORE_SCALE = 1_000_000  # evaluation scores are fixed-point with 6 decimals on-chain


@dataclass(frozen=True)
class Review:
    reviewer: str
    rating: int
    text_cid: CID | None
    block: int


@dataclass(frozen=True)
class Evaluation:
    author: str
    version: int
    dataset_cid: CID
    metric: str
    score: float
    block: int


@dataclass(frozen=True)
class History:
    """A model's performance history: current reviews and every attested evaluation."""

    reviews: list[Review]
    evaluations: list[Evaluation]

    @property
    def average_rating(self) -> float | None:
        if not self.reviews:
            return None
        return sum(r.rating for r in self.reviews) / len(self.reviews)


class ReviewsAPI:
    def __init__(self, market: Market) -> None:
        self._market = market

    def review(self, model_id: int, rating: int, text_cid: CID | None = None) -> None:
        """Reviews a model, or updates the account's review of it.

        Args:
            model_id: The model.
            rating: 1 (worst) to 5 (best).
            text_cid: The CID of the review text in the store, if any.

        Returns:
            Nothing; the reviews contract logs `Reviewed`.

        Raises:
            NoAccountError: The market is read-only.
            LicenseRequiredError: Only license holders may review.
            NoGasError: The account holds no native currency to pay for the transaction.
            ContractRevertError: The rating is out of range.
        """
        account = self._market.require_account("review a model")
        if not self._market.contracts.marketplace.has_license(account.address, model_id):
            raise LicenseRequiredError(model_id, account.address)
        digest = cid_digest(text_cid) if text_cid is not None else bytes(32)
        self._market.require_signer("review a model")
        self._market.contracts.reviews.review(model_id, rating, digest)

    def attest(
        self, model_id: int, version: int, dataset_cid: CID, metric: str, score: float
    ) -> None:
        """Records an evaluation of a model version, authored by the account.

        Args:
            model_id: The model.
            version: The evaluated version.
            dataset_cid: The CID of the evaluation dataset.
            metric: The metric's name, at most 32 bytes (e.g. "accuracy").
            score: The score; kept on-chain with 6 decimals.

        Returns:
            Nothing; the reviews contract logs `EvaluationAttested`.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency to pay for the transaction.
            ContractRevertError: The version does not exist.
        """
        self._market.require_signer("attest an evaluation")
        self._market.contracts.reviews.attest(
            model_id, version, cid_digest(dataset_cid), metric, round(score * SCORE_SCALE)
        )

    def history(self, model_id: int) -> History:
        """The model's performance history.

        Args:
            model_id: The model.

        Returns:
            Each reviewer's latest review and every evaluation, oldest first.

        Raises:
            ChainError: The chain's logs cannot be read.
        """
        contract = self._market.contracts.reviews
        latest: dict[str, Review] = {}
        for log in self._market.logs(contract, "Reviewed", model_id=model_id):
            args = log["args"]
            digest = bytes(args["text_cid_digest"])
            latest[args["reviewer"]] = Review(
                reviewer=args["reviewer"],
                rating=int(args["rating"]),
                text_cid=cid_from_digest(digest) if any(digest) else None,
                block=int(log["blockNumber"]),
            )
        evaluations = [
            Evaluation(
                author=log["args"]["author"],
                version=int(log["args"]["version"]),
                dataset_cid=cid_from_digest(log["args"]["dataset_cid_digest"]),
                metric=bytes(log["args"]["metric"]).rstrip(b"\0").decode(errors="replace"),
                score=int(log["args"]["score"]) / SCORE_SCALE,
                block=int(log["blockNumber"]),
            )
            for log in self._market.logs(contract, "EvaluationAttested", model_id=model_id)
        ]
        return History(list(latest.values()), evaluations)
