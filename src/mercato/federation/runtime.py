# SPDX-License-Identifier: AGPL-3.0-only
"""The Flower processes of a task: one SuperLink (the coordinator's) and SuperNodes (the
data owners'), each a process of its own, TLS always on.

- `make_tls`: a CA and a server certificate for the SuperLink's address, generated with
  `cryptography` into the task's directory (the CA certificate is what participants pin).
- `SuperLink`: `flower-superlink` through Mercato's wrapper
  (`mercato.federation.pinning.superlink_main`: Flower's start window and SQLite lock
  wait widened), with TLS and SuperNode authentication; `admit(pem)`
  registers exactly one participant key (the coordinator calls it for the keys that
  joined on-chain, after checking each against its on-chain hash); `start_run` submits
  Mercato's own app.
- `SuperNode`: the pinned SuperNode (`mercato.federation.pinning`) with the data owner's
  key, the CA to verify the SuperLink, and its data path in its own node config.

Each process leads a process group of its own; `stop` (and `SuperNode.kill`) signal the
whole group, so no flwr-clientapp, flower-superexec or ServerApp process outlives it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mercato.errors import FederationRuntimeError
from mercato.federation.keys import check_public_key
from mercato.federation.pinning import APP_DIR
from mercato.processes import die_with_parent

CONNECTION = "mercato"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the SuperLink's TLS: the CA certificate participants pin, and the
    server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path, host: str) -> TlsFiles:
    """Create a CA and a server certificate for `host` (an IP or a DNS name).

    Args:
        directory: Where the PEM files go (created; the keys are 0600).
        host: The SuperLink's public host name or IP address.

    Returns:
        The files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mercato federation CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class SuperLink:
    """A `flower-superlink` process with TLS and SuperNode authentication on."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        tls_dir = directory / "tls"
        self.tls = (
            TlsFiles(tls_dir / "ca.pem", tls_dir / "server.pem", tls_dir / "server.key")
            if (tls_dir / "server.key").exists()
            else make_tls(tls_dir, host)
        )
        self.home = directory / "flwr-home"
        self.home.mkdir(parents=True, exist_ok=True)
        # The Flower CLI's connection to this SuperLink, pinned to our CA.
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{host}:{port}"\nroot-certificates = "{self.tls.ca}"\n'
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The Fleet API address SuperNodes connect to."""
        return f"{self.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        return _env(self.home)

    def start(self) -> None:
        """Start the process and wait until its API answers.

        Raises:
            FederationRuntimeError: it exited or did not answer within a minute.
        """
        # A previous SuperLink killed alone (a crash) leaves its flower-superexec and
        # ServerApp in its group; the old ServerApp would reconnect to this one.
        _stop(self.process, grace=5)
        log = (self.directory / "superlink.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mercato.federation.pinning",
                "superlink",
                "--ssl-ca-certfile",
                str(self.tls.ca),
                "--ssl-certfile",
                str(self.tls.cert),
                "--ssl-keyfile",
                str(self.tls.key),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
                "--database",
                str(self.directory / "superlink.db"),
                "--host",
                self.host,
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(),
            cwd=self.directory,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # and dies with its node (mercato.processes)
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _stop(self.process)
                raise FederationRuntimeError("SuperLink", "the process exited at start")
            try:
                self._flwr(["supernode", "list", CONNECTION, "--format", "json"])
                return
            except FederationRuntimeError:
                time.sleep(1)
        raise FederationRuntimeError("SuperLink", "its API did not answer within 60 s")

    def _flwr(self, args: list[str]) -> dict[str, object]:
        done = subprocess.run(
            [_bin("flwr"), *args],
            capture_output=True,
            env=self._env(),
            cwd=self.directory,
            timeout=120,
            check=False,
        )
        text = done.stdout.decode("utf-8", "replace")
        start = text.find("{")
        try:
            answer = json.loads(text[start:]) if start >= 0 else {}
        except ValueError:
            answer = {}
        if done.returncode != 0 or not answer.get("success", False):
            raise FederationRuntimeError(
                f"'flwr {args[0]} {args[1] if len(args) > 1 else ''}'",
                (text + done.stderr.decode("utf-8", "replace"))[-500:].strip(),
            )
        return answer

    def admit(self, public_key_pem: bytes) -> int:
        """Register one participant's SuperNode key; only registered keys may connect.

        Args:
            public_key_pem: The key (checked: a NIST-curve EC key in canonical PEM).

        Returns:
            The Flower node id the SuperLink gives that key.

        Raises:
            InvalidKeyMaterialError: not a key Flower accepts.
            FederationRuntimeError: the SuperLink refused it.
        """
        key = check_public_key(public_key_pem)
        ssh = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        keys_dir = self.directory / "admitted"
        keys_dir.mkdir(exist_ok=True)
        path = keys_dir / f"{len(list(keys_dir.iterdir()))}.pub"
        path.write_bytes(ssh + b"\n")
        answer = self._flwr(["supernode", "register", str(path), CONNECTION, "--format", "json"])
        return int(str(answer["node-id"]))

    def start_run(
        self,
        task_dir: Path,
        *,
        round_timeout: float,
        min_replies: int,
        retry_seconds: float | None = None,
    ) -> int:
        """Submit Mercato's own app, with `task_dir` for its rounds (`retry_seconds`:
        how long it waits for nodes and resends a short round; None: the app's default).

        Returns:
            The Flower run id.

        Raises:
            FederationRuntimeError: the SuperLink refused the run.
        """
        config = (
            f'task-dir="{task_dir}" round-timeout={float(round_timeout)} '
            f"min-replies={int(min_replies)}"
        )
        if retry_seconds is not None:
            config += f" retry-seconds={float(retry_seconds)}"
        answer = self._flwr(
            ["run", str(APP_DIR), CONNECTION, "--run-config", config, "--format", "json"]
        )
        return int(str(answer["run-id"]))

    def stop(self) -> None:
        """Stop the process (and wait for it)."""
        _stop(self.process)


class SuperNode:
    """A data owner's pinned SuperNode process."""

    def __init__(
        self,
        directory: Path,
        *,
        superlink: str,
        ca: Path,
        private_key: Path,
        data_path: Path,
        runtime_port: int,
        task_pins: dict[str, str] | None = None,
    ) -> None:
        self.directory = directory
        # The task's privacy mode and spec digest from the chain
        # (mercato.federation.privacy.node_config_for): the ClientApp refuses a
        # coordinator that sends another spec or asks for unmasked updates.
        pins = "".join(
            f' {key}="{value}"'
            for key, value in sorted((task_pins or {}).items())
            if key.replace("-", "").isalnum() and value.isalnum()
        )
        self.args = [
            sys.executable, "-m", "mercato.federation.pinning",
            "--superlink", superlink,
            "--root-certificates", str(ca),
            "--auth-supernode-private-key", str(private_key),
            # updates-dir: where the ClientApp keeps the updates it sends
            # (mercato.federation.updates), in this node's own directory.
            "--node-config",
            f'data-path="{data_path}" updates-dir="{directory / "updates"}"{pins}',
            "--port", str(runtime_port),
            "--max-wait-time", "60",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Where the process writes its log."""
        return self.directory / "supernode.log"

    def start(self) -> None:
        """Start the process."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = _env(self.directory / "flwr-home")
        # A session (and process group) of its own: stopping it stops the ClientApp
        # processes it started too (`_stop`).
        self.process = subprocess.Popen(
            self.args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.directory,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # and dies with its node (mercato.processes)
        )

    def kill(self) -> None:
        """Kill the process and every process it started at once (a data owner dropping
        out)."""
        if self.process is not None:
            _signal_group(self.process, signal.SIGKILL)
            # A killed child is gone only once the kernel has torn it down: wait for
            # that, so that a caller who starts the node again finds nothing left.
            _wait_for_group(self.process, timeout=10)
            self.process.wait()

    def stop(self) -> None:
        """Stop the process (and wait for it)."""
        _stop(self.process)


def _env(home: Path) -> dict[str, str]:
    # Flower starts its helpers (flower-superexec, flwr-clientapp) by name: this
    # environment's own must come first on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "FLWR_HOME": str(home), "PATH": path}


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> bool:
    """Send `sig` to the process's group (it leads one: `start_new_session`); False when
    no process of the group is left."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _stop(process: subprocess.Popen[bytes] | None, *, grace: float = 15) -> None:
    """Stop a process and every process it started: SIGTERM to its whole group, then
    SIGKILL to what is left after `grace` seconds. Flower's helpers (flwr-clientapp,
    flower-superexec, flwr-serverapp) stay in the group and would otherwise outlive a
    stopped node, even one that already exited."""
    if process is None:
        return
    if _signal_group(process, signal.SIGTERM) and not _wait_for_group(process, grace):
        _signal_group(process, signal.SIGKILL)
        _wait_for_group(process, timeout=10)
    process.wait()


def _wait_for_group(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to `timeout` seconds for every process of the group to be gone; True when
    it is."""
    deadline = time.monotonic() + timeout
    while True:
        process.poll()  # reap the leader, so that only live processes count
        if not _signal_group(process, 0):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
