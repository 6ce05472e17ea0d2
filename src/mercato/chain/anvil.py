"""Runs a local Anvil node whose chain survives restarts.

Anvil comes from the npm package `@foundry-rs/anvil` (installed into `node_modules`
by the set-up scripts). It listens on loopback only and keeps its whole chain in
the data directory:

    <data dir>/chain/
    ├── anvil-state.json       blocks, receipts and current state: what Anvil loads at
    │                          start; rewritten atomically (temporary file, fsync,
    │                          rename) every `state_interval` seconds when new blocks
    │                          came, and when the node stops
    ├── anvil-exit.json        what Anvil itself writes when it is signalled (its node
    │                          died); used when it holds more blocks than the above
    ├── anvil.pid              the running Anvil's pid and its node's, so a start after
    │                          a crash finds and stops an Anvil left behind
    └── anvil.log              Anvil's output

Only the current state is kept, not one copy of it per block
(`--preserve-historical-states`): nothing here calls the chain at an old block, and
those copies made the file grow with the square of the chain's length (262 MB after
1,800 transfers, against 6.6 MB) and kept a core busy rewriting it.

What a stop can lose: a stop of the node (Ctrl-C, SIGTERM) saves the chain first,
nothing. A node killed outright (SIGKILL, a crash): nothing either, since Anvil is then
sent SIGTERM by the kernel and writes `anvil-exit.json`. Only when Anvil itself is
killed outright (or the machine loses power) are the blocks of the last
`state_interval` seconds (2 by default) lost; on a chain so long that a save takes
more than a tenth of that, the wait is ten times the last save's duration.

Anvil dies with the process that started it, however that process ends: on Linux the
kernel sends it SIGTERM when its parent thread exits (`PR_SET_PDEATHSIG`). Start it
from a thread that lives as long as the node (the main thread does). It runs in its own
session, so a terminal's Ctrl-C reaches the node alone, which saves the chain and then
stops Anvil. An Anvil still running from this data directory when a node starts (its
node gone, the death signal lost) is recognised by its command line and stopped, and
its chain kept.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import logging
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from mercato.errors import AnvilError
from mercato.fsutil import atomic_write_bytes, fsync_directory
from mercato.processes import die_with_parent

log = logging.getLogger(__name__)
ANVIL_CHAIN_ID = 31_337
# Seconds between saves of the chain while blocks come: the most a kill of Anvil itself
# (not of its node) can lose. A save takes ~0.15 s of Anvil's time at 1,800 blocks.
STATE_INTERVAL = 2.0
# A save waits at least this many times as long as the last save took (long chains).
SAVE_SHARE = 10
# Saved states up to this size are parsed whole to tell a cut file (see `_state_head`).
FULL_CHECK_BYTES = 64 * 1024**2
_BLOCK_NUMBER = re.compile(rb'\s*\{\s*"block"\s*:\s*\{\s*"number"\s*:\s*"(0x[0-9a-fA-F]+)"')
# Anvil's own periodic dump, left to run once a day: the supervisor's saves replace it.
ANVIL_OWN_DUMP_INTERVAL = 86_400
# Anvil's well-known development mnemonic: its accounts are public test keys, never for value.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
_PLATFORM_PACKAGES = (
    "anvil-linux-amd64",
    "anvil-linux-arm64",
    "anvil-darwin-arm64",
    "anvil-darwin-amd64",
)


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


_PORTS_GIVEN: set[int] = set()
_PORTS_LOCK = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing uses right now, for a server started soon after.

    Chosen below the kernel's ephemeral range: a port from `bind(0)` is one that the
    next outgoing connection (a web3 call, an HTTP fetch) may take as its own local port
    before the server binds it, which then fails with "address already in use". Never
    the same port twice in one process, so two servers set up together differ.
    """
    low, _ = _ephemeral_range()
    with _PORTS_LOCK:
        for _ in range(200):
            port = random.randrange(10_000, max(low, 10_001))
            if port in _PORTS_GIVEN:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _PORTS_GIVEN.add(port)
            return port
        with socket.socket() as sock:  # a crowded range: let the kernel pick
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        _PORTS_GIVEN.add(port)
        return port


