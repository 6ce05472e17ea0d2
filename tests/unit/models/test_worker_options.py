# SPDX-License-Identifier: AGPL-3.0-only
"""The ONNX Runtime options every try session gets: the threads the limits allow, and
no spinning (idle pool threads would take the CPU the gateway and other workers need)."""

from __future__ import annotations

import pytest

from mercato.models.runtime.worker import session_options


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_sessions_use_the_allowed_threads_and_never_spin(threads: int) -> None:
    options = session_options(threads)
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert options.log_severity_level == 4
