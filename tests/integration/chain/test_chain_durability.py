# SPDX-License-Identifier: AGPL-3.0-only
"""The local chain keeps what it acknowledged, stays small, and health says when it is down.

Real `mercato node up` processes and real Anvil processes on loopback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from web3 import Web3

from mercato.chain import anvil as anvil_module
from mercato.chain.anvil import AnvilSupervisor, dev_accounts, free_port

pytestmark = pytest.mark.integration
PATIENCE = 120.0  # seconds a condition may take on a loaded machine; never asserted on


@dataclass
class NodeProcess:
    process: subprocess.Popen[str]
    base: str
    rpc_url: str

    def anvil(self) -> psutil.Process:
        children = psutil.Process(self.process.pid).children(recursive=True)
        return next(c for c in children if c.name() == "anvil")


def _start_node(data_dir: Path, anvil_port: int) -> NodeProcess:
    port = free_port()
    env = {**os.environ, "MERCATO_DATA_DIR": str(data_dir)}
    command = [
        sys.executable, "-m", "mercato.cli", "node", "up",
        "--port", str(anvil_port), "--gateway-port", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    output = []
    for line in process.stdout:
        output.append(line)
        if "ready" in line:
            return NodeProcess(
                process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{anvil_port}"
            )
    process.wait(timeout=30)
    raise AssertionError("the node did not start:\n" + "".join(output))


@contextlib.contextmanager
def _running_node(data_dir: Path, anvil_port: int) -> Iterator[NodeProcess]:
    node = _start_node(data_dir, anvil_port)
    anvil = node.anvil()
    try:
        yield node
    finally:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
            node.process.wait(timeout=120)
        with contextlib.suppress(psutil.NoSuchProcess):
            try:
                anvil.wait(60)  # it saves on the SIGTERM its node's end sent it
            except psutil.TimeoutExpired:
                anvil.kill()


def _transfers(rpc_url: str, count: int) -> tuple[int, int, str]:
    """Sends `count` acknowledged (mined) transfers; returns head, recipient balance, head hash."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
    sender, recipient = dev_accounts(8)[6:8]
    nonce = w3.eth.get_transaction_count(sender.address)
    for i in range(count):
        signed = sender.sign_transaction(
            {
                "to": recipient.address,
                "value": 1,
                "gas": 21_000,
                "gasPrice": 10 * 10**9,
                "nonce": nonce + i,
                "chainId": 31_337,
            }
        )
        tx = w3.eth.send_raw_transaction(signed.raw_transaction)
        w3.eth.wait_for_transaction_receipt(tx)  # acknowledged: mined and answered
    head = w3.eth.block_number
    return head, w3.eth.get_balance(recipient.address), w3.eth.get_block(head)["hash"].hex()


def _chain_view(rpc_url: str, block: int) -> tuple[int, int, str]:
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
    recipient = dev_accounts(8)[7]
    return (
        w3.eth.block_number,
        w3.eth.get_balance(recipient.address),
        w3.eth.get_block(block)["hash"].hex(),
    )


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def test_sigterm_of_the_node_keeps_every_acknowledged_block(tmp_path: Path) -> None:
    data_dir, anvil_port = tmp_path / "node", free_port()
    with _running_node(data_dir, anvil_port) as node:
        head, balance, head_hash = _transfers(node.rpc_url, 40)
        # Straight after the last receipt: no periodic save has had to run.
        node.process.send_signal(signal.SIGTERM)
        assert node.process.wait(timeout=120) == 0
    with _running_node(data_dir, anvil_port) as again:
        now, balance_now, hash_now = _chain_view(again.rpc_url, head)
        assert now >= head
        assert (balance_now, hash_now) == (balance, head_hash)


def test_sigkill_of_the_node_keeps_every_acknowledged_block(tmp_path: Path) -> None:
    # No clean-up runs in the node: its Anvil gets SIGTERM from the kernel (death signal),
    # writes its own dump, and the next start loads whichever saved chain is longer. The
    # restart comes at once, while that Anvil may still be writing.
    data_dir, anvil_port = tmp_path / "node", free_port()
    node = _start_node(data_dir, anvil_port)
    first_anvil = node.anvil()
    try:
        head, balance, head_hash = _transfers(node.rpc_url, 40)
    finally:
        node.process.kill()
        node.process.wait(timeout=60)
    with _running_node(data_dir, anvil_port) as again:
        assert again.anvil().pid != first_anvil.pid
        now, balance_now, hash_now = _chain_view(again.rpc_url, head)
        assert now >= head
        assert (balance_now, hash_now) == (balance, head_hash)


def test_a_killed_anvil_loses_at_most_what_came_after_the_last_save(tmp_path: Path) -> None:
    # The worst case the docs state: Anvil itself killed outright (no exit dump).
    port = free_port()
    supervisor = AnvilSupervisor(tmp_path / "node", port=port)
    supervisor.start()
    try:
        head, balance, head_hash = _transfers(supervisor.rpc_url, 10)
        _wait_for(lambda: supervisor.saved_block == head, "a periodic save of the new blocks")
        _transfers(supervisor.rpc_url, 3)  # maybe saved, maybe not
        assert supervisor.process is not None
        supervisor.process.kill()
        supervisor.process.wait()
    finally:
        supervisor.stop()
    again = AnvilSupervisor(tmp_path / "node", port=port)
    again.start()
    try:
        now, balance_now, hash_now = _chain_view(again.rpc_url, head)
        assert head <= now <= head + 3
        assert hash_now == head_hash
        assert balance_now >= balance
    finally:
        again.stop()


