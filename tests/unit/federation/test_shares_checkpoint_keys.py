# SPDX-License-Identifier: AGPL-3.0-only
"""Shares, per-round checkpoints and SuperNode keys."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mercato.errors import FederationCheckpointError, FederationError, InvalidKeyMaterialError
from mercato.federation import checkpoint
from mercato.federation.keys import (
    check_public_key,
    load_or_create_node_key,
    node_key_hash,
    public_key_pem,
)
from mercato.federation.shares import ExampleWeightedScorer, RoundContribution, to_basis_points


def test_shares_follow_examples_over_the_rounds_each_seat_contributed_to() -> None:
    rounds = [
        RoundContribution(1, {0: 100, 1: 100, 2: 200}),
        RoundContribution(2, {0: 100, 2: 200}),  # seat 1 dropped out of round 2
    ]
    shares = ExampleWeightedScorer().shares(4, rounds)
    assert shares == [2857, 1429, 5714, 0]  # 200 : 100 : 400 : 0
    assert sum(shares) == 10_000


def test_basis_points_always_sum_to_10000_and_keep_zero_at_zero() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        weights = [float(w) if w > 0.3 else 0.0 for w in rng.random(rng.integers(1, 100))]
        if not any(weights):
            continue
        shares = to_basis_points(weights)
        assert sum(shares) == 10_000
        assert all(s == 0 for s, w in zip(shares, weights, strict=True) if w == 0)
    with pytest.raises(FederationError, match="nothing to share"):
        to_basis_points([0.0, 0.0])


def test_a_seat_with_a_tiny_contribution_keeps_a_share_so_keeps_its_stake() -> None:
    """A share of 0 forfeits the stake on-chain, so rounding must never give 0 to a seat
    that contributed: it gets 1 basis point, taken from the largest share."""
    rounds = [RoundContribution(1, {0: 1, 1: 100_000})]  # 0.1 bps by proportion
    assert ExampleWeightedScorer().shares(3, rounds) == [1, 9_999, 0]
    rng = np.random.default_rng(2)
    for _ in range(200):
        weights = [float(w) ** 6 if w > 0.2 else 0.0 for w in rng.random(rng.integers(2, 129))]
        if not any(weights):
            continue
        shares = to_basis_points(weights)
        assert sum(shares) == 10_000
        assert all((s > 0) == (w > 0) for s, w in zip(shares, weights, strict=True))
    with pytest.raises(FederationError, match="More than 10,000 seats"):
        to_basis_points([1.0] * 10_001)


def test_a_round_naming_a_seat_past_the_task_is_refused() -> None:
    with pytest.raises(FederationError, match="seat 5"):
        ExampleWeightedScorer().shares(2, [RoundContribution(1, {5: 10})])


def test_checkpoint_round_trips_and_refuses_another_task(tmp_path: Path) -> None:
    directory = checkpoint.task_dir(tmp_path, 31337, 7)
    assert checkpoint.load(directory, 7, "ab") is None
    state = checkpoint.CheckpointState(
        task_id=7, spec_digest="ab", round=2, model_cids=["c1", "c2"], metrics=[0.5, 0.7],
        contributions=[RoundContribution(1, {0: 3}), RoundContribution(2, {0: 3, 1: 4})],
    )  # fmt: skip
    params = [np.arange(6.0).reshape(2, 3), np.ones(2)]
    checkpoint.save(directory, state, params)
    loaded = checkpoint.load(directory, 7, "ab")
    assert loaded is not None
    assert loaded[0] == state
    assert [p.tolist() for p in loaded[1]] == [p.tolist() for p in params]
    with pytest.raises(FederationCheckpointError, match="another task"):
        checkpoint.load(directory, 8, "ab")
    (directory / "state.json").write_text("{")
    with pytest.raises(FederationCheckpointError, match="unreadable"):
        checkpoint.load(directory, 7, "ab")


def test_node_key_is_private_stable_and_hashes_its_pem(tmp_path: Path) -> None:
    private, pem = load_or_create_node_key(tmp_path)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    again, pem_again = load_or_create_node_key(tmp_path)
    assert (again, pem_again) == (private, pem)
    key = serialization.load_ssh_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert public_key_pem(key.public_key()) == pem
    assert node_key_hash(pem) == hashlib.sha256(pem).digest()
    assert check_public_key(pem).curve.name == "secp384r1"


def test_public_keys_flower_would_refuse_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    other = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidKeyMaterialError, match="NIST"):
        check_public_key(pem)
    with pytest.raises(InvalidKeyMaterialError):
        check_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    good = public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(InvalidKeyMaterialError, match="canonical"):
        check_public_key(good.replace(b"\n", b"\r\n"))
