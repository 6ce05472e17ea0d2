# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Mercato federation: paid federated training tasks
@custom:contract-name federation
@notice A requester escrows a reward for a training task (its spec is a JSON
        document named by the sha256 digest inside its CID) and names the
        coordinator whose node runs the rounds. Data owners `join` by staking
        and binding their training node's public key (its hash) to their
        address (a node key is registered once to one account, for every task):
        one seat per address, so one seat per key. The coordinator
        commits every round (the global model's digest, the round's record and
        the bitmap of seats whose update it used) before the next one starts,
        so exclusion is visible to everyone. `finalize` posts each seat's share
        in basis points (only seats in the bitmaps may get more than 0); a seat
        whose share is 0 (it never contributed, was scored a free-rider, or
        dropped out of a private task) gets nothing and forfeits its stake to
        the seats with a share. Each finalized task gets a revenue splitter
        (a minimal proxy) that publishes the trained model and pays its sales to
        the contributors by the same shares.

        open -> running (first round) -> finalized
        open -> cancelled (requester, until the join deadline)
        open | running -> aborted (too few seats by the join deadline, or not
                                   finalized by the finish deadline)

        Every token in is paid out by `claim`, pull style: after `finalize`,
        each seat's stake (kept only by seats whose share is above 0) and its
        share of the reward plus the forfeited stakes; after a cancel or abort, every stake
        and the reward go back. Shares are stored as running sums so that each
        seat's part is floor(pool * sum_to_seat / 10,000) - floor(pool *
        sum_before_seat / 10,000): the parts add up to the pool exactly and no
        rounding dust stays behind.