def test_a_stale_anvil_from_the_same_data_dir_is_stopped_and_the_chain_kept(
    tmp_path: Path,
) -> None:
    data_dir, port = tmp_path / "node", free_port()
    # A node that dies without its Anvil's death signal (as with an older version, or a
    # supervisor that lost it): its Anvil is orphaned, holding the port.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mercato.chain.anvil import AnvilSupervisor\n"
        f"s = AnvilSupervisor(Path({str(data_dir)!r}), port={port}, die_with_parent=False)\n"
        "s.start()\n"
        "print(s.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    crashed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert crashed.stdout is not None
    orphan = psutil.Process(int(crashed.stdout.readline()))
    try:
        head, balance, head_hash = _transfers(f"http://127.0.0.1:{port}", 5)
        crashed.kill()
        crashed.wait()
        assert orphan.is_running()  # left behind, port taken

        supervisor = AnvilSupervisor(data_dir, port=port)
        supervisor.start()  # before the fix: "Port ... is already in use"
        try:
            assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
            assert supervisor.process is not None and supervisor.process.pid != orphan.pid
            assert _chain_view(supervisor.rpc_url, head)[1:] == (balance, head_hash)
        finally:
            supervisor.stop()
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            orphan.kill()


def test_a_pid_file_naming_another_process_is_not_signalled(tmp_path: Path) -> None:
    # The pid in chain/anvil.pid may now belong to anything: only an Anvil writing this
    # chain folder is ever signalled.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        chain = tmp_path / "node" / "chain"
        chain.mkdir(parents=True)
        (chain / "anvil.pid").write_text(f'{{"pid": {bystander.pid}, "node_pid": 1}}')
        supervisor = AnvilSupervisor(tmp_path / "node", port=free_port())
        supervisor.start()
        supervisor.stop()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_state_file_stays_small_after_many_blocks(tmp_path: Path) -> None:
    supervisor = AnvilSupervisor(tmp_path / "node", port=free_port())
    supervisor.start()
    try:
        head, _, _ = _transfers(supervisor.rpc_url, 600)
        assert supervisor.save() >= head
    finally:
        supervisor.stop()
    # Measured: 2.2 MB for 600 transfers; with per-block historical states (the old
    # options) 33 MB, growing with the square of the chain's length.
    assert supervisor.state_path.stat().st_size < 8 * 1024**2


def _health_until(base: str, status_code: int) -> httpx.Response:
    """Asks /v1/health until it answers `status_code` (a check is reused for a second)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        answer = httpx.get(f"{base}/v1/health", timeout=30)
        if answer.status_code == status_code or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_health_is_503_while_the_chain_is_down_and_200_when_it_returns(tmp_path: Path) -> None:
    with _running_node(tmp_path / "node", free_port()) as node:
        assert httpx.get(f"{node.base}/v1/health", timeout=30).status_code == 200
        anvil = node.anvil()
        anvil.suspend()  # SIGSTOP: the chain stops answering
        try:
            down = _health_until(node.base, 503)
            assert down.status_code == 503
            assert down.json()["status"] == "down"
            assert down.json()["parts"]["chain"]["status"] == "down"
            assert down.json()["parts"]["try_pool"]["status"] == "ok"
            live = httpx.get(f"{node.base}/v1/health/live", timeout=30)
            assert (live.status_code, live.json()) == (200, {"status": "ok"})
        finally:
            anvil.resume()
        back = _health_until(node.base, 200)
        assert back.status_code == 200, back.text
        assert back.json()["parts"]["chain"]["status"] == "ok"
        assert back.json()["parts"]["chain"]["head"] >= 1


def test_a_stop_that_has_to_kill_anvil_still_keeps_every_block(tmp_path: Path) -> None:
    # Anvil writing a long chain can outlast the stop's patience; then it is killed. The
    # chain was saved before it was asked to stop, so nothing acknowledged is lost. (Before,
    # only Anvil's own dump on SIGTERM saved it: killed mid-write, the blocks since the
    # last periodic dump were gone, or all since the start when the file was cut.)
    port = free_port()
    supervisor = AnvilSupervisor(tmp_path / "node", port=port, state_interval=3_600)
    supervisor.start()
    head, balance, head_hash = _transfers(supervisor.rpc_url, 5)
    supervisor.stop(timeout=0)  # SIGTERM, then SIGKILL at once
    again = AnvilSupervisor(tmp_path / "node", port=port)
    again.start()
    try:
        assert _chain_view(again.rpc_url, head) == (head, balance, head_hash)
    finally:
        again.stop()


def test_a_large_old_state_is_checked_without_parsing_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Older versions' states held a copy of the state per block (hundreds of MB); only
    # their start and end are read, and a cut one is still recognised.
    monkeypatch.setattr(anvil_module, "FULL_CHECK_BYTES", 1024)
    whole = b'{"block":{"number":"0x2a","timestamp":"0x1"},"accounts":{' + b" " * 4096 + b"}}\n"
    state = tmp_path / "state.json"
    state.write_bytes(whole)
    assert anvil_module._state_head(state) == 42
    state.write_bytes(whole[:3000])  # a dump cut mid-write
    assert anvil_module._state_head(state) is None
