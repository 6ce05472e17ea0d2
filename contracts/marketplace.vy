# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Mercato marketplace: listings, escrowed sales, licenses and payouts
@custom:contract-name marketplace
@notice A model's owner lists it with a price in the token (0 = free) and a
        license duration (0 = perpetual). `purchase` pulls the price into
        escrow and logs the buyer's X25519 public key. The owner's node (or
        the agent it delegated) answers with `deliver`, which logs the content
        key sealed to that public key and releases the escrow: each parent's
        royalty to the parent's owner, the protocol fee, the rest to the
        model's owner, all credited here and taken out with `withdraw`. When
        nothing is delivered before the deadline, `refund` returns every
        token to the buyer. Each purchase ends delivered or refunded, never both.

        One storage slot per (buyer, model) is both the order and the license:
            none -> pending (deadline) -> delivered (expiry) | refunded
        A later purchase of the same model reuses the slot once the license has
        expired or the purchase was refunded.

        A buyer commits to the listing it saw: the `terms` word of a purchase is
        laid out like the listing slot (see `purchase`), so an owner who changes
        the license duration (or anything else `set_listing` sets) between a
        buyer's signature and its mining makes the purchase revert instead of
        selling different terms. The word also carries the first 104 bits of the
        digest of the licence terms the buyer read (`TermsSet` logs the whole
        digest), so the owner cannot switch the licence text either.

        An owner (or its agent) that will not deliver, say because its node
        refuses to serve the model, `decline`s the purchase: the buyer gets the
        whole price back at once instead of waiting for the deadline.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable
from interfaces import IModelRegistry

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)


struct Delivery:
    model_id: uint256
    buyer: address
    version: uint256
    wrapped_key: Bytes[MAX_WRAPPED_KEY]


event Listed:
    model_id: indexed(uint256)
    price: uint256
    license_duration: uint256
    for_sale: bool
    fee_bps: uint256


event Purchased:
    model_id: indexed(uint256)
    buyer: indexed(address)
    price: uint256
    fee_bps: uint256
    buyer_key: bytes32


event LicenseGranted:
    model_id: indexed(uint256)
    buyer: indexed(address)
    expiry: uint256


event Delivered:
    model_id: indexed(uint256)
    buyer: indexed(address)
    version: uint256
    expiry: uint256
    wrapped_key: Bytes[MAX_WRAPPED_KEY]


event Refunded:
    model_id: indexed(uint256)
    buyer: indexed(address)
    amount: uint256


event TermsSet:
    model_id: indexed(uint256)
    terms_digest: bytes32


event Declined:
    model_id: indexed(uint256)
    buyer: indexed(address)
    reason_code: uint256


event Withdrawn:
    account: indexed(address)
    amount: uint256


event AgentSet:
    owner: indexed(address)
    agent: indexed(address)


event ProtocolFeeSet:
    fee_bps: uint256


# A libsodium sealed box of a 32-byte key is 80 bytes; room is left for a
# versioned envelope.
MAX_WRAPPED_KEY: constant(uint256) = 128
MAX_BATCH: constant(uint256) = 32
MAX_FEE_BPS: public(constant(uint256)) = 1_000
_BPS: constant(uint256) = 10_000
MAX_PRICE: public(constant(uint256)) = (1 << 96) - 1

STATE_NONE: constant(uint256) = 0
STATE_PENDING: constant(uint256) = 1
STATE_DELIVERED: constant(uint256) = 2
STATE_REFUNDED: constant(uint256) = 3

# Listing slot: price (bits 0-95) | license duration in seconds (96-127) | for sale (128)
# | protocol fee in basis points, fixed when the listing was set (136-151)
# | the first 104 bits of the licence terms digest (152-255).
# A buyer's terms word: the most it pays (0-95) | license duration (96-127) | fee bps
# (136-151) | terms digest's first 104 bits (152-255), the listing slot's layout (the
# for-sale bit 128 is not read).
# License slot: price paid (0-95) | deadline while pending, expiry once delivered
# (96-159; expiry 0 = perpetual) | state (160-167) | fee bps (168-183) | duration (184-215).
_PRICE_MASK: constant(uint256) = (1 << 96) - 1
_U64_MASK: constant(uint256) = (1 << 64) - 1
_U32_MASK: constant(uint256) = (1 << 32) - 1
_U16_MASK: constant(uint256) = (1 << 16) - 1
_U8_MASK: constant(uint256) = (1 << 8) - 1
_FOR_SALE_BIT: constant(uint256) = 1 << 32  # bit 128 of the listing, once shifted down by 96
_TERMS_SHIFT: constant(uint256) = 152
# Below bit 152 of a listing shifted down by 96: what the terms digest does not cover.
_BELOW_TERMS: constant(uint256) = (1 << 56) - 1

