# SPDX-License-Identifier: AGPL-3.0-only
"""Private mode (SecAgg+ and differential privacy) and local DP.

The rounds here run Mercato's real ServerApp code (`run_private_round`, Flower's
SecAgg+ workflow and DP wrapper) against Mercato's real ClientApp with its mods, in one
process: only the transport is replaced (`inprocess.InProcessGrid`, which still puts
every message through Flower's protobuf serialisation). The same code over real
SuperLink/SuperNode processes is tested in tests/integration/federation/test_private_mode.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import FitIns, bytes_to_ndarray, ndarrays_to_parameters
from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_combine
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM
from sklearn.datasets import load_digits

from mercato.errors import FederationError, FederationSpecError
from mercato.federation import privacy
from mercato.federation.client_app import app as client_app
from mercato.federation.learning import Params, initial_params, train_local
from mercato.federation.privacy import (
    CompletedEveryRoundScorer,
    client_mod,
    epsilon_after,
    run_private_round,
    settings_from,
    task_epsilon,
)
from mercato.federation.shares import RoundContribution
from mercato.federation.spec import InputSchema, TaskSpec
from tests.unit.federation.inprocess import InProcessGrid, server_identity

CLIP = 2.0
QUANTIZATION = 4194304  # SecAgg+'s default quantization range (2**22)


def _spec(**overrides: Any) -> TaskSpec:
    values: dict[str, Any] = {
        "name": "digits",
        "input": InputSchema(n_features=64, classes=tuple(range(10))),
        "rounds": 2,
        "min_participants": 3,
        "max_participants": 4,
        "privacy": "private",
        "privacy_settings": {"clipping_norm": CLIP, "noise_multiplier": 0.5},
    }
    values.update(overrides)
    return TaskSpec(**values)


@pytest.fixture(scope="module")
def owners(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Four data owners' files (node id -> path), each holding mostly its own classes."""
    features, labels = load_digits(return_X_y=True)
    features = features / 16.0
    root = tmp_path_factory.mktemp("owners")
    paths = {}
    for k in range(4):
        rows = np.flatnonzero(labels % 4 == k)[:200]
        path = root / f"owner{k}.npz"
        np.savez(path, X=features[rows], y=labels[rows])
        paths[101 + k] = path
    return paths


def _grid(owners: dict[int, Path], spec: TaskSpec, nodes: int = 4) -> InProcessGrid:
    pins = privacy.node_config_for(spec.to_json_bytes(), spec.privacy)
    return InProcessGrid(
        client_app,
        {node: {"data-path": str(path), **pins} for node, path in list(owners.items())[:nodes]},
    )


def _clipped_update(spec: TaskSpec, start: Params, path: Path) -> Params:
    """What a participant's update is after clipping, computed here independently."""
    with np.load(path) as data:
        features, labels = data["X"].astype(np.float32), data["y"]
    trained = train_local(spec, [p.copy() for p in start], features, labels).params
    update = [np.asarray(t, dtype=np.float64) - s for t, s in zip(trained, start, strict=True)]
    norm = math.sqrt(sum(float(np.sum(u * u)) for u in update))
    return [u * min(1.0, CLIP / norm) for u in update]


def _arrays_in(reply: Message) -> list[np.ndarray]:
    """Every array a reply carries: its ArrayRecords, and any bytes that decode to one."""
    found: list[np.ndarray] = []
    if not reply.has_content():
        return found
    for record in reply.content.array_records.values():
        found.extend(record.to_numpy_ndarrays())
    for config in reply.content.config_records.values():
        for value in config.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, bytes):
                    with contextlib.suppress(ValueError, OSError, EOFError):
                        found.append(bytes_to_ndarray(item))
    return found


