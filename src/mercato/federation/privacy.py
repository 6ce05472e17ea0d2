# SPDX-License-Identifier: AGPL-3.0-only
"""Private federated tasks: secure aggregation and differential privacy, from Flower.

A spec's privacy mode decides what the coordinator may see:

- `none` (the default; scored): the coordinator sees each participant's update. With
  `local_dp = true` each participant clips its update and adds Gaussian noise before it
  leaves (Flower's `LocalDpMod`), and the task reports the epsilon that costs.
- `private`: the coordinator sees only the round's aggregate. Each participant clips
  its update to `clipping_norm` (Flower's `fixedclipping_mod`, with the norm the spec
  fixes, not one the coordinator sends) and uploads it masked with SecAgg+ (Flower's
  `secaggplus_mod` / `SecAggPlusWorkflow`); the coordinator unmasks only the sum, and
  Flower's `DifferentialPrivacyClientSideFixedClipping` adds Gaussian noise to the mean
  before it becomes the next global model. Flower's RDP accountant gives the epsilon.
  Nobody can score an individual update here: shares are equal among the seats that
  completed every round, and a seat that dropped out of any round gets 0.

SecAgg+ runs on Flower's legacy workflow API in 1.42 (a `LegacyContext` with a legacy
strategy), so `run_private_round` builds one for each round inside the message-API
ServerApp; the participant side is `client_mod`, a ClientApp mod.

What a participant uploads in private mode is its clipped update (new parameters minus
the global ones), whose every coordinate lies in [-clipping_norm, clipping_norm]: that
is also SecAgg+'s quantization range, so quantization never cuts a value off.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.error import Error
from flwr.app.message_type import MessageType
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from mercato.errors import FederationError, FederationPrivacyError, FederationSpecError
from mercato.federation.shares import RoundContribution, to_basis_points

if TYPE_CHECKING:
    from flwr.serverapp import Grid

    from mercato.federation.learning import Params
    from mercato.federation.spec import TaskSpec

MODES = ("none", "private")
MIN_PRIVATE_PARTICIPANTS = 3  # with two, each learns the other's update from the mean
# Node config keys a data owner's SuperNode is started with (from the on-chain spec),
# so a coordinator cannot switch a task's privacy off by sending another spec.
NODE_PRIVACY = "privacy"
NODE_SPEC_SHA256 = "spec-sha256"
# Refusals a participant answers with (Flower error replies carry a code and a reason).
REFUSED = 4150


@dataclass(frozen=True)
class PrivacySettings:
    """A task's privacy settings (the spec's `privacy` mode and `[privacy]` table).

    Attributes:
        mode: "none" or "private".
        clipping_norm: Largest L2 norm of one participant's update in one round.
        noise_multiplier: Gaussian noise on the mean, in units of its sensitivity
            (private mode).
        delta: The delta of the (epsilon, delta) guarantee reported.
        num_shares: SecAgg+ shares of each participant's key (0 = every participant
            of the round).
        reconstruction_threshold: Shares needed to rebuild a key (0 = more than half
            of the shares); always more than half, so a coordinator that tells some
            participants a seat dropped and others it did not cannot collect both of
            that seat's secrets.
        local_dp: Each participant adds its own noise (mode "none" only).
        local_epsilon: The epsilon of one round's local noise (with `local_dp`).
    """

    mode: str = "none"
    clipping_norm: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5
    num_shares: int = 0
    reconstruction_threshold: int = 0
    local_dp: bool = False
    local_epsilon: float = 1.0

    @property
    def private(self) -> bool:
        """Whether the coordinator must see only aggregates."""
        return self.mode == "private"

    @property
    def differentially_private(self) -> bool:
        """Whether the task spends a privacy budget (and so reports an epsilon)."""
        return self.private or self.local_dp

    def round_noise_multiplier(self) -> float:
        """The Gaussian mechanism's noise multiplier of one round, as accounted.

        Private mode: the spec's multiplier. Local DP: Flower's `LocalDpMod` draws noise
        of standard deviation clipping_norm * sqrt(2 ln(1.25 / delta)) / local_epsilon
        for a sensitivity of clipping_norm, so the multiplier is that over the norm.
        """
        if self.private:
            return self.noise_multiplier
        return math.sqrt(2 * math.log(1.25 / self.delta)) / self.local_epsilon


_FLOATS = ("clipping_norm", "noise_multiplier", "delta", "local_epsilon")
_INTS = ("num_shares", "reconstruction_threshold")


def settings_from(
    mode: str, table: Mapping[str, Any], *, min_participants: int, max_participants: int
) -> PrivacySettings:
    """Check and build a spec's privacy settings.

    Args:
        mode: The spec's `privacy` field.
        table: The spec's `privacy_settings` (the TOML `[privacy]` table without `mode`).
        min_participants: The spec's fewest participants.
        max_participants: The spec's seats.

    Returns:
        The settings.

    Raises:
        FederationSpecError: an unknown mode or key, a value of the wrong type or out of
            range, or settings that would not protect anything.
    """
    if mode not in MODES:
        raise FederationSpecError(f"privacy must be one of {', '.join(MODES)}, not {mode!r}.")
    if not isinstance(table, Mapping):
        raise FederationSpecError("[privacy] must be a table.")
    known = {f.name for f in fields(PrivacySettings)} - {"mode"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise FederationSpecError(
            f"Unknown privacy setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
    values: dict[str, Any] = {"mode": mode}
    for key, value in table.items():
        if key in _FLOATS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FederationSpecError(f"privacy.{key} must be a number, got {value!r}.")
            if not math.isfinite(value) or value <= 0:
                raise FederationSpecError(f"privacy.{key} must be a positive finite number.")
            values[key] = float(value)
        elif key in _INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FederationSpecError(f"privacy.{key} must be a whole number >= 0.")
            values[key] = value
        elif not isinstance(value, bool):
            raise FederationSpecError(f"privacy.{key} must be true or false.")
        else:
            values[key] = value
    settings = PrivacySettings(**values)
    if settings.clipping_norm > 1e6 or settings.noise_multiplier > 1e3:
        raise FederationSpecError("privacy.clipping_norm or noise_multiplier is implausibly large.")
    if not settings.delta < 1 / max_participants:
        raise FederationSpecError(
            f"privacy.delta must be below 1/max_participants ({1 / max_participants:g}); "
            "a larger delta allows leaking a whole participant's data."
        )
    if settings.private:
        if settings.local_dp:
            raise FederationSpecError(
                "local_dp is for the scored mode; private mode adds its noise to the "
                "secure aggregate instead."
            )
        if min_participants < MIN_PRIVATE_PARTICIPANTS:
            raise FederationSpecError(
                f"A private task needs min_participants >= {MIN_PRIVATE_PARTICIPANTS}: "
                "with two, each participant can subtract its own update from the mean and "
                "read the other's."
            )
        _check_shares(settings, min_participants, max_participants)
    elif not settings.local_dp and table:
        raise FederationSpecError(
            "These privacy settings would do nothing with privacy = 'none': set "
            "privacy = 'private', or local_dp = true for noise added by each participant."
        )
    elif settings.local_dp and (settings.num_shares or settings.reconstruction_threshold):
        raise FederationSpecError("num_shares and reconstruction_threshold are for private mode.")
    if settings.local_dp and settings.local_epsilon > 100:
        raise FederationSpecError("privacy.local_epsilon above 100 protects nothing.")
    return settings


def _check_shares(settings: PrivacySettings, min_participants: int, max_participants: int) -> None:
    shares, threshold = settings.num_shares, settings.reconstruction_threshold
    if shares and not MIN_PRIVATE_PARTICIPANTS <= shares <= max_participants:
        raise FederationSpecError(
            f"privacy.num_shares must be from {MIN_PRIVATE_PARTICIPANTS} to max_participants "
            "(or 0 for every participant of the round)."
        )
    if threshold:
        most = shares or max_participants  # the most shares a round can have
        fewest = shares or min_participants  # the fewest a round may run with
        if not most // 2 < threshold < fewest:
            raise FederationSpecError(
                f"privacy.reconstruction_threshold must be more than half of the shares "
                f"({most // 2}) and fewer than them ({fewest}), or 0 for the default."
            )


def settings_of(spec: TaskSpec) -> PrivacySettings:
    """The privacy settings of a (validated) spec."""
    return settings_from(
        spec.privacy,
        spec.privacy_settings,
        min_participants=spec.min_participants,
        max_participants=spec.max_participants,
    )


def secagg_parameters(settings: PrivacySettings, participants: int) -> tuple[int, int]:
    """SecAgg+ (num_shares, reconstruction_threshold) for a round with `participants`.

    Raises:
        FederationError: too few participants for a private round.
    """
    if participants < MIN_PRIVATE_PARTICIPANTS:
        raise FederationError(
            f"A private round needs at least {MIN_PRIVATE_PARTICIPANTS} participants; "
            f"{participants} are connected."
        )
    shares = min(settings.num_shares or participants, participants)
    threshold = settings.reconstruction_threshold or shares // 2 + 1
    if not shares // 2 < threshold < shares:
        raise FederationError(
            f"A private round of {participants} participants cannot keep the spec's "
            f"reconstruction threshold ({threshold}) above half of {shares} shares and "
            "below their number."
        )
    return shares, threshold


# --- Accounting -------------------------------------------------------------------------


def epsilon_after(settings: PrivacySettings, rounds: int) -> float | None:
    """The task's epsilon after `rounds` rounds, from Flower's RDP accountant.

    It depends only on the public spec and the number of rounds committed on-chain, so
    anyone recomputes it instead of trusting a number the coordinator reports. Each
    round is one Gaussian release without sampling amplification (every participant
    of the round takes part), composed over rounds.

    Args:
        settings: The task's privacy settings.
        rounds: Rounds completed (0 gives 0.0).

    Returns:
        Epsilon at the settings' delta, or None when the task adds no noise.
    """
    if not settings.differentially_private:
        return None
    if rounds <= 0:
        return 0.0
    from flwr.supercore.privacy_accounting import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        SamplingMethod,
    )
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=settings.delta,
            population_size=1,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    event = GaussianPrivacyEvent(
        noise_multiplier=settings.round_noise_multiplier(), sample_size=1, population_size=1
    )
    accountant.compose(event, count=rounds)
    return accountant.get_privacy_spent().epsilon


def task_epsilon(spec: TaskSpec, rounds: int) -> float | None:
    """`epsilon_after` for a spec (what the task page and CLI show)."""
    return epsilon_after(settings_of(spec), rounds)


ACCOUNTANT = "flwr RdpAccountant: Gaussian, no sampling amplification, composed per round"


def budget_record(spec: TaskSpec, rounds: int) -> dict[str, Any] | None:
    """The privacy budget spent after `rounds` rounds, as a round record states it.

    The coordinator writes it into each round's record, whose CID it commits on-chain,
    so what it claimed is fixed; anyone recomputes the same numbers from the public
    spec and the round number (`epsilon_after`), as the index does.

    Returns:
        epsilon, delta, the rounds counted, where the noise is added ("central" in
        private mode, "local" with local DP), the noise multiplier of one round and the
        accountant; None when the task adds no noise.
    """
    settings = settings_of(spec)
    epsilon = epsilon_after(settings, rounds)
    if epsilon is None:
        return None
    return {
        "epsilon": epsilon,
        "delta": settings.delta,
        "rounds": rounds,
        "noise": "central" if settings.private else "local",
        "noise_multiplier": settings.round_noise_multiplier(),
        "accountant": ACCOUNTANT,
    }


def epsilons_by_round(spec: TaskSpec) -> list[float] | None:
    """Epsilon after each of the spec's rounds (index 0: after round 1); None when the
    task adds no noise."""
    settings = settings_of(spec)
    if not settings.differentially_private:
        return None
    return [float(epsilon_after(settings, r) or 0.0) for r in range(1, spec.rounds + 1)]


# --- Shares -----------------------------------------------------------------------------


def completed_every_round(rounds: Sequence[RoundContribution]) -> set[int]:
    """Seats whose update went into every round's aggregate so far."""
    if not rounds:
        return set()
    done = set(rounds[0].examples)
    for record in rounds[1:]:
        done &= set(record.examples)
    return done


