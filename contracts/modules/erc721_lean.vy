# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Lean ERC-721 (non-enumerable) with per-token auxiliary data
@custom:contract-name erc721_lean
@notice The ERC-721 core and ERC-165, exactly as EIP-721 specifies, without
        the enumerable extension: listing tokens is the off-chain index's job,
        and enumeration costs ~100,000 gas per mint.
        Each token's owner shares its storage slot with 96 bits of auxiliary
        data that the contract using this module may use (as ERC721A does), so
        per-model counters cost no extra storage slot.
"""

from ethereum.ercs import IERC165
from ethereum.ercs import IERC721
from snekmate.tokens.interfaces import IERC721Receiver


# The owner sits in the low 160 bits of `_owner_data`; the high 96 bits are aux.
_ADDRESS_MASK: constant(uint256) = (1 << 160) - 1
_AUX_SHIFT: constant(uint256) = 160

_SUPPORTED_INTERFACES: constant(bytes4[2]) = [
    0x01FFC9A7,  # ERC-165
    0x80AC58CD,  # ERC-721
]

_owner_data: HashMap[uint256, uint256]
_balances: HashMap[address, uint256]
_token_approvals: HashMap[uint256, address]
_operator_approvals: HashMap[address, HashMap[address, bool]]


@deploy
def __init__():
    pass


@external
@view
def supportsInterface(interface_id: bytes4) -> bool:
    """
    @notice Tells whether this contract implements an interface (ERC-165).
    @param interface_id The 4-byte interface identifier.
    @return bool True for ERC-165 and ERC-721.
    """
    return interface_id in _SUPPORTED_INTERFACES


@external
@view
def balanceOf(owner: address) -> uint256:
    """
    @notice Counts the tokens owned by `owner`.
    @param owner The account to count for; the zero address is invalid.
    @return uint256 The number of tokens `owner` owns.
    """
    assert owner != empty(address), "erc721: the zero address owns nothing"
    return self._balances[owner]


@external
@view
def ownerOf(token_id: uint256) -> address:
    """
    @notice Returns the owner of `token_id`.
    @param token_id The token; it must exist.
    @return address Its owner.
    """
    return self._require_owned(token_id)


@external
@view
def getApproved(token_id: uint256) -> address:
    """
    @notice Returns the account approved to move `token_id`, if any.
    @param token_id The token; it must exist.
    @return address The approved account, or the zero address.
    """
    self._require_owned(token_id)
    return self._token_approvals[token_id]


@external
@view
def isApprovedForAll(owner: address, operator: address) -> bool:
    """
    @notice Tells whether `operator` may move all of `owner`'s tokens.
    @param owner The token owner.
    @param operator The operator.
    @return bool True when approved.
    """
    return self._operator_approvals[owner][operator]


@external
def approve(approved: address, token_id: uint256):
    """
    @notice Approves `approved` to move `token_id` (the zero address clears it).
    @dev Callable by the owner or one of its operators.
    @custom:security Not payable, although EIP-721 declares it so: nothing here could
                     ever send ether back out, so any sent would be locked forever.
    @param approved The account to approve.
    @param token_id The token.
    """
    owner: address = self._require_owned(token_id)
    assert msg.sender == owner or self._operator_approvals[owner][msg.sender], (
        "erc721: caller is not the token owner or an approved operator"
    )
    self._token_approvals[token_id] = approved
    log IERC721.Approval(owner=owner, approved=approved, token_id=token_id)


@external
def setApprovalForAll(operator: address, approved: bool):
    """
    @notice Lets `operator` move all of the caller's tokens, or stops it.
    @param operator The operator.
    @param approved True to approve, False to revoke.
    """
    assert operator != msg.sender, "erc721: cannot approve oneself as operator"
    self._operator_approvals[msg.sender][operator] = approved
    log IERC721.ApprovalForAll(owner=msg.sender, operator=operator, approved=approved)


@external
def transferFrom(owner: address, to: address, token_id: uint256):
    """
    @notice Moves `token_id` from `owner` to `to`, without a receiver check.
    @dev The caller must be the owner, approved for the token, or an operator.
    @param owner The current owner.
    @param to The new owner; not the zero address.
    @param token_id The token.
    """
    self._transfer(owner, to, token_id)


@external
def safeTransferFrom(owner: address, to: address, token_id: uint256, data: Bytes[1_024] = b""):
    """
    @notice Moves `token_id` like `transferFrom`, then, when `to` is a contract,
            requires it to accept the token through `onERC721Received`.
    @param owner The current owner.
    @param to The new owner; not the zero address.
    @param token_id The token.
    @param data Passed to the receiver unchanged.
    """
    self._transfer(owner, to, token_id)
    self._check_on_erc721_received(owner, to, token_id, data)


@internal
@view
def _require_owned(token_id: uint256) -> address:
    owner: address = self._owner_of(token_id)
    assert owner != empty(address), "erc721: token does not exist"
    return owner


@internal
@view
def _owner_of(token_id: uint256) -> address:
    return convert(self._owner_data[token_id] & _ADDRESS_MASK, address)


@internal
@view
def _aux(token_id: uint256) -> uint256:
    return self._owner_data[token_id] >> _AUX_SHIFT


@internal
def _set_aux(token_id: uint256, aux: uint256):
    # Callers keep `aux` below 2**96; the owner bits are left as they are.
    self._owner_data[token_id] = (self._owner_data[token_id] & _ADDRESS_MASK) | (aux << _AUX_SHIFT)


@internal
def _mint(to: address, token_id: uint256, aux: uint256):
    assert to != empty(address), "erc721: mint to the zero address"
    assert self._owner_data[token_id] == 0, "erc721: token already minted"
    # @custom:security A balance cannot realistically reach 2**256 - 1.
    self._balances[to] = unsafe_add(self._balances[to], 1)
    self._owner_data[token_id] = convert(to, uint256) | (aux << _AUX_SHIFT)
    log IERC721.Transfer(sender=empty(address), receiver=to, token_id=token_id)


@internal
def _transfer(owner: address, to: address, token_id: uint256):
    current: address = self._require_owned(token_id)
    assert current == owner, "erc721: transfer from an account that does not own the token"
    assert to != empty(address), "erc721: transfer to the zero address"
    assert (
        msg.sender == owner
        or self._token_approvals[token_id] == msg.sender
        or self._operator_approvals[owner][msg.sender]
    ), "erc721: caller is not the token owner or approved"
    self._token_approvals[token_id] = empty(address)
    # @custom:security `owner` holds the token, so its balance is at least 1.
    self._balances[owner] = unsafe_sub(self._balances[owner], 1)
    self._balances[to] = unsafe_add(self._balances[to], 1)
    self._owner_data[token_id] = convert(to, uint256) | (self._aux(token_id) << _AUX_SHIFT)
    log IERC721.Transfer(sender=owner, receiver=to, token_id=token_id)


@internal
def _check_on_erc721_received(owner: address, to: address, token_id: uint256, data: Bytes[1_024]):
    if not to.is_contract:
        return
    answer: bytes4 = extcall IERC721Receiver(to).onERC721Received(msg.sender, owner, token_id, data)
    assert answer == method_id("onERC721Received(address,address,uint256,bytes)", output_type=bytes4), (
        "erc721: receiver did not accept the token"
    )
