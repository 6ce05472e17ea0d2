# SPDX-License-Identifier: AGPL-3.0-only
"""Stopping a SuperNode or SuperLink stops every process it started: Flower's SuperNode
runs each message in a flwr-clientapp child that outlived a stopped node. Real processes
(shells and sleeps stand in for Flower's children; the real SuperLink's tree is in
tests/integration/federation/test_flower_processes.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mercato.federation import runtime


def _group(pgid: int) -> set[int]:
    """Live (not zombie) processes of a process group."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.add(int(entry.name))
    return members


def _start(script: str, children: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(_group(process.pid) - {process.pid}) < children:
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.05)
    return process


def test_stopping_a_node_stops_its_children() -> None:
    process = _start("sleep 300 & sleep 300 & wait", children=2)
    assert len(_group(process.pid)) == 3
    runtime._stop(process)
    assert _group(process.pid) == set()


def test_children_left_by_a_node_that_already_exited_are_stopped() -> None:
    # The node crashed or exited; its ClientApp process is still running (an orphan).
    process = _start("sleep 300 & exit 0", children=1)
    process.wait()
    orphans = _group(process.pid)
    assert len(orphans) == 1
    runtime._stop(process)
    assert _group(process.pid) == set()


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    process = _start("trap '' TERM; sleep 300 & wait", children=1)
    started = time.monotonic()
    runtime._stop(process, grace=1)
    assert _group(process.pid) == set()
    assert time.monotonic() - started < 10


def test_killing_a_supernode_kills_its_children(tmp_path: Path) -> None:
    node = runtime.SuperNode(
        tmp_path, superlink="127.0.0.1:9", ca=tmp_path / "ca.pem",
        private_key=tmp_path / "key", data_path=tmp_path / "data.npz", runtime_port=9,
    )  # fmt: skip
    node.args = ["sh", "-c", "sleep 300 & sleep 300 & wait"]
    node.start()
    assert node.process is not None
    pgid = node.process.pid
    assert os.getpgid(pgid) == pgid  # a group of its own
    deadline = time.monotonic() + 10
    while len(_group(pgid)) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    node.kill()
    assert _group(pgid) == set()


# Stands in for a SuperNode (the real one runs `mercato.federation.pinning`, which makes
# the same call first): two ClientApp-like children, and Flower's SIGTERM handler, which
# exits through sys.exit.
FAKE_SUPERNODE = """
import signal, subprocess, sys, time
from mercato.processes import stop_own_group_at_exit
stop_own_group_at_exit()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
children = [subprocess.Popen(["sleep", "300"]) for _ in range(2)]
time.sleep(300)
"""

# Stands in for `mercato fl join`: starts the SuperNode as runtime.SuperNode does, says
# its pid, then waits.
OWNERS_MERCATO = """
import sys, time
from pathlib import Path
from mercato.federation import runtime
root = Path(sys.argv[1])
node = runtime.SuperNode(
    root, superlink="127.0.0.1:9", ca=root / "ca.pem", private_key=root / "key",
    data_path=root / "data.npz", runtime_port=9,
)
node.args = [sys.executable, "-c", sys.argv[2]]
node.start()
print(node.process.pid, flush=True)
time.sleep(300)
"""


def test_a_supernode_and_its_children_stop_when_the_owners_mercato_is_killed(
    tmp_path: Path,
) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", OWNERS_MERCATO, str(tmp_path), FAKE_SUPERNODE],
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        pgid = int(parent.stdout.readline())
        deadline = time.monotonic() + 30
        while len(_group(pgid)) < 3:  # the node and its two children
            assert time.monotonic() < deadline, "the stand-in SuperNode did not start"
            time.sleep(0.05)
        parent.kill()  # SIGKILL: nothing of mercato's own runs
        parent.wait()
        deadline = time.monotonic() + 30
        while _group(pgid):
            assert time.monotonic() < deadline, f"left running: {_group(pgid)}"
            time.sleep(0.1)
    finally:
        parent.kill()
        for pid in _group(pgid) if "pgid" in locals() else ():
            os.kill(pid, 9)
