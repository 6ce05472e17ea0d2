# SPDX-License-Identifier: AGPL-3.0-only
"""The updates a participant sent, kept on its own machine so it can check its own line
of a scored task's evidence.

With local DP (`[privacy] local_dp = true`) each update leaves with random noise, so a
participant cannot retrain to the update it sent and compare. Its SuperNode's ClientApp
therefore keeps the exact update each reply carried (`keep_sent_update`, the outermost
mod: after the noise) in the participant's task directory:

```
<data dir>/federation/task-<id>/updates/
└── round-NNNN-<sha256>.bin   # params_to_bytes of the update sent; mode 0600
```

`mercato fl verify TASK --updates DIR` reads them back (`kept_updates`): the evidence's
digest for the seat must be one of them, and its leave-one-out score must be what that
update earns on the revealed validation set. The files never leave the machine.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import Context, Message, MessageType

from mercato.errors import FederationError, FederationInputError
from mercato.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)
Params = list[np.ndarray[Any, Any]]
ClientCall = Callable[[Message, Context], Message]


MAX_KEPT_PER_ROUND = 16  # attempts of one round kept (a round is resent when short)
UPDATES_CONFIG = "updates-dir"  # the SuperNode's node config entry naming where they go


def updates_dir(directory: Path, task_id: int) -> Path:
    """Where a data owner's SuperNode keeps the updates it sent for a task
    (`<data dir>/federation/task-<id>/updates`, next to its log)."""
    return directory / f"task-{task_id}" / "updates"


def keep_sent_update(msg: Message, context: Context, call_next: ClientCall) -> Message:
    """The outermost ClientApp mod: writes the exact update the reply carries (after
    every other mod, so with local DP it is the noised update the coordinator gets)
    to the node's `updates-dir`, named by round and digest, mode 0600.

    With local DP a participant cannot retrain to the update it sent (the noise is
    random), so `mercato fl verify --updates DIR` checks the evidence against these
    files instead. Nothing is written for a private task (its reply carries only
    masked values), without the node config entry, or for an error reply.
    """
    reply = call_next(msg, context)
    target = str(context.node_config.get(UPDATES_CONFIG, ""))
    if not target or msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
        return reply
    try:
        config = msg.content.config_records.get("config")
        if config is None or "round" not in config or not reply.has_content():
            return reply
        round_number = int(cast(int, config["round"]))
        arrays = reply.content.array_records.get("arrays")
        if arrays is None:
            return reply
        params = [np.asarray(a, dtype=np.float64) for a in arrays.to_numpy_ndarrays()]
        if not params or not any(p.size for p in params):
            return reply
        from mercato.federation.evidence import params_to_bytes  # not at ClientApp start

        data = params_to_bytes(params)
        digest = hashlib.sha256(data).hexdigest()
        folder = Path(target)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"round-{round_number:04d}-{digest}.bin"
        if len(list(folder.glob(f"round-{round_number:04d}-*.bin"))) >= MAX_KEPT_PER_ROUND:
            # A coordinator resending one round without end would fill the disk.
            log.warning("round %d was sent more than %d times; %s not kept", round_number,
                        MAX_KEPT_PER_ROUND, name)  # fmt: skip
            return reply
        atomic_write_bytes(folder / name, data)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        # Keeping the copy is for the participant's own later check; the update is
        # sent regardless, and the log says why the check will lack it.
        log.warning("could not keep the update sent: %s", exc)
    return reply


def kept_updates(folder: Path, round_number: int) -> list[Params]:
    """The updates kept in `folder` for a round (usually one; a round the coordinator
    sent again has one per attempt).

    Raises:
        FederationInputError: a file cannot be read, or is not an update (each is
            checked against the digest in its name).
    """
    from mercato.federation.evidence import params_from_bytes

    found = []
    for path in sorted(folder.glob(f"round-{round_number:04d}-*.bin")):
        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != path.stem.rsplit("-", 1)[-1]:
                raise ValueError("its bytes do not hash to the digest in its name")
            found.append(params_from_bytes(data))
        except (OSError, ValueError, FederationError) as exc:
            raise FederationInputError(
                f"The kept update {path} cannot be used ({exc}); it is this node's own "
                "copy of what it sent, so without it that round cannot be checked."
            ) from exc
    return found