# X25519 public keys libsodium refuses to seal to: the low-order points of its
# `has_small_order` blocklist, read here as bytes32 (byte 0 first). libsodium ignores the
# top bit of byte 31, which is the lowest byte's 0x80 bit here, so keys are compared
# with that bit cleared. 0 and 1 (byte 0 = 0x01) are one test.
_KEY_TOP_BIT: constant(uint256) = 1 << 7
_KEY_ONE: constant(uint256) = 1 << 248
_KEY_ORDER_8_A: constant(bytes32) = 0xE0EB7A7C3B41B8AE1656E3FAF19FC46ADA098DEB9C32B1FD866205165F49B800
_KEY_ORDER_8_B: constant(bytes32) = 0x5F9C95BCA3508C24B1D0B1559C83EF5B04445CC4581C8E86D8224EDDD09F1157
_KEY_P_MINUS_1: constant(bytes32) = 0xECFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF7F
_KEY_P: constant(bytes32) = 0xEDFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF7F
_KEY_P_PLUS_1: constant(bytes32) = 0xEEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF7F

TOKEN: public(immutable(address))
REGISTRY: public(immutable(address))
DELIVERY_WINDOW: public(immutable(uint256))

protocol_fee_bps: public(uint256)
credits: public(HashMap[address, uint256])
agent_of: public(HashMap[address, address])
_listings: HashMap[uint256, uint256]
_licenses: HashMap[address, HashMap[uint256, uint256]]


@deploy
def __init__(token: address, registry: address, delivery_window: uint256):
    """
    @param token The ERC-20 (with permit) that prices and payments use.
    @param registry The model registry.
    @param delivery_window Seconds an owner has to deliver before the buyer may refund.
    """
    assert delivery_window > 0 and delivery_window <= _U32_MASK, "marketplace: delivery window out of range"
    ownable.__init__()
    TOKEN = token
    REGISTRY = registry
    DELIVERY_WINDOW = delivery_window


@external
def publish(
    artifact_cid_digest: bytes32,
    plaintext_sha256: bytes32,
    manifest_cid_digest: bytes32,
    parents: DynArray[uint256, 3],
    royalty_bps: DynArray[uint16, 3],
    price: uint256,
    license_duration: uint256,
    terms_digest: bytes32 = empty(bytes32),
    metadata_digest: bytes32 = empty(bytes32),
) -> uint256:
    """
    @notice Publishes a model (mint + first version in the registry) and lists it,
            in one transaction.
    @param artifact_cid_digest The sha256 digest inside the artifact's CID.
    @param plaintext_sha256 The sha256 of the decrypted artifact.
    @param manifest_cid_digest The sha256 digest inside the manifest's CID.
    @param parents Ids of the models this one was built on.
    @param royalty_bps Each parent's share of every sale, in basis points.
    @param price Price in token units; 0 makes the model free.
    @param license_duration License length in seconds; 0 means perpetual.
    @param terms_digest sha256 of the licence terms a buyer agrees to (the licence id
           and any custom text, canonically encoded); zero when the model states none.
    @param metadata_digest sha256 of the model's ERC-721 metadata JSON, the raw IPFS
           block `tokenURI` names; zero for none yet.
    @return uint256 The new model id.
    """
    model_id: uint256 = extcall IModelRegistry(REGISTRY).publish_for(
        msg.sender,
        artifact_cid_digest,
        plaintext_sha256,
        manifest_cid_digest,
        parents,
        royalty_bps,
        metadata_digest,
    )
    self._list(model_id, price, license_duration, True, terms_digest)
    return model_id


@external
def set_listing(
    model_id: uint256,
    price: uint256,
    license_duration: uint256,
    for_sale: bool,
    terms_digest: bytes32 = empty(bytes32),
    metadata_digest: bytes32 = empty(bytes32),
):
    """
    @notice Sets a model's price and license terms, or takes it off sale.
    @dev Model owner only. Pending purchases keep the terms they were made under.
    @param model_id The model.
    @param price Price in token units; 0 makes the model free.
    @param license_duration License length in seconds; 0 means perpetual.
    @param for_sale False stops new purchases.
    @param terms_digest sha256 of the licence terms from now on; zero for none.
    @param metadata_digest sha256 of the model's new ERC-721 metadata JSON (showing the
           new price), which the registry then names in `tokenURI`; zero keeps it.
    """
    assert staticcall IModelRegistry(REGISTRY).ownerOf(model_id) == msg.sender, (
        "marketplace: caller is not the model owner"
    )
    self._list(model_id, price, license_duration, for_sale, terms_digest)
    if metadata_digest != empty(bytes32):
        extcall IModelRegistry(REGISTRY).set_metadata_for(model_id, metadata_digest)


