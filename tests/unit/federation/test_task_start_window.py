# SPDX-License-Identifier: AGPL-3.0-only
"""The SuperNode wrapper widens Flower's window for a ClientApp process to claim its
task, the cause of 8 SuperNodes never finishing a round on a 2-core machine (see
`mercato.federation.pinning.patient_task_tokens`; the 8-node run is
`benchmarks/federation.py --nodes 8`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flwr.supercore.corestate import in_memory_corestate, sql_corestate

from mercato.federation.pinning import TASK_START_SECONDS, patient_task_tokens


@pytest.fixture
def restored() -> Iterator[None]:
    saved = in_memory_corestate.HEARTBEAT_DEFAULT_INTERVAL, sql_corestate.HEARTBEAT_DEFAULT_INTERVAL
    yield
    in_memory_corestate.HEARTBEAT_DEFAULT_INTERVAL, sql_corestate.HEARTBEAT_DEFAULT_INTERVAL = saved


def test_a_claimed_task_waits_for_its_process_as_long_as_the_wrapper_says(restored: None) -> None:
    assert in_memory_corestate.HEARTBEAT_DEFAULT_INTERVAL == 30  # Flower's own
    patient_task_tokens()
    for module in (in_memory_corestate, sql_corestate):
        assert module.HEARTBEAT_DEFAULT_INTERVAL == TASK_START_SECONDS


def test_a_wider_window_is_never_narrowed(restored: None) -> None:
    in_memory_corestate.HEARTBEAT_DEFAULT_INTERVAL = 600
    patient_task_tokens(120)
    assert in_memory_corestate.HEARTBEAT_DEFAULT_INTERVAL == 600
    assert sql_corestate.HEARTBEAT_DEFAULT_INTERVAL == 120
