# SPDX-License-Identifier: AGPL-3.0-only
"""The record a running node leaves in its data directory, so commands find it.

    <data dir>/node.json    {"pid": ..., "rpc_url": ..., "gateway_url": ..., "accounts": [...]}

`mercato node up` writes it once its chain and gateway are up and removes it when it
stops cleanly. A record whose process is gone (a crash, a power cut) is ignored, and so
is one that does not parse: it only ever fills in addresses no setting names.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

RECORD_NAME = "node.json"


@dataclass(frozen=True)
class NodeRecord:
    """Where a node running on this data directory answers.

    Attributes:
        pid: The node's process id.
        rpc_url: The chain's JSON-RPC URL the node uses.
        gateway_url: The node's gateway, as buyers reach it.
        accounts: The addresses the node delivers keys for.
    """

    pid: int
    rpc_url: str
    gateway_url: str
    accounts: tuple[str, ...] = field(default_factory=tuple)


def record_path(data_dir: Path) -> Path:
    return data_dir / RECORD_NAME


def write_record(data_dir: Path, record: NodeRecord) -> None:
    """Writes the record atomically (a reader never sees half of it).

    Raises:
        OSError: The data directory cannot be written.
    """
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{RECORD_NAME}.{os.getpid()}")
    document = {
        "pid": record.pid,
        "rpc_url": record.rpc_url,
        "gateway_url": record.gateway_url,
        "accounts": list(record.accounts),
    }
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(path)


def remove_record(data_dir: Path, pid: int) -> None:
    """Removes the record if process `pid` wrote it (never another node's record)."""
    found = _read(record_path(data_dir))
    if found is not None and found.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            record_path(data_dir).unlink()


def running_node(data_dir: Path) -> NodeRecord | None:
    """The node running on `data_dir`, if its record is readable and its process lives.

    Returns:
        The record, or None (no record, a malformed one, or its process is gone).
    """
    found = _read(record_path(data_dir))
    if found is None or not _alive(found.pid):
        return None
    return found


def _read(path: Path) -> NodeRecord | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    pid, rpc, gateway = document.get("pid"), document.get("rpc_url"), document.get("gateway_url")
    accounts = document.get("accounts", [])
    if not (isinstance(pid, int) and pid > 0 and _is_http(rpc) and _is_http(gateway)):
        return None
    if not (isinstance(accounts, list) and all(isinstance(a, str) for a in accounts)):
        return None
    return NodeRecord(pid, str(rpc), str(gateway), tuple(accounts))


def _is_http(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    except OSError:
        return False
    return True