def test_the_coordinator_receives_only_masked_updates_and_unmasks_only_their_mean(
    owners: dict[int, Path],
) -> None:
    spec = _spec()
    start: Params = [p.astype(np.float64) for p in initial_params(spec)]
    grid = _grid(owners, spec)
    with server_identity():
        outcome = run_private_round(grid, spec, start, list(grid.contexts), 1, timeout=None)
    assert outcome.completed == frozenset(grid.contexts)
    updates = {node: _clipped_update(spec, start, owners[node]) for node in grid.contexts}
    # The aggregate is the plain mean of the clipped updates, to quantization error.
    step = 2 * CLIP / (QUANTIZATION - 1)
    for index, revealed in enumerate(outcome.mean_update):
        plain = np.mean([updates[n][index] for n in grid.contexts], axis=0)
        np.testing.assert_allclose(revealed, plain, rtol=0, atol=step)
    # No reply carries a participant's update, its trained parameters, or the quantized
    # vector SecAgg+ would have sent without masks.
    masked_replies = 0
    for reply in grid.received:
        assert reply.has_content(), reply.error.reason if reply.has_error() else ""
        for record in reply.content.array_records.values():
            assert len(record) == 0
        arrays = _arrays_in(reply)
        node = reply.metadata.src_node_id
        individual = updates[node]
        clear = factor_combine(
            QUANTIZATION,
            quantize([np.asarray(u, dtype=np.float64) for u in individual], CLIP, QUANTIZATION),
        )
        for array in arrays:
            for mine in [*individual, *(s + u for s, u in zip(start, individual, strict=True))]:
                assert array.shape != mine.shape or not np.allclose(array, mine, atol=1e-3)
            for quantized in clear:
                if array.shape == quantized.shape:
                    masked_replies += 1
                    assert np.mean(array == quantized) < 0.01
    assert masked_replies >= len(grid.contexts)  # each sent its masked vector once
    # Gaussian noise of the announced size went on the mean (650 coordinates: the sample
    # standard deviation is within a few percent of the true one).
    noise = np.concatenate(
        [
            (new - s - m).ravel()
            for new, s, m in zip(outcome.params, start, outcome.mean_update, strict=True)
        ]
    )
    assert outcome.noise_std == pytest.approx(0.5 * CLIP / 4)
    assert np.std(noise) == pytest.approx(outcome.noise_std, rel=0.2)


def test_a_participant_that_drops_out_gets_share_zero_and_the_others_split_equally(
    owners: dict[int, Path],
) -> None:
    spec = _spec()
    params: Params = [p.astype(np.float64) for p in initial_params(spec)]
    grid = _grid(owners, spec)
    seats = {node: seat for seat, node in enumerate(grid.contexts)}
    grid.dropped["2"] = {104}  # seat 3 goes silent in round 2
    rounds = []
    with server_identity():
        for number in (1, 2):
            outcome = run_private_round(grid, spec, params, list(grid.contexts), number, timeout=5)
            params = outcome.params
            rounds.append(RoundContribution(number, {seats[n]: 1 for n in outcome.completed}))
    assert [set(r.examples) for r in rounds] == [{0, 1, 2, 3}, {0, 1, 2}]
    assert CompletedEveryRoundScorer().shares(4, rounds) == [3334, 3333, 3333, 0]
    assert privacy.completed_every_round(rounds) == {0, 1, 2}


def test_a_round_too_few_finish_reveals_nothing_and_fails(owners: dict[int, Path]) -> None:
    spec = _spec()
    params: Params = [p.astype(np.float64) for p in initial_params(spec)]
    grid = _grid(owners, spec, nodes=3)
    grid.dropped["1"] = {101, 102}  # two of three gone: below the threshold of 2
    with server_identity(), pytest.raises(FederationError, match="did not complete"):
        run_private_round(grid, spec, params, list(grid.contexts), 1, timeout=5)
    assert all(
        len(r.content.array_records.get("fitres.parameters", [])) == 0
        for r in grid.received
        if r.has_content()
    )


def test_shares_need_someone_who_completed_every_round() -> None:
    rounds = [RoundContribution(1, {0: 1, 1: 1}), RoundContribution(2, {2: 1})]
    with pytest.raises(FederationError, match="completed every round"):
        CompletedEveryRoundScorer().shares(3, rounds)
    with pytest.raises(FederationError, match="seat 5"):
        CompletedEveryRoundScorer().shares(3, [RoundContribution(1, {5: 1})])