"""

from ethereum.ercs import IERC20
from interfaces import IModelVersions
from interfaces import IRevenueSplitter


struct Task:
    requester: address
    coordinator: address
    spec_digest: bytes32
    reward: uint256
    stake: uint256
    min_participants: uint256
    max_participants: uint256
    join_deadline: uint256
    finish_deadline: uint256
    status: uint256
    participants: uint256
    rounds: uint256
    contributors: uint256
    splitter: address
    parent_model_id: uint256
    parent_royalty_bps: uint256


event TaskCreated:
    task_id: indexed(uint256)
    requester: indexed(address)
    coordinator: indexed(address)
    spec_digest: bytes32
    reward: uint256
    stake: uint256
    min_participants: uint256
    max_participants: uint256
    join_deadline: uint256
    finish_deadline: uint256
    parent_model_id: uint256


event NodeKeyRegistered:
    node_key_hash: indexed(bytes32)
    account: indexed(address)


event Joined:
    task_id: indexed(uint256)
    participant: indexed(address)
    seat: uint256
    node_key_hash: bytes32


event RoundCommitted:
    task_id: indexed(uint256)
    round: indexed(uint256)
    model_digest: bytes32
    round_digest: bytes32
    contributors: uint256
    metric: uint256


event Finalized:
    task_id: indexed(uint256)
    splitter: address
    shares: DynArray[uint16, MAX_PARTICIPANTS]


event Claimed:
    task_id: indexed(uint256)
    account: indexed(address)
    amount: uint256


event Cancelled:
    task_id: indexed(uint256)


event Aborted:
    task_id: indexed(uint256)


# A contributors bitmap is one word, so seats are numbered 0..255 at most.
MAX_PARTICIPANTS: public(constant(uint256)) = 128
BPS: public(constant(uint256)) = 10_000
MAX_AMOUNT: public(constant(uint256)) = (1 << 96) - 1
MAX_ROYALTY_BPS: constant(uint256) = 5_000

STATUS_NONE: constant(uint256) = 0
STATUS_OPEN: constant(uint256) = 1
STATUS_RUNNING: constant(uint256) = 2
STATUS_FINALIZED: constant(uint256) = 3
STATUS_CANCELLED: constant(uint256) = 4
STATUS_ABORTED: constant(uint256) = 5

# What `join`, `commit_round` and `claim` read, in one slot: status (bits 0-7) |
# participants (8-15) | min (16-23) | max (24-31) | rounds (32-63) | join deadline
# (64-103) | finish deadline (104-143) | stake (144-239) | seats counted (240-247):
# at finalize those whose share is above 0 (they keep their stake), at abort the
# contributors | the requester's refund taken (248).
_U8: constant(uint256) = (1 << 8) - 1
_U32: constant(uint256) = (1 << 32) - 1
_U40: constant(uint256) = (1 << 40) - 1
_U64: constant(uint256) = (1 << 64) - 1
_U16: constant(uint256) = (1 << 16) - 1
_ADDRESS: constant(uint256) = (1 << 160) - 1
_ROUNDS_SHIFT: constant(uint256) = 32
_STAKE_SHIFT: constant(uint256) = 144
_COUNTED_SHIFT: constant(uint256) = 240
_REQUESTER_PAID: constant(uint256) = 1 << 248
# A seat word: seat + 1 (bits 0-7) | claimed (8).
_SEAT_CLAIMED: constant(uint256) = 1 << 8
# Running sums of shares: 16 seats of 16 bits per word.
_SUMS_PER_WORD: constant(uint256) = 16

TOKEN: public(immutable(address))
REGISTRY: public(immutable(address))
SPLITTER_IMPLEMENTATION: public(immutable(address))

task_count: public(uint256)
_state: HashMap[uint256, uint256]
# requester (bits 0-159) | reward (160-255)
_funding: HashMap[uint256, uint256]
# coordinator (bits 0-159) | parent model id (160-223) | parent royalty bps (224-239)
_coordination: HashMap[uint256, uint256]
_spec: HashMap[uint256, bytes32]
_contributors: HashMap[uint256, uint256]
_splitters: HashMap[uint256, address]
_share_sums: HashMap[uint256, HashMap[uint256, uint256]]
_seats: HashMap[uint256, HashMap[address, uint256]]
# Each training node key belongs to the first account that registered it, for good.
node_key_owner: public(HashMap[bytes32, address])


@deploy
def __init__(token: address, registry: address, splitter_implementation: address):
    """
    @param token The ERC-20 (with permit) rewards and stakes are paid in.
    @param registry The model registry, to check a task's parent model.
    @param splitter_implementation The revenue splitter each finalized task gets a proxy of.
    """
    TOKEN = token
    REGISTRY = registry
    SPLITTER_IMPLEMENTATION = splitter_implementation


@external
def create_task(
    spec_digest: bytes32,
    reward: uint256,
    stake: uint256,
    min_participants: uint256,
    max_participants: uint256,
    join_deadline: uint256,
    finish_deadline: uint256,
    coordinator: address,
    parent_model_id: uint256,
    parent_royalty_bps: uint256,
) -> uint256:
    """
    @notice Posts a training task and escrows its reward from the caller.
    @dev The caller must have allowed this contract to spend `reward`.
    @param spec_digest The sha256 digest inside the CID of the task's JSON spec.
    @param reward Tokens shared by the contributors at `finalize`.
    @param stake Tokens each participant locks at `join`.
    @param min_participants Seats needed to start; fewer by the join deadline aborts.
    @param max_participants Seats at most (up to `MAX_PARTICIPANTS`).
    @param join_deadline Unix time after which nobody joins.
    @param finish_deadline Unix time by which the task must be finalized.
    @param coordinator The account that commits rounds and finalizes.
    @param parent_model_id The model the task starts from (0 = none); the result's parent.
    @param parent_royalty_bps The parent's royalty on the result's sales, in basis points.
    @return uint256 The new task's id (tasks count from 1).
    """
    return self._create(
        spec_digest,
        reward,
        stake,
        min_participants,
        max_participants,
        join_deadline,
        finish_deadline,
        coordinator,
        parent_model_id,
        parent_royalty_bps,
    )


@external
def create_task_with_permit(
    spec_digest: bytes32,
    reward: uint256,
    stake: uint256,
    min_participants: uint256,
    max_participants: uint256,
    join_deadline: uint256,
    finish_deadline: uint256,
    coordinator: address,
    parent_model_id: uint256,
    parent_royalty_bps: uint256,
    permit_deadline: uint256,
    v: uint8,
    r: bytes32,
    s: bytes32,
) -> uint256:
    """
    @notice `create_task` preceded by an EIP-2612 permit for `reward`, so no
            approval transaction is needed.
    @dev A permit already used (copied from the mempool) is not fatal: the transfer
         goes ahead while the allowance it set is there.
    @param spec_digest The sha256 digest inside the CID of the task's JSON spec.
    @param reward Tokens shared by the contributors at `finalize`.
    @param stake Tokens each participant locks at `join`.
    @param min_participants Seats needed to start.
    @param max_participants Seats at most.
    @param join_deadline Unix time after which nobody joins.
    @param finish_deadline Unix time by which the task must be finalized.
    @param coordinator The account that commits rounds and finalizes.
    @param parent_model_id The model the task starts from (0 = none).
    @param parent_royalty_bps The parent's royalty on the result's sales.
    @param permit_deadline The permit's deadline.
    @param v The permit signature's v.
    @param r The permit signature's r.
    @param s The permit signature's s.
    @return uint256 The new task's id.
    """
    self._permit(reward, permit_deadline, v, r, s)
    return self._create(
        spec_digest,
        reward,
        stake,
        min_participants,
        max_participants,
        join_deadline,
        finish_deadline,
        coordinator,
        parent_model_id,
        parent_royalty_bps,
    )


@external
def register_node_key(node_key_hash: bytes32):
    """
    @notice Registers a training node key to the caller, once and for good; `join`
            takes only a key registered to its caller.
    @custom:security A key hash copied from someone else's pending transaction and
                     registered first is the copier's, but its seats can never send an
                     update without the private key (they are slashed); the victim's
                     registration reverts and it makes a new key. Keeping the
                     registration out of `join` costs a data owner one transaction per
                     key instead of a second new storage slot in every join.
    @param node_key_hash The sha256 of the public key the node authenticates with.
    """
    assert node_key_hash != empty(bytes32), "federation: node key hash is empty"
    assert self.node_key_owner[node_key_hash] == empty(address), "federation: node key already registered"
    self.node_key_owner[node_key_hash] = msg.sender
    log NodeKeyRegistered(node_key_hash=node_key_hash, account=msg.sender)


@external
def join(task_id: uint256, node_key_hash: bytes32):
    """
    @notice Takes the next seat of an open task: locks its stake and binds the
            caller's training node key to the seat.
    @dev The caller must have allowed this contract to spend the task's stake, and
         registered the key (`register_node_key`).
    @custom:security One seat per address, and a key belongs to one account, so one
                     seat per key: nobody can bind a key whose updates someone else
                     sends. Stakes make griefing joins cost what they block.
    @param task_id The task.
    @param node_key_hash The hash of the public key the caller's training node
           authenticates with; the coordinator admits exactly these keys.
    """
    self._join(task_id, node_key_hash)


@external
def join_with_permit(
    task_id: uint256, node_key_hash: bytes32, permit_amount: uint256, permit_deadline: uint256, v: uint8, r: bytes32, s: bytes32
):
    """
    @notice `join` preceded by an EIP-2612 permit, so no approval transaction is needed.
    @param task_id The task.
    @param node_key_hash The hash of the caller's training node public key.
    @param permit_amount The allowance the caller signed for this contract.
    @param permit_deadline The permit's deadline.
    @param v The permit signature's v.
    @param r The permit signature's r.
    @param s The permit signature's s.
    """
    self._permit(permit_amount, permit_deadline, v, r, s)
    self._join(task_id, node_key_hash)


@external
def cancel(task_id: uint256):
    """
    @notice Calls an open task off; everyone takes their tokens back with `claim`.
    @dev Requester only, until the join deadline and before the first round.
    @custom:security After the join deadline the requester can no longer cancel, so
                     participants who trained (coordinators start after it, or
                     when the task is full) are not left unpaid by a cancel.
    @param task_id The task.
    """
    state: uint256 = self._state[task_id]
    assert state & _U8 == STATUS_OPEN, "federation: task is not open"
    assert convert(self._funding[task_id] & _ADDRESS, address) == msg.sender, (
        "federation: caller is not the requester"
    )
    assert block.timestamp <= (state >> 64) & _U40, "federation: join deadline passed"
    self._state[task_id] = (state & ~_U8) | STATUS_CANCELLED
    log Cancelled(task_id=task_id)


@external
def abort(task_id: uint256):
    """
    @notice Ends a task that cannot finish: fewer than the minimum seats taken by the
            join deadline, or not finalized by the finish deadline.
    @dev Anyone may call it. Every stake goes back. The reward goes back to the
         requester, unless rounds were committed with contributors: then it is
         shared equally by the seats that contributed.
    @custom:security A coordinator (usually the requester's node) that keeps the
                     trained model and never finalizes still pays the reward to those
                     who trained it, so stalling until the deadline saves it nothing.
    @param task_id The task.
    """
    state: uint256 = self._state[task_id]
    status: uint256 = state & _U8
    assert status == STATUS_OPEN or status == STATUS_RUNNING, "federation: task has ended"
    participants: uint256 = (state >> 8) & _U8
    undersubscribed: bool = (
        status == STATUS_OPEN
        and block.timestamp > (state >> 64) & _U40
        and participants < (state >> 16) & _U8
    )
    overdue: bool = block.timestamp > (state >> 104) & _U40
    assert undersubscribed or overdue, "federation: task can still finish"
    counted: uint256 = self._popcount(self._contributors[task_id])
    self._state[task_id] = (state & ~(_U8 | (_U8 << _COUNTED_SHIFT))) | STATUS_ABORTED | (counted << _COUNTED_SHIFT)
    log Aborted(task_id=task_id)


@external
def commit_round(
    task_id: uint256, round: uint256, model_digest: bytes32, round_digest: bytes32, contributors: uint256, metric: uint256
):
    """
    @notice Commits one training round: the global model after it, the round's
            record and the seats whose update it used.
    @dev Coordinator only, rounds in order from 1, before the finish deadline. The
         first round closes joining.
    @custom:security The coordinator decides who contributed. Each round's bitmap is
                     on-chain before the next round starts, so a participant left
                     out sees it at once and can stop training and tell others; the
                     contract only enforces that seats exist and that shares follow
                     the bitmaps.
    @param task_id The task.
    @param round The round number: one more than the rounds committed so far.
    @param model_digest The sha256 digest inside the CID of the global model (ONNX).
    @param round_digest The sha256 digest inside the CID of the round's record.
    @param contributors Bitmap of the seats whose update the round used.
    @param metric The global model's metric after the round, times 1e6.
    """
    state: uint256 = self._state[task_id]
    status: uint256 = state & _U8
    assert status == STATUS_OPEN or status == STATUS_RUNNING, "federation: task is not running"
    self._check_coordinator(task_id)
    assert block.timestamp <= (state >> 104) & _U40, "federation: finish deadline passed"
    rounds: uint256 = (state >> _ROUNDS_SHIFT) & _U32
    assert round == rounds + 1, "federation: rounds must be committed in order"
    participants: uint256 = (state >> 8) & _U8
    assert participants >= (state >> 16) & _U8, "federation: too few participants"
    assert contributors >> participants == 0, "federation: contributor seat not taken"
    self._contributors[task_id] |= contributors
    self._state[task_id] = (state & ~(_U8 | (_U32 << _ROUNDS_SHIFT))) | STATUS_RUNNING | (round << _ROUNDS_SHIFT)
    log RoundCommitted(
        task_id=task_id,
        round=round,
        model_digest=model_digest,
        round_digest=round_digest,
        contributors=contributors,
        metric=metric,
    )


@external
def finalize(task_id: uint256, shares: DynArray[uint16, MAX_PARTICIPANTS]) -> address:
    """
    @notice Posts each seat's share of the reward and creates the task's revenue splitter.
    @dev Coordinator only, after at least one round and before the finish deadline.
    @custom:security Shares are an array by seat rather than a Merkle root: the
                     contract itself then checks that they add up to 10,000 and that
                     no seat outside the committed bitmaps gets anything, which a root
                     would hide until claims (docs/contracts.md has the gas of both).
                     A share of 0 forfeits the seat's stake, so a lying coordinator
                     can take an honest seat's stake as well as its reward (to the
                     other seats, never to itself unless it holds one): the contract
                     cannot judge scores, and the round records behind each
                     `round_digest` are the evidence anyone checks the shares against.
    @param task_id The task.
    @param shares Each seat's share in basis points, by seat; they sum to 10,000, a
           seat that never contributed has 0, and every seat with 0 forfeits its stake
           to the seats with a share.
    @return address The task's revenue splitter.
    """
    state: uint256 = self._state[task_id]
    assert state & _U8 == STATUS_RUNNING, "federation: task is not running"
    self._check_coordinator(task_id)
    assert block.timestamp <= (state >> 104) & _U40, "federation: finish deadline passed"
    participants: uint256 = (state >> 8) & _U8
    assert len(shares) == participants, "federation: one share per seat"
    contributors: uint256 = self._contributors[task_id]
    total: uint256 = 0
    kept: uint256 = 0
    word: uint256 = 0
    for seat: uint256 in range(MAX_PARTICIPANTS):
        if seat == participants:
            break
        share: uint256 = convert(shares[seat], uint256)
        if share != 0:
            assert (contributors >> seat) & 1 == 1, "federation: share for a seat that never contributed"
            total += share
            kept += 1
            # A running sum above 10,000 would not fit in its 16 bits.
            assert total <= BPS, "federation: shares must sum to 10,000"
        slot: uint256 = seat % _SUMS_PER_WORD
        word |= total << (slot * 16)
        if slot == _SUMS_PER_WORD - 1 or seat + 1 == participants:
            self._share_sums[task_id][seat // _SUMS_PER_WORD] = word
            word = 0
    assert total == BPS, "federation: shares must sum to 10,000"
    # Seats with a share keep their stake; `_participant_due` pools the others'.
    self._state[task_id] = (state & ~(_U8 | (_U8 << _COUNTED_SHIFT))) | STATUS_FINALIZED | (kept << _COUNTED_SHIFT)
    splitter: address = create_minimal_proxy_to(SPLITTER_IMPLEMENTATION)
    extcall IRevenueSplitter(splitter).initialize(task_id)
    self._splitters[task_id] = splitter
    log Finalized(task_id=task_id, splitter=splitter, shares=shares)
    return splitter


@external
@nonreentrant
def claim(task_id: uint256) -> uint256:
    """
    @notice Pays the caller what it is owed by an ended task: after `finalize`, its
            stake plus its share of the reward and of the forfeited stakes if its
            share is above 0, and nothing if it is 0; after a cancel or abort, its
            stake and, for the requester, the reward.
    @dev Each account claims once per task (as a participant and as the requester);
         a seat whose share is 0 is owed nothing, so its claim reverts.
    @custom:security State is marked paid before the transfer, and the function is
                     non-reentrant, so a token that calls back cannot pay twice.
    @param task_id The task.
    @return uint256 The amount paid.
    """
    state: uint256 = self._state[task_id]
    status: uint256 = state & _U8
    assert status >= STATUS_FINALIZED, "federation: task has not ended"
    seat_word: uint256 = self._seats[task_id][msg.sender]
    amount: uint256 = 0
    if seat_word != 0 and seat_word & _SEAT_CLAIMED == 0:
        amount = self._participant_due(task_id, state, (seat_word & _U8) - 1)
        self._seats[task_id][msg.sender] = seat_word | _SEAT_CLAIMED
    funding: uint256 = self._funding[task_id]
    if convert(funding & _ADDRESS, address) == msg.sender and state & _REQUESTER_PAID == 0:
        amount += self._requester_due(state, funding)
        self._state[task_id] = state | _REQUESTER_PAID
    assert amount != 0, "federation: nothing to claim"
    assert extcall IERC20(TOKEN).transfer(msg.sender, amount, default_return_value=True), (
        "federation: token transfer failed"
    )
    log Claimed(task_id=task_id, account=msg.sender, amount=amount)
    return amount


@external
@view
def task(task_id: uint256) -> Task:
    """
    @notice Returns everything about a task (all zero when it does not exist).
    @param task_id The task.
    @return Task The task; status 0 none, 1 open, 2 running, 3 finalized,
            4 cancelled, 5 aborted.
    """
    state: uint256 = self._state[task_id]
    funding: uint256 = self._funding[task_id]
    coordination: uint256 = self._coordination[task_id]
    return Task(
        requester=convert(funding & _ADDRESS, address),
        coordinator=convert(coordination & _ADDRESS, address),
        spec_digest=self._spec[task_id],
        reward=funding >> 160,
        stake=(state >> _STAKE_SHIFT) & MAX_AMOUNT,
        min_participants=(state >> 16) & _U8,
        max_participants=(state >> 24) & _U8,
        join_deadline=(state >> 64) & _U40,
        finish_deadline=(state >> 104) & _U40,
        status=state & _U8,
        participants=(state >> 8) & _U8,
        rounds=(state >> _ROUNDS_SHIFT) & _U32,
        contributors=self._contributors[task_id],
        splitter=self._splitters[task_id],
        parent_model_id=(coordination >> 160) & _U64,
        parent_royalty_bps=(coordination >> 224) & _U16,
    )


@external
@view
def seat_of(task_id: uint256, account: address) -> uint256:
    """
    @notice Returns an account's seat in a task, plus one (0 = no seat).
    @param task_id The task.
    @param account The account.
    @return uint256 The seat + 1, or 0.
    """
    return self._seats[task_id][account] & _U8


@external
@view
def seat_of_key(task_id: uint256, node_key_hash: bytes32) -> uint256:
    """
    @notice Returns the seat a training node key holds in a task, plus one (0 = none);
            the coordinator admits a node only when this is non-zero.
    @dev The key's owner may hold a seat it took with another of its keys: the seat's
         own key is the one in its `Joined` event.
    @param task_id The task.
    @param node_key_hash The hash of the node's public key.
    @return uint256 The seat + 1, or 0.
    """
    owner: address = self.node_key_owner[node_key_hash]
    if owner == empty(address):
        return 0
    return self._seats[task_id][owner] & _U8


@external
@view
def claimable(task_id: uint256, account: address) -> uint256:
    """
    @notice Returns what `claim` would pay `account` now.
    @param task_id The task.
    @param account The account.
    @return uint256 The amount (0 while the task runs, or once claimed).
    """
    state: uint256 = self._state[task_id]
    if state & _U8 < STATUS_FINALIZED:
        return 0
    amount: uint256 = 0
    seat_word: uint256 = self._seats[task_id][account]
    if seat_word != 0 and seat_word & _SEAT_CLAIMED == 0:
        amount = self._participant_due(task_id, state, (seat_word & _U8) - 1)
    funding: uint256 = self._funding[task_id]
    if convert(funding & _ADDRESS, address) == account and state & _REQUESTER_PAID == 0:
        amount += self._requester_due(state, funding)
    return amount


@external
@view
def share_of(task_id: uint256, account: address) -> uint256:
    """
    @notice Returns an account's share of a finalized task, in basis points; what its
            revenue splitter pays it from the result's sales.
    @param task_id The task.
    @param account The account.
    @return uint256 The share (0 without a seat, or before `finalize`).
    """
    if self._state[task_id] & _U8 != STATUS_FINALIZED:
        return 0
    seat_word: uint256 = self._seats[task_id][account]
    if seat_word == 0:
        return 0
    below: uint256 = 0
    upto: uint256 = 0
    below, upto = self._share_bounds(task_id, (seat_word & _U8) - 1)
    return upto - below


@external
@view
def splitter_terms(task_id: uint256) -> (address, uint256, uint256):
    """
    @notice Returns what a task's revenue splitter publishes under.
    @param task_id The task.
    @return address The coordinator, who publishes the result and delivers its keys.
    @return uint256 The parent model id (0 = none).
    @return uint256 The parent's royalty in basis points.
    """
    coordination: uint256 = self._coordination[task_id]
    return (
        convert(coordination & _ADDRESS, address),
        (coordination >> 160) & _U64,
        (coordination >> 224) & _U16,
    )


@internal
def _create(
    spec_digest: bytes32,
    reward: uint256,
    stake: uint256,
    min_participants: uint256,
    max_participants: uint256,
    join_deadline: uint256,
    finish_deadline: uint256,
    coordinator: address,
    parent_model_id: uint256,
    parent_royalty_bps: uint256,
) -> uint256:
    assert spec_digest != empty(bytes32), "federation: spec digest is empty"
    assert reward <= MAX_AMOUNT and stake <= MAX_AMOUNT, "federation: amount too large"
    assert min_participants >= 1 and min_participants <= max_participants, (
        "federation: minimum participants must be between 1 and the maximum"
    )
    assert max_participants <= MAX_PARTICIPANTS, "federation: too many participants"
    assert join_deadline > block.timestamp, "federation: join deadline is not in the future"
    assert finish_deadline > join_deadline, "federation: finish deadline is not after the join deadline"
    assert finish_deadline <= _U40, "federation: finish deadline too far"
    assert coordinator != empty(address), "federation: coordinator is the zero address"
    if parent_model_id == 0:
        assert parent_royalty_bps == 0, "federation: royalty without a parent model"
    else:
        assert staticcall IModelVersions(REGISTRY).version_count(parent_model_id) != 0, (
            "federation: parent model does not exist"
        )
        assert parent_royalty_bps <= MAX_ROYALTY_BPS, "federation: royalty above 50%"
    task_id: uint256 = self.task_count + 1
    self.task_count = task_id
    self._state[task_id] = (
        STATUS_OPEN
        | (min_participants << 16)
        | (max_participants << 24)
        | (join_deadline << 64)
        | (finish_deadline << 104)
        | (stake << _STAKE_SHIFT)
    )
    self._funding[task_id] = convert(msg.sender, uint256) | (reward << 160)
    # Registry model ids count up from 1, so an existing parent's id fits in 64 bits.
    self._coordination[task_id] = (
        convert(coordinator, uint256) | (parent_model_id << 160) | (parent_royalty_bps << 224)
    )
    self._spec[task_id] = spec_digest
    if reward != 0:
        assert extcall IERC20(TOKEN).transferFrom(msg.sender, self, reward, default_return_value=True), (
            "federation: token transfer failed"
        )
    log TaskCreated(
        task_id=task_id,
        requester=msg.sender,
        coordinator=coordinator,
        spec_digest=spec_digest,
        reward=reward,
        stake=stake,
        min_participants=min_participants,
        max_participants=max_participants,
        join_deadline=join_deadline,
        finish_deadline=finish_deadline,
        parent_model_id=parent_model_id,
    )
    return task_id


@internal
def _join(task_id: uint256, node_key_hash: bytes32):
    state: uint256 = self._state[task_id]
    status: uint256 = state & _U8
    if status != STATUS_OPEN:
        assert status != STATUS_NONE, "federation: task does not exist"
        assert status != STATUS_RUNNING, "federation: training has started"
        raise "federation: task has ended"
    assert block.timestamp <= (state >> 64) & _U40, "federation: join deadline passed"
    seat: uint256 = (state >> 8) & _U8
    assert seat < (state >> 24) & _U8, "federation: task is full"
    assert self._seats[task_id][msg.sender] == 0, "federation: account already holds a seat"
    assert self.node_key_owner[node_key_hash] == msg.sender, "federation: node key is not registered to the caller"
    self._seats[task_id][msg.sender] = seat + 1
    # @custom:security seat < max <= 128, so the participant count cannot carry out of its byte.
    self._state[task_id] = unsafe_add(state, 1 << 8)
    stake: uint256 = (state >> _STAKE_SHIFT) & MAX_AMOUNT
    if stake != 0:
        assert extcall IERC20(TOKEN).transferFrom(msg.sender, self, stake, default_return_value=True), (
            "federation: token transfer failed"
        )
    log Joined(task_id=task_id, participant=msg.sender, seat=seat, node_key_hash=node_key_hash)


@internal
def _permit(amount: uint256, deadline: uint256, v: uint8, r: bytes32, s: bytes32):
    # A failed permit is not fatal: the transfer fails anyway if no allowance is there.
    permitted: bool = raw_call(
        TOKEN,
        abi_encode(
            msg.sender,
            self,
            amount,
            deadline,
            v,
            r,
            s,
            method_id=method_id("permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"),
        ),
        revert_on_failure=False,
    )


@internal
@view
def _check_coordinator(task_id: uint256):
    assert convert(self._coordination[task_id] & _ADDRESS, address) == msg.sender, (
        "federation: caller is not the coordinator"
    )


@internal
@view
def _participant_due(task_id: uint256, state: uint256, seat: uint256) -> uint256:
    stake: uint256 = (state >> _STAKE_SHIFT) & MAX_AMOUNT
    status: uint256 = state & _U8
    counted: uint256 = (state >> _COUNTED_SHIFT) & _U8
    if status == STATUS_FINALIZED:
        # counted = the seats whose share is above 0; every other stake is forfeited
        # into the pool the shares divide.
        participants: uint256 = (state >> 8) & _U8
        pool: uint256 = (self._funding[task_id] >> 160) + stake * (participants - counted)
        below: uint256 = 0
        upto: uint256 = 0
        below, upto = self._share_bounds(task_id, seat)
        due: uint256 = pool * upto // BPS - pool * below // BPS
        if upto != below:
            due += stake
        return due
    contributed: bool = (self._contributors[task_id] >> seat) & 1 == 1
    if status == STATUS_ABORTED and contributed and counted != 0:
        # Rounds used this seat's work: the reward is shared equally by the
        # contributors, exactly (the k-th gets floor(R*k/n) - floor(R*(k-1)/n)).
        reward: uint256 = self._funding[task_id] >> 160
        rank: uint256 = self._popcount(self._contributors[task_id] & ((1 << seat) - 1))
        return stake + reward * (rank + 1) // counted - reward * rank // counted
    return stake


@internal
@pure
def _requester_due(state: uint256, funding: uint256) -> uint256:
    status: uint256 = state & _U8
    if status == STATUS_CANCELLED or (status == STATUS_ABORTED and (state >> _COUNTED_SHIFT) & _U8 == 0):
        return funding >> 160
    return 0


@internal
@view
def _share_bounds(task_id: uint256, seat: uint256) -> (uint256, uint256):
    """The running sums of shares before `seat` and up to it."""
    word: uint256 = self._share_sums[task_id][seat // _SUMS_PER_WORD]
    offset: uint256 = seat % _SUMS_PER_WORD
    upto: uint256 = (word >> (offset * 16)) & _U16
    below: uint256 = 0
    if offset != 0:
        below = (word >> ((offset - 1) * 16)) & _U16
    elif seat != 0:
        below = self._share_sums[task_id][seat // _SUMS_PER_WORD - 1] >> ((_SUMS_PER_WORD - 1) * 16)
    return below, upto


@internal
@pure
def _popcount(bits: uint256) -> uint256:
    count: uint256 = 0
    rest: uint256 = bits
    for i: uint256 in range(256):
        if rest == 0:
            break
        # Clearing the lowest set bit: one iteration per contributor.
        rest &= rest - 1
        count += 1
    return count