class CompletedEveryRoundScorer:
    """Private mode's shares: equal among the seats that completed every round.

    No individual update is visible, so there is nothing to score; a seat that missed
    any round gets 0 (and the stake is the deterrent against free-riding).
    """

    def shares(self, seats: int, rounds: Sequence[RoundContribution]) -> list[int]:
        """See `mercato.federation.shares.Scorer.shares`.

        Raises:
            FederationError: a round names a seat out of range, or no seat completed
                every round.
        """
        for record in rounds:
            for seat in record.examples:
                if not 0 <= seat < seats:
                    raise FederationError(f"Round {record.round} names seat {seat} of {seats}.")
        done = completed_every_round(rounds)
        if not done:
            raise FederationError(
                "No seat completed every round of this private task, so there is nothing to share."
            )
        return to_basis_points([1.0 if seat in done else 0.0 for seat in range(seats)])


# --- Coordinator side -------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateRound:
    """What one private round gives the coordinator.

    Attributes:
        params: The next global parameters (global + noisy mean update).
        completed: Flower node ids whose masked update is inside the aggregate.
        mean_update: The mean clipped update SecAgg+ revealed, before the noise.
        noise_std: Standard deviation of the noise added to each coordinate.
    """

    params: Params
    completed: frozenset[int]
    mean_update: Params
    noise_std: float


