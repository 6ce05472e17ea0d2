# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Mercato reports: anyone flags a model for node operators to weigh
@custom:contract-name reports
@notice Any account files a report on a model with a reason code and the CID
        digest of its evidence. The contract keeps nothing in storage: a report
        is an event, marked with whether the reporter held a license of the model
        when filing, so each node's index counts reports and its operator decides
        what, if anything, their node stops serving. No report removes a model
        from the chain or from any node.
"""

from interfaces import IMarketplace
from interfaces import IModelRegistry


event Reported:
    model_id: indexed(uint256)
    reporter: indexed(address)
    reason_code: uint256
    evidence_cid_digest: bytes32
    license_holder: bool


# Reason codes; 0 is not a reason, so an all-zero call is refused.
REASON_ILLEGAL_CONTENT: public(constant(uint256)) = 1
REASON_MALWARE: public(constant(uint256)) = 2
REASON_LICENSE_VIOLATION: public(constant(uint256)) = 3
REASON_PERSONAL_DATA: public(constant(uint256)) = 4
REASON_OTHER: public(constant(uint256)) = 5

MARKETPLACE: public(immutable(address))
REGISTRY: public(immutable(address))


@deploy
def __init__(marketplace: address, registry: address):
    """
    @param marketplace The marketplace that answers `has_license`.
    @param registry The model registry.
    """
    MARKETPLACE = marketplace
    REGISTRY = registry


@external
def report(model_id: uint256, reason_code: uint256, evidence_cid_digest: bytes32):
    """
    @notice Files a report on a model.
    @dev Nothing is stored, so the same account may report a model again; an index
         counts distinct reporters.
    @custom:security Reports cost only gas, so any count of them can be forged with
                     fresh accounts; `license_holder` is what a node may weigh,
                     since a license costs the model's price.
    @param model_id The model; it must exist.
    @param reason_code 1 illegal content, 2 malware, 3 license violation,
           4 personal data, 5 other.
    @param evidence_cid_digest The sha256 digest inside the evidence's CID (zero for none).
    """
    assert reason_code >= REASON_ILLEGAL_CONTENT and reason_code <= REASON_OTHER, (
        "reports: unknown reason code"
    )
    assert staticcall IModelRegistry(REGISTRY).version_count(model_id) != 0, (
        "reports: model does not exist"
    )
    holder: bool = staticcall IMarketplace(MARKETPLACE).has_license(msg.sender, model_id)
    log Reported(
        model_id=model_id,
        reporter=msg.sender,
        reason_code=reason_code,
        evidence_cid_digest=evidence_cid_digest,
        license_holder=holder,
    )