def test_epsilon_grows_with_rounds_and_matches_the_rdp_bound() -> None:
    settings = privacy.settings_of(_spec())
    values = [epsilon_after(settings, r) for r in range(0, 6)]
    assert values[0] == 0.0
    assert all(b is not None and a is not None and b > a for a, b in itertools.pairwise(values))
    # The Gaussian mechanism's RDP is alpha / (2 z^2) per round; the classic conversion
    # gives an upper bound that Flower's (tighter) accountant must not exceed.
    z, delta = 0.5, 1e-5
    for rounds, epsilon in enumerate(values[1:], start=1):
        bound = min(
            rounds * a / (2 * z * z) + math.log(1 / delta) / (a - 1)
            for a in np.linspace(1.01, 200, 20000)
        )
        assert epsilon is not None and 0 < epsilon <= bound
    # More noise, less epsilon.
    quieter = privacy.settings_of(
        _spec(privacy_settings={"clipping_norm": 1.0, "noise_multiplier": 2.0})
    )
    assert (epsilon_after(quieter, 3) or 0) < (values[3] or 0)
    # A scored task without local DP spends no budget.
    assert task_epsilon(_spec(privacy="none", privacy_settings={}), 3) is None


def test_local_dp_epsilon_is_reported_per_task() -> None:
    spec = _spec(
        privacy="none",
        privacy_settings={"local_dp": True, "clipping_norm": 1.0, "local_epsilon": 2.0},
    )
    one, three = task_epsilon(spec, 1), task_epsilon(spec, 3)
    assert one is not None and three is not None
    assert 0 < one < three


@pytest.mark.parametrize(
    ("mode", "table", "message"),
    [
        ("secret", {}, "privacy must be one of"),
        ("private", {"clip": 1.0}, "Unknown privacy setting"),
        ("private", {"clipping_norm": 0}, "positive finite"),
        ("private", {"clipping_norm": float("nan")}, "positive finite"),
        ("private", {"noise_multiplier": -1.0}, "positive finite"),
        ("private", {"noise_multiplier": True}, "must be a number"),
        ("private", {"delta": 0.5}, "below 1/max_participants"),
        ("private", {"num_shares": 2}, "num_shares must be from 3"),
        ("private", {"num_shares": 4, "reconstruction_threshold": 2}, "more than half"),
        ("private", {"reconstruction_threshold": 3}, "more than half"),
        ("private", {"local_dp": True}, "local_dp is for the scored mode"),
        ("none", {"noise_multiplier": 1.0}, "would do nothing"),
        ("none", {"local_dp": True, "num_shares": 3}, "for private mode"),
        ("none", {"local_dp": "yes"}, "true or false"),
    ],
)
def test_bad_privacy_settings_are_refused(mode: str, table: dict[str, Any], message: str) -> None:
    with pytest.raises(FederationSpecError, match=message):
        settings_from(mode, table, min_participants=3, max_participants=4)


def test_a_private_task_needs_three_participants() -> None:
    with pytest.raises(FederationSpecError, match="min_participants >= 3"):
        _spec(min_participants=2)


def test_toml_privacy_table_and_digests_of_specs_without_it(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(
        'name = "digits"\nmin_participants = 4\nmax_participants = 5\n'
        "[input]\nn_features = 64\nclasses = [0, 1, 2]\n"
        '[privacy]\nmode = "private"\nclipping_norm = 0.5\nnoise_multiplier = 1.1\n'
        "reconstruction_threshold = 3\n"
    )
    spec = TaskSpec.from_toml(path)
    assert spec.privacy == "private"
    assert privacy.settings_of(spec).reconstruction_threshold == 3
    assert TaskSpec.from_dict(spec.to_dict()) == spec
    plain = _spec(privacy="none", privacy_settings={})
    assert b"privacy_settings" not in plain.to_json_bytes()  # older specs keep their CID


# --- The participant's side refuses what would weaken its task's privacy ---------------


def _context(spec: TaskSpec, data: Path, **pins: str) -> Context:
    config: dict[str, bool | float | int | str] = {"data-path": str(data), **pins}
    return Context(1, 101, config, RecordDict(), {})


def _plain_train_message(spec: TaskSpec) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord([p.astype(np.float64) for p in initial_params(spec)]),
            "config": ConfigRecord({"spec": spec.to_json_bytes().decode(), "round": 1}),
        }
    )
    with server_identity():
        message = Message(content, dst_node_id=101, message_type="train", group_id="1")
    message.metadata.__dict__["_message_id"] = "m1"
    return message


