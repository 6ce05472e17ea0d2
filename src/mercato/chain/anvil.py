# SPDX-License-Identifier: AGPL-3.0-only
"""Runs a local Anvil node whose chain survives restarts.

Anvil comes from the npm package `@foundry-rs/anvil` (installed into `node_modules`
by the set-up scripts). It listens on loopback only and keeps its whole chain in
the data directory:

    <data dir>/chain/
    ├── anvil-state.json       blocks, receipts and state; loaded at start, dumped
    │                          every `state_interval` seconds and on exit
    ├── anvil-state.json.bak   the last state that loaded, kept in case a dump is cut
    └── anvil.log              Anvil's output

Anvil dies with the process that started it, however that process ends (even killed
with SIGKILL or by a crash): on Linux the kernel sends it SIGTERM when its parent
thread exits (`PR_SET_PDEATHSIG`), so it still saves its chain on the way out. A local
chain is never left running, holding its port, after its node is gone. Start it from a
thread that lives as long as the node (the main thread does).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from mercato.errors import AnvilError

ANVIL_CHAIN_ID = 31_337
# Anvil's well-known development mnemonic: its accounts are public test keys, never for value.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
_PLATFORM_PACKAGES = (
    "anvil-linux-amd64",
    "anvil-linux-arm64",
    "anvil-darwin-arm64",
    "anvil-darwin-amd64",
)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive SIGTERM when its parent dies (Linux only).

    Everything it needs is looked up here, before the fork: between fork and exec the
    child may only make plain system calls.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    parent = os.getpid()
    term = int(signal.SIGTERM)

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, term, 0, 0, 0)
        # The parent may have died before prctl ran: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return set_parent_death_signal


def dev_accounts(count: int = 10) -> list[LocalAccount]:
    """Anvil's default development accounts (public keys for local testing only)."""
    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        for i in range(count)
    ]


def find_anvil() -> Path:
    """Locates the Anvil binary installed from npm.

    `MERCATO_ANVIL` overrides the search; otherwise `node_modules` is looked for in the
    current directory, its parents and the source checkout this package lives in.

    Raises:
        AnvilError: No Anvil binary was found.
    """
    override = os.environ.get("MERCATO_ANVIL")
    if override:
        return Path(override)
    starts = [Path.cwd(), Path(__file__).resolve()]
    for start in starts:
        for folder in [start, *start.parents]:
            for package in _PLATFORM_PACKAGES:
                candidate = folder / "node_modules" / "@foundry-rs" / package / "bin" / "anvil"
                if candidate.is_file():
                    return candidate
    raise AnvilError(
        "Anvil is not installed. Run scripts/bootstrap (it installs @foundry-rs/anvil from npm) "
        "or set MERCATO_ANVIL to an anvil binary."
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AnvilSupervisor:
    """Starts, watches and stops one Anvil process with persistent state."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8545,
        chain_id: int = ANVIL_CHAIN_ID,
        state_interval: int = 2,
        binary: Path | None = None,
    ) -> None:
        self.chain_dir = data_dir / "chain"
        self.host = host
        self.port = port
        self.chain_id = chain_id
        self.state_interval = state_interval
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def state_path(self) -> Path:
        return self.chain_dir / "anvil-state.json"

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        """Starts Anvil with the saved chain, if any, and waits until it answers.

        Returns:
            The JSON-RPC URL.

        Raises:
            AnvilError: Anvil is missing, the port is taken, or it did not come up in time.
        """
        if self.process is not None:
            return self.rpc_url
        binary = self.binary or find_anvil()
        self.chain_dir.mkdir(parents=True, exist_ok=True)
        self._keep_loadable_state()
        if self._port_in_use():
            raise AnvilError(
                f"Port {self.port} on {self.host} is already in use. Stop whatever listens there "
                "or choose another port with --port."
            )
        command = [
            str(binary),
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--mnemonic", ANVIL_MNEMONIC,
            "--state", str(self.state_path),
            "--state-interval", str(self.state_interval),
            "--preserve-historical-states",
        ]  # fmt: skip
        log = (self.chain_dir / "anvil.log").open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),  # only prctl and getppid run in the child
        )
        log.close()
        self._wait_until_ready(timeout)
        return self.rpc_url

    def stop(self, timeout: float = 60.0) -> None:
        """Stops Anvil gracefully so it dumps its state (a long chain takes a while to
        write); kills it if it hangs."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> AnvilSupervisor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_ready(self, timeout: float) -> None:
        w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 2}))
        deadline = time.monotonic() + timeout
        process = self.process
        while process is not None and time.monotonic() < deadline:
            if process.poll() is not None:
                self.process = None
                raise AnvilError(
                    f"Anvil exited at start with code {process.returncode}; "
                    f"see {self.chain_dir / 'anvil.log'}."
                )
            with contextlib.suppress(Exception):
                if w3.is_connected():
                    return
            time.sleep(0.1)
        self.stop()
        raise AnvilError(f"Anvil did not answer on {self.rpc_url} within {timeout:.0f} seconds.")

    def _port_in_use(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex((self.host, self.port)) == 0

    def _keep_loadable_state(self) -> None:
        # A dump cut by a kill leaves broken JSON; fall back to the last state that loaded.
        backup = self.state_path.with_name(self.state_path.name + ".bak")
        if not self.state_path.exists():
            return
        try:
            json.loads(self.state_path.read_bytes())
        except ValueError:
            if backup.exists():
                shutil.copyfile(backup, self.state_path)
            else:
                self.state_path.rename(self.state_path.with_suffix(".corrupt"))
            return
        tmp = backup.with_name(backup.name + ".tmp")
        shutil.copyfile(self.state_path, tmp)
        os.replace(tmp, backup)
