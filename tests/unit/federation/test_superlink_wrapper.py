# SPDX-License-Identifier: AGPL-3.0-only
"""The SuperLink wrapper (`python -m mercato.federation.pinning superlink`): the ServerApp
process gets the same widened window to claim its task as a ClientApp, the SuperLink's
SQLite state waits longer for a lock, and flower-superexec stays in the SuperLink's
process group. With Flower's own 30 s and 5 s, 8 SuperNodes on this 2-core machine never
finished a round ("Run is finished", "database is locked"; `benchmarks/federation.py`)."""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flwr.supercore import sql_mixin
from flwr.supercore.corestate import in_memory_corestate, sql_corestate

from mercato.federation import pinning

_SUPERLINK = importlib.import_module("flwr.superlink.cli.flower_superlink")


@pytest.fixture
def restored() -> Iterator[None]:
    saved = (
        in_memory_corestate.HEARTBEAT_DEFAULT_INTERVAL,
        sql_corestate.HEARTBEAT_DEFAULT_INTERVAL,
        sql_mixin.SQLITE_PRAGMAS,
        _SUPERLINK.get_popen_detach_kwargs,
    )
    yield
    (
        in_memory_corestate.HEARTBEAT_DEFAULT_INTERVAL,
        sql_corestate.HEARTBEAT_DEFAULT_INTERVAL,
        sql_mixin.SQLITE_PRAGMAS,
        _SUPERLINK.get_popen_detach_kwargs,
    ) = saved


def _busy_timeout(tmp_path: Path) -> int:
    """What a connection set up the way Flower sets up its own reports."""
    connection = sqlite3.connect(tmp_path / "state.db")
    try:
        sql_mixin._set_sqlite_pragmas(connection, None)
        return int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
    finally:
        connection.close()


def test_a_superlink_connection_waits_a_minute_for_a_lock(restored: None, tmp_path: Path) -> None:
    assert _busy_timeout(tmp_path) == 5000  # Flower's own
    pinning.patient_sqlite()
    assert _busy_timeout(tmp_path) == pinning.SQLITE_BUSY_MS == 60_000
    # The other pragmas are Flower's, untouched.
    others = [pragma for pragma in sql_mixin.SQLITE_PRAGMAS if pragma[0] != "busy_timeout"]
    assert ("journal_mode", "WAL") in others and len(others) == 6


def test_a_longer_lock_wait_is_never_shortened(restored: None, tmp_path: Path) -> None:
    sql_mixin.SQLITE_PRAGMAS = (("busy_timeout", "90000"),)  # type: ignore[assignment]
    pinning.patient_sqlite(60_000)
    assert _busy_timeout(tmp_path) == 90_000


def test_the_superlink_wrapper_widens_the_windows_before_flower_reads_its_flags(
    restored: None,
) -> None:
    # `--help` makes Flower's own argument parser exit, after the wrapper's patches and
    # before any server starts.
    with pytest.raises(SystemExit) as exited:
        pinning.superlink_main(["--help"])
    assert exited.value.code == 0
    assert sql_corestate.HEARTBEAT_DEFAULT_INTERVAL == pinning.TASK_START_SECONDS
    assert ("busy_timeout", str(pinning.SQLITE_BUSY_MS)) in sql_mixin.SQLITE_PRAGMAS
    # flower-superexec is no longer detached into a session of its own.
    assert _SUPERLINK.get_popen_detach_kwargs() == {}