class _Handler:
    """The app behind the mod: counts calls (a refusal must not train at all)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, msg: Message, context: Context) -> Message:
        self.calls += 1
        arrays = msg.content.array_records["arrays"].to_numpy_ndarrays()
        reply = RecordDict(
            {
                "arrays": ArrayRecord([a + 1.0 for a in arrays]),
                "metrics": MetricRecord({"num-examples": 5}),
            }
        )
        return Message(reply, reply_to=msg)


def test_a_plain_update_is_refused_for_a_private_task(owners: dict[int, Path]) -> None:
    spec = _spec()
    handler = _Handler()
    reply = client_mod(_plain_train_message(spec), _context(spec, owners[101]), handler)
    assert reply.has_error() and "private" in str(reply.error.reason)
    assert handler.calls == 0


def test_a_coordinator_cannot_switch_privacy_off_with_another_spec(owners: dict[int, Path]) -> None:
    private = _spec()
    downgraded = _spec(privacy="none", privacy_settings={})
    handler = _Handler()
    pins = privacy.node_config_for(private.to_json_bytes(), "private")
    # The node was started for the private task; the coordinator sends a "none" spec.
    reply = client_mod(
        _plain_train_message(downgraded), _context(private, owners[101], **pins), handler
    )
    assert reply.has_error() and "spec other than" in str(reply.error.reason)
    # Even without the digest pin, the pinned mode alone refuses it.
    reply = client_mod(
        _plain_train_message(downgraded),
        _context(private, owners[101], privacy="private"),
        handler,
    )
    assert reply.has_error() and "private" in str(reply.error.reason)
    assert handler.calls == 0


def _secagg_message(config: dict[str, Any]) -> Message:
    with server_identity():
        message = Message(
            RecordDict({RECORD_KEY_CONFIGS: ConfigRecord(config)}),
            dst_node_id=101,
            message_type="train",
            group_id="1",
        )
    message.metadata.__dict__["_message_id"] = "m2"
    return message


@pytest.mark.parametrize(("samples", "shares", "threshold"), [(4, 4, 2), (4, 4, 1), (2, 2, 2)])
def test_a_secagg_setup_that_would_unmask_one_participant_is_refused(
    owners: dict[int, Path], samples: int, shares: int, threshold: int
) -> None:
    spec = _spec()
    setup = {
        Key.STAGE: Stage.SETUP,
        Key.SAMPLE_NUMBER: samples,
        Key.SHARE_NUMBER: shares,
        Key.THRESHOLD: threshold,
        Key.CLIPPING_RANGE: CLIP,
        Key.TARGET_RANGE: QUANTIZATION,
        Key.MOD_RANGE: 2**32,
        Key.MAX_WEIGHT: 1.0,
    }
    context = _context(spec, owners[101], privacy="private")
    reply = client_mod(_secagg_message(setup), context, _Handler())
    assert reply.has_error() and "unmask one participant" in str(reply.error.reason)
    # The same setup with a threshold above half of the shares is accepted (keys made).
    setup[Key.SAMPLE_NUMBER], setup[Key.SHARE_NUMBER], setup[Key.THRESHOLD] = 4, 4, 3
    reply = client_mod(_secagg_message(setup), _context(spec, owners[101]), _Handler())
    assert not reply.has_error()
    assert Key.PUBLIC_KEY_1 in reply.content.config_records[RECORD_KEY_CONFIGS]


def test_a_larger_clipping_norm_than_the_specs_is_refused(owners: dict[int, Path]) -> None:
    spec = _spec()
    fitins = FitIns(
        ndarrays_to_parameters([p.astype(np.float64) for p in initial_params(spec)]),
        {"spec": spec.to_json_bytes().decode(), "round": 1, KEY_CLIPPING_NORM: 1000.0},
    )
    with server_identity():
        message = Message(
            compat.fitins_to_recorddict(fitins, True),
            dst_node_id=101,
            message_type="train",
            group_id="1",
        )
    message.metadata.__dict__["_message_id"] = "m3"
    handler = _Handler()
    with pytest.raises(privacy.FederationPrivacyError, match="clipping norm"):
        privacy._private_train(message, _context(spec, owners[101]), handler)
    assert handler.calls == 0


def test_local_dp_clips_and_noises_a_scored_update(owners: dict[int, Path]) -> None:
    spec = _spec(
        privacy="none",
        privacy_settings={"local_dp": True, "clipping_norm": 0.001, "local_epsilon": 100.0},
    )
    message = _plain_train_message(spec)
    start = message.content.array_records["arrays"].to_numpy_ndarrays()
    handler = _Handler()  # moves every parameter by 1.0: an update of norm ~25
    reply = client_mod(message, _context(spec, owners[101]), handler)
    assert handler.calls == 1 and not reply.has_error()
    sent = reply.content.array_records["arrays"].to_numpy_ndarrays()
    moved = math.sqrt(sum(float(np.sum((s - a) ** 2)) for s, a in zip(sent, start, strict=True)))
    # Clipped to 0.001, plus noise of std 0.001 * sqrt(2 ln(1.25e5)) / 100 per coordinate.
    expected_noise = 0.001 * math.sqrt(2 * math.log(1.25 / 1e-5)) / 100 * math.sqrt(650)
    assert moved < 10 * (0.001 + expected_noise)
    assert moved > 0


def test_node_config_pins_the_spec_digest() -> None:
    spec = _spec()
    pins = privacy.node_config_for(spec.to_json_bytes(), "private")
    assert pins == {
        "privacy": "private",
        "spec-sha256": hashlib.sha256(spec.to_json_bytes()).hexdigest(),
    }


def test_the_servers_rounds_run_private_mode_and_record_who_completed(
    owners: dict[int, Path], tmp_path: Path
) -> None:
    """F2's ServerApp loop (`run_rounds`) with a private spec: SecAgg+ rounds, a model per
    round, and each round's record naming the seats in its aggregate with weight 1."""
    import json

    from mercato.federation import checkpoint
    from mercato.federation.server_app import NO_COMMIT, run_rounds

    spec = _spec()
    grid = _grid(owners, spec)
    grid.dropped["2"] = {103}
    directory = tmp_path / "task"
    directory.mkdir()
    (directory / "spec.json").write_bytes(spec.to_json_bytes())
    (directory / "task.json").write_text(json.dumps({"task_id": 1}))
    (directory / NO_COMMIT).write_text("")
    seats = {node: seat for seat, node in enumerate(grid.contexts)}
    (directory / "nodes.json").write_text(json.dumps({str(n): s for n, s in seats.items()}))
    start = initial_params(spec)
    np.savez(directory / "initial.npz", **{f"p{i}": p for i, p in enumerate(start)})  # type: ignore[arg-type]
    with server_identity():
        run_rounds(grid, directory, timeout=5, min_replies=3)
    digest = hashlib.sha256(spec.to_json_bytes()).hexdigest()
    loaded = checkpoint.load(directory, 1, digest)
    assert loaded is not None
    state, _ = loaded
    assert [c.examples for c in state.contributions] == [
        {0: 1, 1: 1, 2: 1, 3: 1},
        {0: 1, 1: 1, 3: 1},
    ]
    assert (directory / "round-0002.onnx").exists()
    assert CompletedEveryRoundScorer().shares(4, state.contributions)[2] == 0
    # Not one reply the coordinator got carried parameters in the clear.
    assert all(
        len(record) == 0
        for reply in grid.received
        if reply.has_content()
        for record in reply.content.array_records.values()
    )


def test_a_supernode_is_started_with_its_tasks_pins(tmp_path: Path) -> None:
    from flwr.common.config import parse_config_args

    from mercato.federation.runtime import SuperNode

    spec = _spec()
    pins = privacy.node_config_for(spec.to_json_bytes(), spec.privacy)
    node = SuperNode(
        tmp_path,
        superlink="127.0.0.1:1",
        ca=tmp_path / "ca.pem",
        private_key=tmp_path / "key",
        data_path=tmp_path / "data.npz",
        runtime_port=1,
        task_pins={**pins, "evil": 'x" data-path="/etc'},
    )
    config = parse_config_args([node.args[node.args.index("--node-config") + 1]])
    assert config == {
        "data-path": str(tmp_path / "data.npz"),
        "updates-dir": str(tmp_path / "updates"),  # where the ClientApp keeps what it sent
        **pins,
    }