def run_private_round(
    grid: Grid,
    spec: TaskSpec,
    params: Params,
    nodes: Sequence[int],
    round_number: int,
    *,
    timeout: float | None,
) -> PrivateRound:
    """Run one round with SecAgg+ and central DP over `nodes`.

    Args:
        grid: The ServerApp's grid.
        spec: The task's spec (private mode).
        params: The global parameters the round starts from.
        nodes: Flower node ids of the admitted participants connected now.
        round_number: The round (1-based).
        timeout: Seconds each SecAgg+ stage waits for replies (None: no limit).

    Returns:
        The round's outcome.

    Raises:
        FederationSpecError: the spec is not in private mode.
        FederationError: too few participants, or too few completed the protocol for
            the aggregate to be unmasked (the round is void; nothing was revealed).
    """
    settings = settings_of(spec)
    if not settings.private:
        raise FederationSpecError("run_private_round needs a spec with privacy = 'private'.")
    watched = _WatchedGrid(grid)
    try:
        return _secure_round(watched, spec, settings, params, nodes, round_number, timeout)
    except FederationError:
        # Flower's SecAgg+ cannot unmask when a participant went away before sharing its
        # keys. Run the round once more with exactly the nodes whose masked vectors the
        # coordinator got: the same set, so no second sum over a subset of the same
        # updates (whose difference would be one participant's update) can exist.
        again = sorted(watched.masked or watched.last_answered)
        if set(again) == set(nodes) or len(again) < MIN_PRIVATE_PARTICIPANTS:
            raise
        return _secure_round(
            _WatchedGrid(grid), spec, settings, params, again, round_number, timeout
        )