class AnvilSupervisor:
    """Starts, watches, saves and stops one Anvil process with persistent state.

    Args:
        data_dir: The node's data directory; the chain lives in its `chain/` folder.
        host: The loopback address Anvil listens on.
        port: Its port.
        chain_id: The chain id of a new chain.
        state_interval: Seconds between saves while new blocks come.
        binary: The anvil binary; found with `find_anvil` when None.
        die_with_parent: Whether Anvil gets SIGTERM when this process dies (tests turn
            it off to leave an Anvil behind on purpose).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8545,
        chain_id: int = ANVIL_CHAIN_ID,
        state_interval: float = STATE_INTERVAL,
        binary: Path | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.chain_dir = data_dir / "chain"
        self.host = host
        self.port = port
        self.chain_id = chain_id
        self.state_interval = state_interval
        self.binary = binary
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None
        self.saved_block: int | None = None  # the head at the last save
        self._save_lock = threading.Lock()
        self._stop_saving = threading.Event()
        self._saver: threading.Thread | None = None

    @property
    def state_path(self) -> Path:
        return self.chain_dir / "anvil-state.json"

    @property
    def exit_state_path(self) -> Path:
        return self.chain_dir / "anvil-exit.json"

    @property
    def pid_path(self) -> Path:
        return self.chain_dir / "anvil.pid"

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        """Starts Anvil with the saved chain, if any, and waits until it answers.

        An Anvil left running from this data directory by a node that is gone is
        stopped first (it saves its chain on the way out, and that chain is loaded).

        Returns:
            The JSON-RPC URL.

        Raises:
            AnvilError: Anvil is missing, the port is taken, a running node already
                uses this data directory's chain, or Anvil did not come up in time.
        """
        if self.process is not None:
            return self.rpc_url
        binary = self.binary or find_anvil()
        self.chain_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale(timeout)
        self._use_newest_state()
        # An older version's backup of its state (with per-block copies, often hundreds of MB).
        (self.chain_dir / "anvil-state.json.bak").unlink(missing_ok=True)
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
            "--dump-state", str(self.exit_state_path),
            # Anvil's own periodic dump rewrites its file in place (a kill mid-write
            # leaves half a file): the supervisor saves instead, so Anvil writes only
            # when it is signalled.
            "--state-interval", str(ANVIL_OWN_DUMP_INTERVAL),
        ]  # fmt: skip
        if self.state_path.exists():
            command += ["--load-state", str(self.state_path)]
        log = (self.chain_dir / "anvil.log").open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # A terminal's Ctrl-C goes to the node alone, which saves, then stops Anvil.
            start_new_session=True,
            preexec_fn=die_with_parent() if self.die_with_parent else None,
        )
        log.close()
        atomic_write_bytes(
            self.pid_path,
            json.dumps({"pid": self.process.pid, "node_pid": os.getpid()}).encode(),
        )
        self._wait_until_ready(timeout)
        self.saved_block = self._head()
        self._stop_saving.clear()
        self._saver = threading.Thread(target=self._save_loop, name="mercato-anvil-save")
        self._saver.daemon = True
        self._saver.start()
        return self.rpc_url

    def save(self) -> int:
        """Writes the chain's current state to `state_path` atomically.

        Returns:
            The head block the saved state holds at least.

        Raises:
            AnvilError: Anvil is not running or did not answer.
        """
        with self._save_lock:
            if self.process is None or self.process.poll() is not None:
                raise AnvilError("Anvil is not running; its chain cannot be saved.")
            try:
                head = self._head()
                answer = self._rpc("anvil_dumpState", [], timeout=60)
                state = gzip.decompress(bytes.fromhex(str(answer)[2:]))
            except (requests.RequestException, ValueError, OSError, EOFError) as exc:
                raise AnvilError(f"Anvil did not hand over its chain state: {exc}") from exc
            atomic_write_bytes(self.state_path, state)
            self.saved_block = head
            return head

    def stop(self, timeout: float = 60.0) -> None:
        """Saves the chain, then stops Anvil gracefully; kills it if it hangs."""
        self._stop_saving.set()
        if self._saver is not None:
            self._saver.join(timeout)
            self._saver = None
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.save()
            except AnvilError as exc:
                # Anvil still writes its own exit dump on SIGTERM.
                log.warning("chain: the last save failed (%s)", exc)
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.pid_path.unlink(missing_ok=True)

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

    def _save_loop(self) -> None:
        # Saves only when blocks came: an idle chain costs one eth_blockNumber per interval.
        # A save rewrites the whole chain, so on a long chain the wait grows with it: saving
        # never takes more than 1/SAVE_SHARE of the time.
        wait = self.state_interval
        while not self._stop_saving.wait(wait):
            try:
                if self._head() != self.saved_block:
                    started = time.monotonic()
                    self.save()
                    wait = max(self.state_interval, SAVE_SHARE * (time.monotonic() - started))
            except (AnvilError, requests.RequestException, ValueError, OSError) as exc:
                log.warning("chain: could not save the local chain's state (%s)", exc)

    def _rpc(self, method: str, params: list[Any], timeout: float = 10) -> Any:
        answer = requests.post(
            self.rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
            timeout=timeout,
        )
        answer.raise_for_status()
        body = answer.json()
        if "result" not in body:
            raise ValueError(f"{method} failed: {body.get('error')}")
        return body["result"]

    def _head(self) -> int:
        return int(str(self._rpc("eth_blockNumber", [])), 16)

    def _wait_until_ready(self, timeout: float) -> None:
        w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 2}))
        deadline = time.monotonic() + timeout
        process = self.process
        while process is not None and time.monotonic() < deadline:
            if process.poll() is not None:
                self.process = None
                self.pid_path.unlink(missing_ok=True)
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

    def _stop_stale(self, timeout: float) -> None:
        """Stops an Anvil a gone node left running on this chain folder (see the pid file)."""
        try:
            record = json.loads(self.pid_path.read_bytes())
            pid, node_pid = int(record["pid"]), int(record["node_pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return  # no record (or an unreadable one): nothing of ours is running
        anvil = self._our_anvil(pid)
        if anvil is None:
            self.pid_path.unlink(missing_ok=True)  # gone, or the pid now names another process
            return
        with contextlib.suppress(psutil.Error):
            if node_pid != os.getpid() and anvil.ppid() == node_pid and psutil.pid_exists(node_pid):
                raise AnvilError(
                    f"A node (pid {node_pid}) is already running on this data directory's "
                    "chain. Stop it first, or start this one with another --data-dir."
                )
        log.warning("chain: stopping Anvil %d left running by a node that is gone", pid)
        with contextlib.suppress(psutil.Error):
            anvil.terminate()  # it saves its chain to anvil-exit.json on the way out
            try:
                anvil.wait(timeout)
            except psutil.TimeoutExpired:
                anvil.kill()
                anvil.wait(timeout)
        self.pid_path.unlink(missing_ok=True)

    def _our_anvil(self, pid: int) -> psutil.Process | None:
        """The process `pid` if it is alive and an Anvil writing this chain folder."""
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            argv = process.cmdline()
        except psutil.Error:
            return None
        if not argv or Path(argv[0]).name != "anvil":
            return None
        dumps_here = any(
            flag == "--dump-state" and value == str(self.exit_state_path)
            for flag, value in itertools.pairwise(argv)
        )
        return process if dumps_here else None

    def _use_newest_state(self) -> None:
        """Makes `state_path` the saved chain with the most blocks.

        The supervisor's saves are atomic; Anvil's own exit dump is written in place and
        may be cut, or older than the last save. A file that does not parse is set aside
        as `*.corrupt`, never loaded.
        """
        best: tuple[int, Path] | None = None
        for path in (self.state_path, self.exit_state_path):
            if not path.exists():
                continue
            blocks = _state_head(path)
            if blocks is None:
                log.warning("chain: %s is cut or damaged; set aside", path.name)
                os.replace(path, path.with_suffix(".corrupt"))
                continue
            if best is None or blocks > best[0]:
                best = (blocks, path)
        if best is not None and best[1] != self.state_path:
            os.replace(best[1], self.state_path)
            fsync_directory(self.chain_dir)
        self.exit_state_path.unlink(missing_ok=True)


def _state_head(path: Path) -> int | None:
    """The block number a saved Anvil state was dumped at; None when it is cut or damaged.

    States up to `FULL_CHECK_BYTES` are parsed whole. Larger ones only come from older
    versions (one copy of the state per block): parsing them would take gigabytes of
    memory, so only their start (the block) and their last byte are read.
    """
    try:
        if path.stat().st_size <= FULL_CHECK_BYTES:
            document = json.loads(path.read_bytes())
            number = document.get("best_block_number") or document["block"]["number"]
            return int(number, 16) if isinstance(number, str) else int(number)
        with path.open("rb") as handle:
            start = handle.read(4096)
            handle.seek(-64, os.SEEK_END)
            end = handle.read().rstrip()
        found = _BLOCK_NUMBER.match(start)
        if found is None or not end.endswith(b"}"):
            return None
        return int(found.group(1), 16)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
