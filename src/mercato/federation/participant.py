# SPDX-License-Identifier: AGPL-3.0-only
"""A data owner's side of a task: check the data, join, run a pinned SuperNode.

`start_participant` does, in this order, and stops at the first failure with nothing
sent: read the spec, check the local file against it, create or load the SuperNode key,
publish the public key in the node's store (its raw CIDv1's digest is the hash `join`
binds, so the coordinator finds and checks it), join unless this account holds a seat,
and start the SuperNode pinned to Mercato's app, pointed at the spec's SuperLink and
verifying it with the spec's TLS root certificate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from multiformats import CID

from mercato.chain.anvil import free_port
from mercato.errors import FederationSpecError
from mercato.federation.data import load_local_data
from mercato.federation.keys import load_or_create_node_key, node_key_hash
from mercato.federation.runtime import SuperNode
from mercato.federation.spec import TaskSpec, load_spec, store_bytes
from mercato.storage.blockstore import Blockstore

DONE_STATUSES = (3, 4, 5)  # finalized, cancelled, aborted


def start_participant(
    chain: Any,
    store: Blockstore,
    account: str,
    task_id: int,
    data_path: str | Path,
    directory: Path,
    *,
    superlink_address: str | None = None,
    runtime_port: int | None = None,
) -> SuperNode:
    """`join_task`, then start the SuperNode (see `join_task` for Args and Raises).

    Returns:
        The running SuperNode (stop it when the task is done: `wait_until_done`).
    """
    node = join_task(
        chain, store, account, task_id, data_path, directory,
        superlink_address=superlink_address, runtime_port=runtime_port,
    )  # fmt: skip
    node.start()
    return node


def join_task(
    chain: Any,
    store: Blockstore,
    account: str,
    task_id: int,
    data_path: str | Path,
    directory: Path,
    *,
    superlink_address: str | None = None,
    runtime_port: int | None = None,
) -> SuperNode:
    """Check the data, join the task, and prepare this data owner's SuperNode.

    Args:
        chain: `market.federation`.
        store: The node's store (must hold the spec and the TLS root certificate).
        account: This data owner's address.
        task_id: The task.
        data_path: The local CSV or .npz file.
        directory: This data owner's federation directory (`<data dir>/federation`).
        superlink_address: Overrides the spec's `coordinator_address`.
        runtime_port: The SuperNode's local runtime port (default: a free one).

    Returns:
        The SuperNode, not started yet (start it once the coordinator has admitted
        the joined keys, or it may give up before its key is known).

    Raises:
        FederationSpecError: the spec or its TLS certificate is not in the store, or
            the spec names no SuperLink address.
        LocalDataError: the file does not match the spec (nothing was sent).
        ContractRevertError: the chain refused the join.
    """
    task = chain.task(task_id)
    if not store.has(task.spec_cid):
        raise FederationSpecError(f"Task {task_id}'s spec {task.spec_cid} is not in the store yet.")
    spec = load_spec(store.get(task.spec_cid))
    load_local_data(data_path, spec)  # raises before anything is sent
    address = superlink_address or spec.coordinator_address
    if not address or not spec.tls_root_cid:
        raise FederationSpecError(
            f"Task {task_id}'s spec names no SuperLink address or TLS root certificate."
        )
    ca_cid = CID.decode(spec.tls_root_cid)
    if not store.has(ca_cid):
        raise FederationSpecError(f"The task's TLS root certificate {ca_cid} is not in the store.")
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / f"task-{task_id}-ca.pem"
    ca_path.write_bytes(store.get(ca_cid))
    private_key, pem = load_or_create_node_key(directory)
    store_bytes(store, pem)  # the coordinator finds it by the hash join binds
    seated = any(p.account.lower() == account.lower() for p in chain.participants(task_id))
    if not seated:
        chain.join(task_id, node_key_hash(pem))
    node = SuperNode(
        directory / f"task-{task_id}",
        superlink=address,
        ca=ca_path,
        private_key=private_key,
        data_path=Path(data_path).resolve(),
        runtime_port=runtime_port or free_port(),
    )
    return node


def wait_until_done(chain: Any, task_id: int, node: SuperNode, *, poll_seconds: float = 2.0) -> int:
    """Keep the SuperNode up until the task is finalized, cancelled or aborted.

    Returns:
        The task's final status.
    """
    try:
        while True:
            status = int(chain.task(task_id).status)
            if status in DONE_STATUSES:
                return status
            time.sleep(poll_seconds)
    finally:
        node.stop()


def spec_of(chain: Any, store: Blockstore, task_id: int) -> TaskSpec:
    """The task's spec from the store.

    Raises:
        FederationSpecError: not in the store, or invalid.
    """
    task = chain.task(task_id)
    if not store.has(task.spec_cid):
        raise FederationSpecError(f"Task {task_id}'s spec {task.spec_cid} is not in the store yet.")
    return load_spec(store.get(task.spec_cid))