class _WatchedGrid:
    """The grid, noting which nodes answered each SecAgg+ stage of a round."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.masked: set[int] = set()  # nodes that sent a masked vector
        self.last_answered: set[int] = set()

    @property
    def run(self) -> Any:
        return self.grid.run

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        sent = list(messages)
        replies = list(self.grid.send_and_receive(sent, timeout=timeout))
        answered = {r.metadata.src_node_id for r in replies if not r.has_error()}
        self.last_answered = answered
        stages = {
            m.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE)
            for m in sent
            if RECORD_KEY_CONFIGS in m.content.config_records
        }
        if Stage.COLLECT_MASKED_VECTORS in stages:
            self.masked = answered
        return replies


def _secure_round(
    grid: Any,
    spec: TaskSpec,
    settings: PrivacySettings,
    params: Params,
    nodes: Sequence[int],
    round_number: int,
    timeout: float | None,
) -> PrivateRound:
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server import ServerConfig
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    num_shares, threshold = secagg_parameters(settings, len(nodes))
    spec_text = spec.to_json_bytes().decode("utf-8")

    def fit_config(server_round: int) -> dict[str, Any]:
        return {"spec": spec_text, "round": server_round}

    inner = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=len(nodes),
        min_evaluate_clients=0,
        min_available_clients=len(nodes),
        on_fit_config_fn=fit_config,
    )
    dp = DifferentialPrivacyClientSideFixedClipping(
        inner, settings.noise_multiplier, settings.clipping_norm, len(nodes)
    )
    recorder = _Recorder(dp)
    manager = SimpleClientManager()
    run_id = grid.run.run_id
    for node in nodes:
        manager.register(GridClientProxy(node, grid, run_id))
    state = RecordDict()
    context = LegacyContext(
        Context(run_id=run_id, node_id=0, node_config={}, state=state, run_config={}),
        config=ServerConfig(num_rounds=spec.rounds),
        strategy=recorder,
        client_manager=manager,
    )
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {WorkflowKey.CURRENT_ROUND: round_number}
    )
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([np.asarray(p, dtype=np.float64) for p in params]), True
    )
    workflow = SecAggPlusWorkflow(
        num_shares=num_shares,
        reconstruction_threshold=threshold,
        max_weight=1.0,  # every update weighs 1: the DP sensitivity is clipping_norm / n
        clipping_range=settings.clipping_norm,
        timeout=timeout,
    )
    workflow(grid, context)
    if recorder.noisy is None or recorder.mean is None:
        raise FederationError(
            f"Round {round_number}: secure aggregation did not complete (fewer than "
            f"{threshold} participants stayed through it), so no aggregate was revealed."
        )
    noisy = parameters_to_ndarrays(recorder.noisy)
    if len(noisy) != len(params):
        raise FederationError(f"Round {round_number}: the aggregate has the wrong shape.")
    new: Params = [np.asarray(p, dtype=np.float64) + d for p, d in zip(params, noisy, strict=True)]
    std = settings.noise_multiplier * settings.clipping_norm / len(recorder.completed)
    return PrivateRound(new, frozenset(recorder.completed), recorder.mean, std)


def _recorder_base() -> type:
    from flwr.server.strategy import Strategy

    return Strategy


class _Recorder(_recorder_base()):  # type: ignore[misc]
    """Passes a round to Flower's DP wrapper and keeps what the coordinator needs:
    which nodes completed, the revealed mean and the noisy one.

    Nodes that dropped out are left out of the mean (SecAgg+ already removed their
    masks), and the wrapper's noise is sized for the nodes that remain, so the mean
    of fewer updates does not get noise meant for more.
    """

    def __init__(self, dp: Any) -> None:
        super().__init__()
        self.dp = dp
        self.completed: set[int] = set()
        self.mean: Params | None = None
        self.noisy: Any = None

    def initialize_parameters(self, client_manager: Any) -> Any:
        return None

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        return self.dp.configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        from flwr.common import parameters_to_ndarrays

        if not results:
            return None, {}
        self.completed = {proxy.node_id for proxy, _ in results}
        self.mean = [a.copy() for a in parameters_to_ndarrays(results[0][1].parameters)]
        self.dp.num_sampled_clients = len(results)
        self.noisy, metrics = self.dp.aggregate_fit(server_round, results, [])
        return self.noisy, metrics

    def configure_evaluate(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        return []

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        return None, {}

    def evaluate(self, server_round: int, parameters: Any) -> Any:
        return None


# --- Participant side -------------------------------------------------------------------

ClientCall = Callable[[Message, Context], Message]


def _refuse(msg: Message, reason: str) -> Message:
    # An error reply: the coordinator learns why, and no parameters leave.
    return Message(Error(code=REFUSED, reason=reason), reply_to=msg)


def _pinned_spec(text: object, context: Context) -> TaskSpec:
    from mercato.federation.spec import load_spec

    data = str(text).encode("utf-8")
    pinned = str(context.node_config.get(NODE_SPEC_SHA256, ""))
    if pinned and hashlib.sha256(data).hexdigest() != pinned.lower():
        raise FederationPrivacyError(
            "the coordinator sent a spec other than the one the task names on-chain"
        )
    return load_spec(data)


def client_mod(msg: Message, context: Context, call_next: ClientCall) -> Message:
    """The ClientApp mod that applies a task's privacy on the participant's side.

    - SecAgg+ stage messages go through Flower's `secaggplus_mod`; the training stage
      trains, clips the update to the spec's norm and uploads it masked.
    - A plain training message for a private task (by its spec, or by the mode the
      data owner's node was started with) is refused: no unmasked update leaves.
    - A scored task with `local_dp` gets Flower's `LocalDpMod`.

    Args:
        msg: The incoming message.
        context: The ClientApp's context (node config set by the data owner).
        call_next: The app's handler.

    Returns:
        The reply (an error reply when refused).
    """
    if msg.metadata.message_type != MessageType.TRAIN or not msg.has_content():
        return call_next(msg, context)
    pinned_mode = str(context.node_config.get(NODE_PRIVACY, ""))
    try:
        if RECORD_KEY_CONFIGS in msg.content.config_records:
            if pinned_mode and pinned_mode != "private":
                raise FederationPrivacyError("this task is not private; SecAgg+ was not expected")
            _check_secagg_stage(msg.content.config_records[RECORD_KEY_CONFIGS])
            from flwr.client.mod import secaggplus_mod

            return secaggplus_mod(msg, context, lambda m, c: _private_train(m, c, call_next))
        config = msg.content.config_records.get("config")
        if config is None or "spec" not in config:
            if pinned_mode == "private":
                raise FederationPrivacyError("a training message without the task's spec")
            return call_next(msg, context)
        spec = _pinned_spec(config["spec"], context)
        settings = settings_of(spec)
        if settings.private or pinned_mode == "private":
            raise FederationPrivacyError(
                "this task is private: updates leave only masked, through SecAgg+"
            )
        if settings.local_dp:
            from flwr.clientapp.mod import LocalDpMod

            mod = LocalDpMod(
                settings.clipping_norm,
                settings.clipping_norm,
                settings.local_epsilon,
                settings.delta,
            )
            return mod(msg, context, call_next)
        return call_next(msg, context)
    except (FederationPrivacyError, FederationSpecError) as exc:
        return _refuse(msg, str(exc))


def _check_secagg_stage(config: ConfigRecord) -> None:
    # A coordinator could lower the threshold to rebuild one participant's masks from
    # shares it collects under false claims of who dropped out; refuse such a setup.
    if config.get(Key.STAGE) != Stage.SETUP:
        return
    shares = config.get(Key.SHARE_NUMBER)
    threshold = config.get(Key.THRESHOLD)
    samples = config.get(Key.SAMPLE_NUMBER)
    if not all(
        isinstance(v, int) and not isinstance(v, bool) for v in (shares, threshold, samples)
    ):
        raise FederationPrivacyError("the SecAgg+ setup is malformed")
    shares, threshold, samples = cast(int, shares), cast(int, threshold), cast(int, samples)
    if samples < MIN_PRIVATE_PARTICIPANTS or threshold <= shares // 2 or threshold < 2:
        raise FederationPrivacyError(
            f"the SecAgg+ setup ({samples} participants, threshold {threshold} of {shares} "
            "shares) would let the coordinator unmask one participant's update"
        )


def _private_train(msg: Message, context: Context, call_next: ClientCall) -> Message:
    """SecAgg+'s training stage: train, clip to the spec's norm, answer the update."""
    from flwr.client.mod import fixedclipping_mod
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat

    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    spec = _pinned_spec(fitins.config.get("spec", ""), context)
    settings = settings_of(spec)
    if not settings.private:
        raise FederationPrivacyError("SecAgg+ for a task whose spec is not private")
    # The norm is the spec's: a coordinator asking for a larger one would weaken the
    # noise's guarantee.
    if float(cast(float, fitins.config.get(KEY_CLIPPING_NORM, -1.0))) != settings.clipping_norm:
        raise FederationPrivacyError("the clipping norm sent differs from the spec's")
    start = [np.asarray(a, dtype=np.float64) for a in parameters_to_ndarrays(fitins.parameters)]
    round_number = fitins.config.get("round", 0)

    def train(legacy: Message, ctxt: Context) -> Message:
        plain = Message(  # type: ignore[call-overload]  # a copy with new content
            metadata=copy.copy(legacy.metadata),
            content=RecordDict(
                {
                    "arrays": ArrayRecord([a.copy() for a in start]),
                    "config": ConfigRecord({"spec": fitins.config["spec"], "round": round_number}),
                }
            ),
        )
        reply = call_next(plain, ctxt)
        if reply.has_error():
            return reply
        from flwr.common import Code, FitRes, Status

        params = reply.content.array_records["arrays"].to_numpy_ndarrays()
        seconds = reply.content.metric_records.get("metrics", MetricRecord()).get(
            "train-seconds", 0.0
        )
        fitres = FitRes(
            Status(Code.OK, ""),
            ndarrays_to_parameters(params),
            1,  # equal weights: nobody's update counts more for claiming more examples
            {"train-seconds": float(cast(float, seconds))},
        )
        return Message(compat.fitres_to_recorddict(fitres, False), reply_to=legacy)

    out = fixedclipping_mod(msg, context, train)
    if out.has_error():
        return out
    fitres = compat.recorddict_to_fitres(out.content, keep_input=True)
    clipped = parameters_to_ndarrays(fitres.parameters)
    fitres.parameters = ndarrays_to_parameters(
        [np.asarray(c, dtype=np.float64) - s for c, s in zip(clipped, start, strict=True)]
    )
    return Message(compat.fitres_to_recorddict(fitres, False), reply_to=msg)


def node_config_for(spec_json: bytes, mode: str) -> dict[str, str]:
    """The node config entries a participant's SuperNode pins its task with.

    Args:
        spec_json: The canonical spec whose digest the task names on-chain.
        mode: The spec's privacy mode.

    Returns:
        `{"privacy": mode, "spec-sha256": hex digest}`.
    """
    return {NODE_PRIVACY: mode, NODE_SPEC_SHA256: hashlib.sha256(spec_json).hexdigest()}


def replies_hold_only_masked(replies: Iterable[Message]) -> bool:
    """Whether no reply carries parameters in the clear (every ArrayRecord is empty).

    A check the coordinator's side can make on what it received in a private round.
    """
    for reply in replies:
        if reply.has_content():
            for record in reply.content.array_records.values():
                if len(record) > 0:
                    return False
    return True
