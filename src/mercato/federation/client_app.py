# SPDX-License-Identifier: AGPL-3.0-only
"""Mercato's Flower ClientApp: what runs on a data owner's SuperNode.

It receives the global parameters and the task's spec (data, checked here again), reads
the data owner's file from the SuperNode's own node config (`data-path`, set by the
data owner, never by the coordinator), trains locally and answers with parameters and
two numbers: the examples used and the seconds spent training. Nothing else leaves.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mercato.federation.data import load_local_data
from mercato.federation.learning import Params, check_shapes, train_local
from mercato.federation.privacy import client_mod
from mercato.federation.spec import load_spec
from mercato.federation.updates import keep_sent_update

# client_mod applies the task's privacy: SecAgg+ with clipping in private mode (only
# masked updates leave), Flower's local DP when a scored task asks for it.
# keep_sent_update, outermost, keeps a copy of the update each reply carries (after the
# noise) in the participant's own task directory, for `mercato fl verify --updates`.
app = ClientApp(mods=[keep_sent_update, client_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the global model on the local file and answer with the new parameters."""
    spec = load_spec(str(msg.content.config_records["config"]["spec"]).encode("utf-8"))
    features, labels = load_local_data(str(context.node_config["data-path"]), spec)
    arrays = msg.content.array_records["arrays"].to_numpy_ndarrays()
    params: Params = [np.asarray(a, dtype=np.float64) for a in arrays]
    check_shapes(spec, params)
    result = train_local(spec, params, features, labels)
    reply = RecordDict(
        {
            "arrays": ArrayRecord(result.params),
            "metrics": MetricRecord(
                {"num-examples": result.num_examples, "train-seconds": result.train_seconds}
            ),
        }
    )
    return Message(reply, reply_to=msg)
