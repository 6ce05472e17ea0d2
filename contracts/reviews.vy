# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Mercato reviews and evaluations: a model's performance history
@custom:contract-name reviews
@notice Holders of a license review a model: one review per account and
        model, rating 1-5 plus the CID digest of the review text, updatable.
        Anyone attests an evaluation of a model version (dataset CID digest,
        metric id, score) under their own address. Only ratings are kept in
        storage (to tell a new review from an update); everything else lives in
        the events the index reads.
"""

from interfaces import IMarketplace
from interfaces import IModelRegistry


event Reviewed:
    model_id: indexed(uint256)
    reviewer: indexed(address)
    rating: uint256
    text_cid_digest: bytes32
    updated: bool


event EvaluationAttested:
    model_id: indexed(uint256)
    author: indexed(address)
    version: uint256
    dataset_cid_digest: bytes32
    metric: bytes32
    score: int256


MARKETPLACE: public(immutable(address))
REGISTRY: public(immutable(address))

rating_of: public(HashMap[uint256, HashMap[address, uint256]])


@deploy
def __init__(marketplace: address, registry: address):
    """
    @param marketplace The marketplace that answers `has_license`.
    @param registry The model registry.
    """
    MARKETPLACE = marketplace
    REGISTRY = registry


@external
def review(model_id: uint256, rating: uint256, text_cid_digest: bytes32):
    """
    @notice Reviews a model, or updates the caller's earlier review of it.
    @dev Only accounts holding a current license may review, and never the model's
         owner at the time of the review (a former owner who holds a license may).
    @custom:security An owner can still review through another account it bought a
                     license with; that costs it the price, less what comes back to it.
    @param model_id The model.
    @param rating 1 (worst) to 5 (best).
    @param text_cid_digest The sha256 digest inside the review text's CID (zero for none).
    """
    assert rating >= 1 and rating <= 5, "reviews: rating must be between 1 and 5"
    assert staticcall IModelRegistry(REGISTRY).ownerOf(model_id) != msg.sender, (
        "reviews: the model's owner cannot review it"
    )
    assert staticcall IMarketplace(MARKETPLACE).has_license(msg.sender, model_id), (
        "reviews: only license holders can review this model"
    )
    updated: bool = self.rating_of[model_id][msg.sender] != 0
    self.rating_of[model_id][msg.sender] = rating
    log Reviewed(model_id=model_id, reviewer=msg.sender, rating=rating, text_cid_digest=text_cid_digest, updated=updated)


@external
def attest(model_id: uint256, version: uint256, dataset_cid_digest: bytes32, metric: bytes32, score: int256):
    """
    @notice Records an evaluation of a model version, authored by the caller.
    @param model_id The model.
    @param version The evaluated version; it must exist.
    @param dataset_cid_digest The sha256 digest inside the evaluation dataset's CID.
    @param metric The metric's id, e.g. the UTF-8 bytes of "accuracy", right-padded.
    @param score The score as a fixed-point number with 6 decimals (0.93 -> 930000).
    """
    assert version >= 1 and version <= staticcall IModelRegistry(REGISTRY).version_count(model_id), (
        "reviews: version does not exist"
    )
    assert metric != empty(bytes32), "reviews: metric is empty"
    log EvaluationAttested(
        model_id=model_id,
        author=msg.sender,
        version=version,
        dataset_cid_digest=dataset_cid_digest,
        metric=metric,
        score=score,
    )
