# SPDX-License-Identifier: AGPL-3.0-only
"""Replicas of one node on a throwaway PostgreSQL index: one Anvil, one data directory,
several real `mercato node up --index-url postgresql://…` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# The session's PostgreSQL cluster (skipped without Debian's server binaries).
from ..index.conftest import PostgresServer, postgres_server  # noqa: F401

NODE_START_TIMEOUT = 120


@dataclass
class Replica:
    """One `mercato node up` process serving a shared index."""

    name: str
    data_dir: Path
    args: list[str]
    port: int
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "mercato.cli", "node", "up", "--data-dir"]
        self.process = subprocess.Popen(
            [*command, str(self.data_dir), "--gateway-port", str(self.port), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        ready = threading.Event()
        threading.Thread(target=self._read, args=(self.process, ready), daemon=True).start()
        if not ready.wait(NODE_START_TIMEOUT) or self.process.poll() is not None:
            self.stop()
            raise AssertionError(f"replica {self.name} did not start:\n" + "".join(self.output))

    def leads(self) -> bool:
        """What the replica's health answer says about its role (serving is checked by
        the tests' own requests: a chain check failing for a moment must not count)."""
        answer = httpx.get(f"{self.base}/v1/health", timeout=30).json()
        return bool(answer["leader"])

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, the lease's connection just drops."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _read(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line)
            if "ready" in line:
                ready.set()
        ready.set()


# A deployment on Anvil with an indexer per index (for two writers on one index).
from ..index.conftest import market  # noqa: E402, F401