@external
def purchase(model_id: uint256, terms: uint256, buyer_key: bytes32):
    """
    @notice Buys a license: pays the price into escrow (paid models) or gets
            the license at once (free models).
    @dev The buyer must have allowed this contract to spend the price.
    @custom:security The buyer commits to every term `set_listing` can change, so an
                     owner cannot sell a shorter license (or under another fee) than
                     the one the buyer signed for. The terms travel packed in one word,
                     the listing slot's own layout: one comparison, no extra calldata.
                     The licence terms are compared on 104 bits of their digest: no
                     one finds other terms with a given prefix (2**104 work); an owner
                     who crafts two colliding texts in advance needs ~2**52 hashes, and
                     `TermsSet` then shows both full digests (see docs/contracts.md).
                     The model's owner is not refused here: that would cost a registry
                     call (~5,300 gas, over the sale's gas target), and such a purchase
                     only moves the owner's own tokens in a circle. The SDK refuses it.
    @param model_id The model.
    @param terms The listing the buyer agrees to: the most it pays (bits 0-95), so a
           price raised in between cannot take more; the license duration in seconds
           (bits 96-127), the protocol fee in basis points fixed in the listing
           (bits 136-151) and the first 104 bits of the licence terms digest the buyer
           read (bits 152-255), which must equal the listing's. Bit 128 is ignored.
    @param buyer_key The buyer's X25519 public key the content key will be sealed to;
           for a paid model, not one of the low-order points libsodium refuses.
    """
    self._purchase(model_id, terms, buyer_key)


