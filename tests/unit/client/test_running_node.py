# SPDX-License-Identifier: AGPL-3.0-only
"""The node's record in its data directory: found while the node lives, ignored after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mercato.client.running_node import (
    NodeRecord,
    record_path,
    remove_record,
    running_node,
    write_record,
)

RECORD = NodeRecord(os.getpid(), "http://127.0.0.1:8546", "http://127.0.0.1:8701", ("0xabc",))


def test_a_live_node_is_found(tmp_path: Path) -> None:
    write_record(tmp_path, RECORD)
    assert running_node(tmp_path) == RECORD


def test_a_record_whose_process_is_gone_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_record(tmp_path, NodeRecord(gone.pid, RECORD.rpc_url, RECORD.gateway_url))
    assert running_node(tmp_path) is None


def test_a_malformed_record_is_ignored(tmp_path: Path) -> None:
    unsafe_url = f'{{"pid": {os.getpid()}, "rpc_url": "file:///etc", "gateway_url": "http://a"}}'
    for text in ("{", "[]", '{"pid": "1", "rpc_url": "x", "gateway_url": "y"}', unsafe_url):
        record_path(tmp_path).write_text(text)
        assert running_node(tmp_path) is None, text


def test_only_the_writer_removes_the_record(tmp_path: Path) -> None:
    write_record(tmp_path, RECORD)
    remove_record(tmp_path, os.getpid() + 1)
    assert record_path(tmp_path).exists()
    remove_record(tmp_path, os.getpid())
    assert not record_path(tmp_path).exists()
