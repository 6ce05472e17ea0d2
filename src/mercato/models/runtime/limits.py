# SPDX-License-Identifier: AGPL-3.0-only
"""The limits every try-call runs under."""

from __future__ import annotations

from dataclasses import dataclass

from mercato.models.runtime.tensors import InputPolicy


@dataclass(frozen=True)
class RuntimeLimits:
    """Limits for every try-call.

    Attributes:
        timeout_s: Wall-clock time a call may run in its worker.
        memory_bytes: Address space a worker may map beyond its start-up size.
        max_input_bytes: All input tensors of one call together.
        max_request_bytes: One raw JSON request.
        max_output_bytes: All output tensors of one call together.
        allow_non_finite: Accept NaN and infinities in float inputs.
        session_cache_size: Warm InferenceSessions kept per worker.
        max_runs_per_worker: Recycle a worker after this many runs (a batch is one run).
            It keeps serving until its replacement is ready, so recycling never
            leaves the pool a worker short.
        threads: Intra-op threads per session (1 = one core per worker).
        startup_timeout_s: How long a new worker may take to import ONNX Runtime.
        queue_timeout_s: How long a call waits for a free worker.
        max_batch_calls: Most waiting calls for one model run together as one batch
            (1 turns dynamic batching off).
    """

    timeout_s: float = 5.0
    memory_bytes: int = 1024 * 1024 * 1024
    max_input_bytes: int = 8 * 1024 * 1024
    max_request_bytes: int = 32 * 1024 * 1024
    max_output_bytes: int = 16 * 1024 * 1024
    allow_non_finite: bool = False
    session_cache_size: int = 8
    max_runs_per_worker: int = 100_000
    threads: int = 1
    startup_timeout_s: float = 60.0
    queue_timeout_s: float = 30.0
    max_batch_calls: int = 64

    @property
    def input_policy(self) -> InputPolicy:
        """The input checks these limits imply."""
        return InputPolicy(
            max_input_bytes=self.max_input_bytes,
            max_request_bytes=self.max_request_bytes,
            allow_non_finite=self.allow_non_finite,
        )