@external
def purchase_with_permit(
    model_id: uint256,
    terms: uint256,
    buyer_key: bytes32,
    permit_amount: uint256,
    permit_deadline: uint256,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @notice `purchase` preceded by an EIP-2612 permit, so a first-time buyer
            needs one transaction and no approval.
    @dev If the permit was already used (someone copied it from the mempool),
         the purchase still goes ahead as long as the allowance it set is there.
    @param model_id The model.
    @param terms The listing the buyer agrees to, packed as for `purchase`.
    @param buyer_key The buyer's X25519 public key.
    @param permit_amount The allowance the buyer signed for this contract.
    @param permit_deadline The permit's deadline.
    @param v The permit signature's v.
    @param r The permit signature's r.
    @param s The permit signature's s.
    """
    # A failed permit is not fatal: the transfer below fails anyway if no allowance is there.
    permitted: bool = raw_call(
        TOKEN,
        abi_encode(
            msg.sender,
            self,
            permit_amount,
            permit_deadline,
            v,
            r,
            s,
            method_id=method_id("permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"),
        ),
        revert_on_failure=False,
    )
    self._purchase(model_id, terms, buyer_key)


@external
def deliver(model_id: uint256, buyer: address, version: uint256, wrapped_key: Bytes[MAX_WRAPPED_KEY]):
    """
    @notice Posts the content key sealed to the buyer's public key and releases the escrow.
    @dev Model owner or its agent only, before the purchase's deadline.
    @custom:security Whoever owns the model when the key is delivered is paid: a model
                     transferred while purchases are pending is delivered (and paid)
                     by its new owner or that owner's agent, or refunded.
    @param model_id The model.
    @param buyer The buyer of the pending purchase.
    @param version The model version the key decrypts; it must exist.
    @param wrapped_key The content key sealed to the buyer's X25519 key.
    """
    self._deliver(model_id, buyer, version, wrapped_key)


@external
def deliver_many(deliveries: DynArray[Delivery, MAX_BATCH]):
    """
    @notice `deliver` for several pending purchases in one transaction.
    @dev All or nothing: one failing delivery reverts the batch.
    @param deliveries The purchases to deliver.
    """
    for d: Delivery in deliveries:
        self._deliver(d.model_id, d.buyer, d.version, d.wrapped_key)


@external
def refund(model_id: uint256, buyer: address):
    """
    @notice Returns a pending purchase's escrow to its buyer once the delivery
            deadline has passed without a delivery.
    @dev Anyone may call it; the tokens always go to the buyer.
    @param model_id The model.
    @param buyer The buyer of the pending purchase.
    """
    slot: uint256 = self._licenses[buyer][model_id]
    assert self._state(slot) == STATE_PENDING, "marketplace: no pending purchase for this buyer and model"
    assert block.timestamp > self._time(slot), "marketplace: delivery deadline not reached"
    amount: uint256 = slot & _PRICE_MASK
    self._licenses[buyer][model_id] = (slot & ~(_U8_MASK << 160)) | (STATE_REFUNDED << 160)
    assert extcall IERC20(TOKEN).transfer(buyer, amount, default_return_value=True), (
        "marketplace: token transfer failed"
    )
    log Refunded(model_id=model_id, buyer=buyer, amount=amount)


@external
def decline(model_id: uint256, buyer: address, reason_code: uint256):
    """
    @notice Refuses a pending purchase and returns its whole price to the buyer at
            once, before the deadline, e.g. when the seller's node will not serve the
            model (moderation).
    @dev Model owner or its agent only.
    @custom:security The tokens can only go back to the buyer, so an owner or agent
                     that declines loses a sale and nothing else; it cannot decline a
                     delivered license or a refunded purchase.
    @param model_id The model.
    @param buyer The buyer of the pending purchase.
    @param reason_code Why, for the buyer and the index (Mercato's report reasons:
           1 illegal content, 2 malware, 3 licence violation, 4 personal data, 5 other;
           0 unspecified).
    """
    slot: uint256 = self._licenses[buyer][model_id]
    assert self._state(slot) == STATE_PENDING, "marketplace: no pending purchase for this buyer and model"
    owner: address = staticcall IModelRegistry(REGISTRY).ownerOf(model_id)
    assert msg.sender == owner or msg.sender == self.agent_of[owner], (
        "marketplace: caller is not the model owner or its agent"
    )
    amount: uint256 = slot & _PRICE_MASK
    self._licenses[buyer][model_id] = (slot & ~(_U8_MASK << 160)) | (STATE_REFUNDED << 160)
    assert extcall IERC20(TOKEN).transfer(buyer, amount, default_return_value=True), (
        "marketplace: token transfer failed"
    )
    log Refunded(model_id=model_id, buyer=buyer, amount=amount)
    log Declined(model_id=model_id, buyer=buyer, reason_code=reason_code)


@external
def withdraw() -> uint256:
    """
    @notice Sends the caller every token credited to it by sales, royalties and fees,
            but one base unit (10**-18 MCT), which stays credited to the caller.
    @custom:security Keeping the credit non-zero makes the next credit cost 5,000 gas
                     instead of 22,100 (a fresh slot); Uniswap v3 keeps its protocol-fee
                     slots non-zero the same way. The unit is never lost: it stays in
                     `credits` and leaves with the last withdrawal of a larger amount.
    @return uint256 The amount sent.
    """
    credited: uint256 = self.credits[msg.sender]
    assert credited > 1, "marketplace: nothing to withdraw"
    amount: uint256 = unsafe_sub(credited, 1)
    self.credits[msg.sender] = 1
    assert extcall IERC20(TOKEN).transfer(msg.sender, amount, default_return_value=True), (
        "marketplace: token transfer failed"
    )
    log Withdrawn(account=msg.sender, amount=amount)
    return amount


@external
def set_agent(agent: address):
    """
    @notice Lets `agent` deliver keys for every model the caller owns (the zero address revokes).
    @custom:security An agent can release escrow to the owner but never move tokens elsewhere.
    @param agent The delivering node's address.
    """
    self.agent_of[msg.sender] = agent
    log AgentSet(owner=msg.sender, agent=agent)


@external
def set_protocol_fee(fee_bps: uint256):
    """
    @notice Sets the protocol fee, in basis points, for listings set from now on.
    @dev Protocol owner only; capped at `MAX_FEE_BPS`.
    @custom:security A listing keeps the fee in force when its owner set it, so a fee
                     change never reaches a sale its seller did not list under (and a
                     purchase reads one storage slot less).
    @param fee_bps The new fee.
    """
    ownable._check_owner()
    assert fee_bps <= MAX_FEE_BPS, "marketplace: fee above the 10% cap"
    self.protocol_fee_bps = fee_bps
    log ProtocolFeeSet(fee_bps=fee_bps)


@external
@view
def has_license(account: address, model_id: uint256) -> bool:
    """
    @notice Tells whether `account` holds a current license for `model_id`; the one
            question a provider asks before serving a download.
    @param account The account.
    @param model_id The model.
    @return bool True when a delivered or free license has not expired.
    """
    slot: uint256 = self._licenses[account][model_id]
    if self._state(slot) != STATE_DELIVERED:
        return False
    expiry: uint256 = self._time(slot)
    return expiry == 0 or block.timestamp < expiry


@external
@view
def listing(model_id: uint256) -> (uint256, uint256, bool, uint256):
    """
    @notice Returns a model's listing: what a buyer's `terms` must match.
    @param model_id The model.
    @return uint256 The price in token units.
    @return uint256 The license duration in seconds (0 = perpetual).
    @return bool Whether it is for sale.
    @return uint256 The protocol fee in basis points fixed when the listing was set.
    """
    packed: uint256 = self._listings[model_id]
    return (
        packed & _PRICE_MASK,
        (packed >> 96) & _U32_MASK,
        (packed >> 128) & 1 == 1,
        (packed >> 136) & _U16_MASK,
    )


@external
@view
def listing_terms(model_id: uint256) -> bytes32:
    """
    @notice Returns the first 104 bits of the listing's licence terms digest, the rest
            zero; `TermsSet` logs the whole digest.
    @dev A buyer must commit to the digest of the terms it read, never copy this one.
    @param model_id The model.
    @return bytes32 The digest's first 13 bytes followed by 19 zero bytes.
    """
    return convert((self._listings[model_id] >> _TERMS_SHIFT) << _TERMS_SHIFT, bytes32)


@external
@view
def license(buyer: address, model_id: uint256) -> (uint256, uint256, uint256, uint256):
    """
    @notice Returns the order/license record of `buyer` for `model_id`.
    @param buyer The buyer.
    @param model_id The model.
    @return uint256 State: 0 none, 1 pending, 2 delivered, 3 refunded.
    @return uint256 The price paid (the escrow while pending).
    @return uint256 The delivery deadline while pending, the expiry once delivered (0 = perpetual).
    @return uint256 The protocol fee in basis points the purchase was made with.
    """
    slot: uint256 = self._licenses[buyer][model_id]
    return self._state(slot), slot & _PRICE_MASK, self._time(slot), (slot >> 168) & _U16_MASK


@internal
def _list(model_id: uint256, price: uint256, license_duration: uint256, for_sale: bool, terms_digest: bytes32):
    assert price <= MAX_PRICE, "marketplace: price too large"
    assert license_duration <= _U32_MASK, "marketplace: license duration too long"
    flag: uint256 = 0
    if for_sale:
        flag = 1
    fee_bps: uint256 = self.protocol_fee_bps
    terms_bits: uint256 = (convert(terms_digest, uint256) >> _TERMS_SHIFT) << _TERMS_SHIFT
    self._listings[model_id] = (
        price | (license_duration << 96) | (flag << 128) | (fee_bps << 136) | terms_bits
    )
    log Listed(
        model_id=model_id, price=price, license_duration=license_duration, for_sale=for_sale, fee_bps=fee_bps
    )
    log TermsSet(model_id=model_id, terms_digest=terms_digest)


@internal
def _purchase(model_id: uint256, terms: uint256, buyer_key: bytes32):
    listed: uint256 = self._listings[model_id]
    # Above the price, the listing must read as the buyer's terms with the for-sale bit
    # set: one comparison checks that it is for sale and that nothing else changed.
    if listed >> 96 != (terms >> 96) | _FOR_SALE_BIT:
        assert (listed >> 128) & 1 == 1, "marketplace: model is not for sale"
        assert (listed >> 96) & _BELOW_TERMS == ((terms >> 96) & _BELOW_TERMS) | _FOR_SALE_BIT, (
            "marketplace: listing terms differ from the buyer's"
        )
        raise "marketplace: licence terms differ from the buyer's"
    price: uint256 = listed & _PRICE_MASK
    assert price <= terms & _PRICE_MASK, "marketplace: price is above the buyer's maximum"
    duration: uint256 = (listed >> 96) & _U32_MASK

    slot: uint256 = self._licenses[msg.sender][model_id]
    state: uint256 = self._state(slot)
    assert state != STATE_PENDING, "marketplace: a purchase of this model is already pending"
    if state == STATE_DELIVERED:
        expiry: uint256 = self._time(slot)
        assert expiry != 0 and block.timestamp >= expiry, "marketplace: buyer already holds a license"

    if price == 0:
        expiry: uint256 = 0
        if duration != 0:
            expiry = block.timestamp + duration
        self._licenses[msg.sender][model_id] = (expiry << 96) | (STATE_DELIVERED << 160) | (duration << 184)
        log LicenseGranted(model_id=model_id, buyer=msg.sender, expiry=expiry)
        return

    # @custom:security The agent could not seal a key to a low-order point and the
    # escrow would sit until refunded; refusing the seven points (~110 gas) stops it here.
    key: uint256 = convert(buyer_key, uint256) & ~_KEY_TOP_BIT
    masked: bytes32 = convert(key, bytes32)
    low_order: uint256 = (
        convert(key | _KEY_ONE == _KEY_ONE, uint256)  # 0 and 1
        | convert(masked == _KEY_ORDER_8_A, uint256)
        | convert(masked == _KEY_ORDER_8_B, uint256)
        | convert(masked == _KEY_P_MINUS_1, uint256)
        | convert(masked == _KEY_P, uint256)
        | convert(masked == _KEY_P_PLUS_1, uint256)
    )
    assert low_order == 0, "marketplace: buyer key is not a usable X25519 public key"
    fee_bps: uint256 = (listed >> 136) & _U16_MASK
    deadline: uint256 = block.timestamp + DELIVERY_WINDOW
    self._licenses[msg.sender][model_id] = (
        price | (deadline << 96) | (STATE_PENDING << 160) | (fee_bps << 168) | (duration << 184)
    )
    assert extcall IERC20(TOKEN).transferFrom(msg.sender, self, price, default_return_value=True), (
        "marketplace: token transfer failed"
    )
    # The deadline is the block's timestamp + DELIVERY_WINDOW, so the event need not carry it.
    log Purchased(model_id=model_id, buyer=msg.sender, price=price, fee_bps=fee_bps, buyer_key=buyer_key)


@internal
def _deliver(model_id: uint256, buyer: address, version: uint256, wrapped_key: Bytes[MAX_WRAPPED_KEY]):
    slot: uint256 = self._licenses[buyer][model_id]
    assert self._state(slot) == STATE_PENDING, "marketplace: no pending purchase for this buyer and model"
    assert block.timestamp <= self._time(slot), "marketplace: delivery deadline passed"
    assert len(wrapped_key) > 0, "marketplace: wrapped key is empty"

    owner: address = empty(address)
    versions: uint256 = 0
    parent_owners: address[3] = empty(address[3])
    shares: uint256[3] = empty(uint256[3])
    owner, versions, parent_owners, shares = staticcall IModelRegistry(REGISTRY).payout_info(model_id)
    assert msg.sender == owner or msg.sender == self.agent_of[owner], (
        "marketplace: caller is not the model owner or its agent"
    )
    # @custom:security Version 0 wraps to 2**256 - 1, so one comparison checks 1 <= version <= versions.
    assert unsafe_sub(version, 1) < versions, "marketplace: version does not exist"

    price: uint256 = slot & _PRICE_MASK
    rest: uint256 = price
    fee_bps: uint256 = (slot >> 168) & _U16_MASK
    if fee_bps != 0:
        fee: uint256 = price * fee_bps // _BPS
        self.credits[ownable.owner] += fee
        rest -= fee
    for i: uint256 in range(3):
        if shares[i] == 0:
            continue
        royalty: uint256 = price * shares[i] // _BPS
        if royalty != 0:
            self.credits[parent_owners[i]] += royalty
            rest -= royalty
    # @custom:security Fee (<= 10%) plus royalties (<= 50%) never exceed the price, so `rest` >= 0.
    self.credits[owner] += rest

    duration: uint256 = (slot >> 184) & _U32_MASK
    expiry: uint256 = 0
    if duration != 0:
        expiry = block.timestamp + duration
    self._licenses[buyer][model_id] = (
        (slot & ~((_U64_MASK << 96) | (_U8_MASK << 160))) | (expiry << 96) | (STATE_DELIVERED << 160)
    )
    log Delivered(model_id=model_id, buyer=buyer, version=version, expiry=expiry, wrapped_key=wrapped_key)


@internal
@pure
def _state(slot: uint256) -> uint256:
    return (slot >> 160) & _U8_MASK


@internal
@pure
def _time(slot: uint256) -> uint256:
    return (slot >> 96) & _U64_MASK
