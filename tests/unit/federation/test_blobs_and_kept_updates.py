# SPDX-License-Identifier: AGPL-3.0-only
"""Federation blobs above one block (UnixFS files, read back verified) and the updates
a ClientApp keeps as sent (for `mercato fl verify --updates`), with the real blockstore,
the real ClientApp and Flower's local DP mod."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from multiformats import multihash

from mercato.cli.errors import exit_code_for
from mercato.errors import (
    BlockHashMismatchError,
    DagFormatError,
    FederationEvidenceError,
    FederationInputError,
    FederationSpecError,
    OwnUpdateMismatchError,
)
from mercato.federation.client_app import app as client_app
from mercato.federation.evidence import update_digest, verify_task
from mercato.federation.learning import initial_params
from mercato.federation.spec import (
    InitialModel,
    InputSchema,
    TaskSpec,
    blob_cid_for,
    blob_cid_for_root,
    raw_cid_for,
    read_blob,
    round_model_cid,
    store_bytes,
)
from mercato.federation.updates import kept_updates
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import MAX_BLOCK_SIZE, block_key, cid_from_bytes
from mercato.storage.dagpb import decode_node
from mercato.storage.unixfs import only_hash

from . import rounds as R
from .inprocess import server_identity

BIG = os.urandom(5 * 1024 * 1024 + 123)


def test_small_blobs_keep_their_raw_cid_and_large_ones_are_unixfs_files(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "store")
    small = b"x" * MAX_BLOCK_SIZE  # exactly the limit: still one raw block
    assert store_bytes(store, small) == raw_cid_for(small) == blob_cid_for(small)
    assert read_blob(store, raw_cid_for(small)) == small
    cid = store_bytes(store, BIG)
    assert cid.codec.name == "dag-pb" and cid.version == 1
    # The CID `ipfs add --cid-version=1 --raw-leaves --chunker=size-1048576` gives.
    assert cid == blob_cid_for(BIG) == only_hash([BIG], profile="unixfs-v1-2025")
    assert read_blob(store, cid) == BIG
    # From the digest the chain commits and the block it names, the right CID again.
    digest = multihash.unwrap(bytes(cid.digest))
    raw_form = raw_cid_for(b"").__class__("base32", 1, "raw", bytes(cid.digest))
    assert blob_cid_for_root(digest, store.get(raw_form)) == cid
    assert blob_cid_for_root(multihash.unwrap(bytes(raw_cid_for(small).digest)), small) == (
        raw_cid_for(small)
    )


def test_stored_blobs_are_pinned_so_gc_keeps_them(tmp_path: Path) -> None:
    # A node serves its specs, round models and evidence to verifiers for as long as
    # the task can be checked: `mercato store gc` must not take them.
    store = Blockstore(tmp_path / "store")
    small, stray = b"a round's evidence", b"an unpinned block"
    store.put(raw_cid_for(stray), stray)
    small_cid, big_cid = store_bytes(store, small), store_bytes(store, BIG)
    assert store.is_pinned(small_cid) and store.is_pinned(big_cid)
    result = store.gc()
    assert result.removed_blocks == 1 and not store.has(raw_cid_for(stray))
    assert read_blob(store, small_cid) == small
    assert read_blob(store, big_cid) == BIG


def test_a_round_models_cid_from_its_committed_digest(tmp_path: Path) -> None:
    # What the task page shows for a round: the chain holds only the model's sha256
    # (of the root block for a file above one block).
    store = Blockstore(tmp_path / "store")
    small = b"a small onnx model"
    big_cid, small_cid = store_bytes(store, BIG), store_bytes(store, small)
    assert round_model_cid(store, multihash.unwrap(bytes(big_cid.digest))) == big_cid
    assert round_model_cid(store, multihash.unwrap(bytes(small_cid.digest))) == small_cid
    elsewhere = Blockstore(tmp_path / "another-node")  # holds neither: the raw guess
    assert round_model_cid(elsewhere, multihash.unwrap(bytes(small_cid.digest))) == small_cid
    assert round_model_cid(elsewhere, multihash.unwrap(bytes(big_cid.digest))).codec.name == "raw"


def test_a_round_model_too_big_to_be_a_root_is_not_read_for_its_cid(tmp_path: Path) -> None:
    # A task page lists every round: telling a raw model from a file's root must not
    # read and hash each round's model (up to 2 MiB) on every page view.
    reads: list[object] = []

    class CountingStore(Blockstore):
        def get(self, cid):  # type: ignore[no-untyped-def]
            reads.append(cid)
            return super().get(cid)

    store = CountingStore(tmp_path / "store")
    model = os.urandom(MAX_BLOCK_SIZE)  # one raw block, far above any root's size
    cid = store_bytes(store, model)
    assert round_model_cid(store, multihash.unwrap(bytes(cid.digest))) == cid
    assert reads == []
    big_cid = store_bytes(store, BIG)  # a small root block: read once, to tell
    assert round_model_cid(store, multihash.unwrap(bytes(big_cid.digest))) == big_cid
    assert len(reads) == 1


def test_a_tampered_chunk_is_refused(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "store")
    cid = store_bytes(store, BIG)
    leaf = cid_from_bytes(bytes(decode_node(store.get(cid)).links[2].hash))
    path = store._path(block_key(leaf))
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BlockHashMismatchError):
        read_blob(store, cid)


def test_a_blob_declaring_more_than_allowed_is_refused_before_reading(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "store")
    cid = store_bytes(store, BIG)
    with pytest.raises(DagFormatError, match="at most"):
        read_blob(store, cid, max_bytes=len(BIG) - 1)


def test_a_spec_names_a_large_initial_model_by_its_unixfs_cid_only() -> None:
    schema = InputSchema(n_features=4, classes=(0, 1))
    spec = TaskSpec(name="t", input=schema, initial_model=InitialModel(str(blob_cid_for(BIG))))
    assert spec.initial_model.onnx_cid == str(blob_cid_for(BIG))
    dag_cbor = blob_cid_for(BIG).set(codec="dag-cbor")
    with pytest.raises(FederationSpecError, match="raw or dag-pb"):
        TaskSpec(name="t", input=schema, initial_model=InitialModel(str(dag_cbor)))


def test_verify_refuses_bytes_that_do_not_hash_to_a_chunked_cid() -> None:
    # A served "step model" whose bytes are not the file its CID names.
    from mercato.federation.evidence import (
        CommittedRound,
        RoundEvidence,
        aggregation_rule,
        round_method,
    )
    from mercato.federation.spec import scoring_of

    spec = TaskSpec(
        name="t",
        input=InputSchema(n_features=64, classes=tuple(range(10)), dtype="float64"),
        min_participants=1,
        max_participants=2,
        scoring={"validation_cid": str(raw_cid_for(b"v"))},
    )
    record = RoundEvidence(
        task_id=1,
        round=1,
        method=round_method(scoring_of(spec), 1),
        rule=asdict(aggregation_rule(scoring_of(spec))),
        previous_model=str(blob_cid_for(BIG)),
        step_model=str(blob_cid_for(BIG)),
        players=[[0]],
        update_digests={0: "00"},
        scores={0: 0.0},
        leave_one_out={0: 0.0},
        validation=str(raw_cid_for(b"v")),
    )
    served = {str(raw_cid_for(record.to_json_bytes())): record.to_json_bytes()}
    committed = [
        CommittedRound(
            1, str(raw_cid_for(b"m")), str(raw_cid_for(record.to_json_bytes())), frozenset({0})
        )
    ]

    def fetch_model(cid: str) -> bytes:
        return b"not the committed model"

    with pytest.raises(FederationEvidenceError, match="global model do not hash"):
        verify_task(1, spec, committed, served.__getitem__, initial=None, fetch_model=fetch_model)


def _spec(local_dp: bool) -> TaskSpec:
    privacy = {"local_dp": True, "clipping_norm": 5.0, "local_epsilon": 10.0} if local_dp else {}
    return TaskSpec(
        name="digits",
        input=InputSchema(n_features=64, classes=tuple(range(10)), dtype="float64"),
        hyperparameters={"alpha": 0.0001, "eta0": 0.01},
        local_epochs=1,
        min_participants=1,
        max_participants=2,
        privacy_settings=privacy,
    )


def _train(spec: TaskSpec, context: Context, round_number: int) -> list[np.ndarray]:
    params = initial_params(spec)
    config = ConfigRecord({"spec": spec.to_json_bytes().decode(), "round": round_number})
    message = Message(
        RecordDict({"arrays": ArrayRecord(params), "config": config}),
        dst_node_id=1,
        message_type="train",
        group_id=str(round_number),
    )
    message.metadata.__dict__["_message_id"] = f"m{round_number}"
    reply = client_app(message, context)
    assert not reply.has_error(), reply.error
    return [
        np.asarray(a, dtype=np.float64)
        for a in reply.content.array_records["arrays"].to_numpy_ndarrays()
    ]


@pytest.mark.parametrize("local_dp", [True, False])
def test_the_client_app_keeps_exactly_the_update_it_sent(tmp_path: Path, local_dp: bool) -> None:
    parts, _, _ = R.digits_split()
    np.savez(tmp_path / "data.npz", X=parts[0].X, y=parts[0].y)
    kept = tmp_path / "updates"
    context = Context(
        1, 1, {"data-path": str(tmp_path / "data.npz"), "updates-dir": str(kept)}, RecordDict(), {}
    )
    spec = _spec(local_dp)
    with server_identity():
        first = _train(spec, context, 1)
        again = _train(spec, context, 1)  # the round sent again
    found = kept_updates(kept, 1)
    sent = {update_digest(first), update_digest(again)}
    assert {update_digest(update) for update in found} == sent
    assert len(found) == len(sent)  # one file per distinct update, named by its digest
    assert kept_updates(kept, 2) == []
    # With local DP two trainings of the same round differ (the noise); without, equal.
    assert (len(sent) == 2) is local_dp
    assert all(p.stat().st_mode & 0o077 == 0 for p in kept.iterdir())


def test_a_round_resent_without_end_keeps_a_bounded_number_of_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mercato.federation import updates

    monkeypatch.setattr(updates, "MAX_KEPT_PER_ROUND", 3)
    parts, _, _ = R.digits_split()
    np.savez(tmp_path / "data.npz", X=parts[0].X, y=parts[0].y)
    kept = tmp_path / "updates"
    config = {"data-path": str(tmp_path / "data.npz"), "updates-dir": str(kept)}
    context = Context(1, 1, config, RecordDict(), {})
    with server_identity():
        sent = [_train(_spec(True), context, 1) for _ in range(5)]  # noise: 5 distinct
    assert len({update_digest(update) for update in sent}) == 5
    assert len(kept_updates(kept, 1)) == 3
    with server_identity():
        _train(_spec(True), context, 2)
    assert len(kept_updates(kept, 2)) == 1  # other rounds are kept as before


def test_no_copy_is_kept_without_the_node_config_entry(tmp_path: Path) -> None:
    parts, _, _ = R.digits_split()
    np.savez(tmp_path / "data.npz", X=parts[0].X, y=parts[0].y)
    context = Context(1, 1, {"data-path": str(tmp_path / "data.npz")}, RecordDict(), {})
    with server_identity():
        _train(_spec(True), context, 1)
    assert list(tmp_path.iterdir()) == [tmp_path / "data.npz"]


def test_a_damaged_kept_update_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / f"round-0001-{'0' * 64}.bin").write_bytes(b"[[2]]\n" + bytes(16))
    with pytest.raises(FederationInputError, match="do not hash"):
        kept_updates(tmp_path, 1)


def test_own_update_mismatch_has_its_exit_code() -> None:
    error = OwnUpdateMismatchError(3, 2, "the update scored for seat 1 is another")
    assert isinstance(error, FederationEvidenceError)
    assert exit_code_for(error) == 123
