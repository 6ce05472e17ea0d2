# SPDX-License-Identifier: AGPL-3.0-only
"""A real `mercato node up` process under hostile requests, and when it dies.

One request must never take the node down (with it its agent and index), a request
body is refused before it is read in full, and a node killed outright leaves no Anvil
behind holding its port.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from mercato.chain.anvil import free_port
from mercato.gateway.state import SIGN_INS_PER_MINUTE

pytestmark = pytest.mark.integration
PYTHON_M = [sys.executable, "-m", "mercato.cli"]
CONSOLE_SCRIPT = [str(Path(sys.executable).with_name("mercato"))]


@dataclass
class NodeProcess:
    process: subprocess.Popen[str]
    base: str
    port: int

    def anvil_pids(self) -> list[int]:
        children = psutil.Process(self.process.pid).children(recursive=True)
        return [c.pid for c in children if c.name() == "anvil"]


def _start_node(launcher: list[str], data_dir: Path) -> NodeProcess:
    port = free_port()
    env = {**os.environ, "MERCATO_DATA_DIR": str(data_dir)}
    command = [*launcher, "node", "up", "--port", str(free_port()), "--gateway-port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    output = []
    for line in process.stdout:
        output.append(line)
        if "ready" in line:
            return NodeProcess(process, f"http://127.0.0.1:{port}", port)
    process.wait(timeout=30)
    raise AssertionError("the node did not start:\n" + "".join(output))


def _stop(node: NodeProcess) -> None:
    anvils = (
        [psutil.Process(pid) for pid in node.anvil_pids()] if node.process.poll() is None else []
    )
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=60)
    for anvil in anvils:
        if anvil.is_running():
            anvil.kill()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    started = _start_node(PYTHON_M, tmp_path_factory.mktemp("node"))
    try:
        yield started
    finally:
        _stop(started)


def _alive(node: NodeProcess) -> None:
    assert node.process.poll() is None, "the node process died"
    assert httpx.get(f"{node.base}/v1/health", timeout=30).json()["status"] == "ok"


def test_a_deeply_nested_body_is_refused_and_the_node_keeps_serving(node: NodeProcess) -> None:
    # A million levels (the upload route takes megabytes, and parsed the body before
    # checking the session): before the fix this overflowed the C stack and killed the
    # process. The other routes' bodies are refused for their depth too.
    for path, body in (
        ("/v1/uploads", b"[" * 1_000_000),
        ("/v1/auth/verify", b'{"message": ' + b'{"a":' * 10_000),
        ("/v1/models/1/try", b'{"inputs": {"X": {"data": ' + b"[" * 10_000),
    ):
        answer = httpx.post(
            f"{node.base}{path}",
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert (answer.status_code, answer.json()["error"]) == (400, "request_too_deep"), path
        _alive(node)


def _stream_until_refused(port: int, path: str, total: int) -> tuple[int, bytes]:
    """Sends a chunked body of `total` bytes until the server answers or hangs up.

    Returns:
        (bytes of body sent, the start of the server's answer).
    """
    chunk = b" " * (256 * 1024)
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered before the body ended
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(60)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
        try:
            while len(answer) < 64 * 1024:
                piece = sock.recv(65536)
                if not piece:
                    break
                answer += piece
        except (ConnectionResetError, TimeoutError):
            pass
    return sent, answer


def test_a_streamed_body_over_the_limit_is_refused_before_it_is_read(node: NodeProcess) -> None:
    rss_before = psutil.Process(node.process.pid).memory_info().rss
    total = 2 * 1024**3  # 2 GiB, streamed with no Content-Length
    sent, answer = _stream_until_refused(node.port, "/v1/auth/nonce", total)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[-1] or b"{}")
    assert body.get("error") == "request_too_large"
    # Loopback socket buffers hold a few MB; the rest of the 2 GiB was never taken.
    assert sent < 64 * 1024**2
    grown = psutil.Process(node.process.pid).memory_info().rss - rss_before
    assert grown < 256 * 1024**2
    _alive(node)


def test_a_declared_length_over_the_limit_is_refused_at_once(node: NodeProcess) -> None:
    with socket.create_connection(("127.0.0.1", node.port), timeout=60) as sock:
        sock.sendall(
            f"POST /v1/uploads HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10 * 1024**3}\r\n\r\n".encode()
        )
        # Answered with no body byte sent; the server closes the connection after it, and
        # its headers and body may come in separate segments.
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request_too_large" in answer
    _alive(node)


def test_forwarded_for_headers_do_not_reset_the_sign_in_limit(node: NodeProcess) -> None:
    # The node listens directly: X-Forwarded-For is the client's claim, not its address.
    # (With uvicorn's default, a loopback client's header was trusted as its address.)
    statuses = []
    with httpx.Client(base_url=node.base) as client:
        for i in range(SIGN_INS_PER_MINUTE + 1):
            answer = client.post(
                "/v1/auth/verify",
                json={"message": "not a sign-in message", "signature": "0x00"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(answer.status_code)
    assert statuses[:SIGN_INS_PER_MINUTE] == [401] * SIGN_INS_PER_MINUTE
    assert statuses[-1] == 429
    _alive(node)


def _client_from(node: NodeProcess, address: str) -> httpx.Client:
    """A client connecting from another loopback address: another client to the node."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=node.base, transport=transport, timeout=60)


def test_naming_a_wallet_in_a_header_does_not_spend_its_tries(node: NodeProcess) -> None:
    victim = Account.from_key("0x" + "55" * 32)
    with _client_from(node, "127.0.0.3") as honest:
        message = honest.post("/v1/auth/nonce", json={"address": victim.address}).json()
        signed = victim.sign_message(encode_defunct(text=message["message"]))
        signature = "0x" + bytes(signed.signature).hex()
        answer = honest.post(
            "/v1/auth/verify", json={"message": message["message"], "signature": signature}
        )
        assert answer.status_code == 200
        with _client_from(node, "127.0.0.2") as attacker:
            # The node's default: 30 tries a minute per address and per wallet.
            for _ in range(31):
                spent = attacker.post(
                    "/v1/models/1/try", json={}, headers={"X-Mercato-Account": victim.address}
                )
            assert spent.status_code == 429  # the attacker's own address is used up
        # The victim's wallet was never spent: its try is answered (no such model here).
        mine = honest.post("/v1/models/1/try", json={})
        assert mine.status_code != 429, mine.text


@contextlib.contextmanager
def _signed_in_from(node: NodeProcess, address: str, key: str) -> Iterator[httpx.Client]:
    account = Account.from_key(key)
    with _client_from(node, address) as client:
        message = client.post("/v1/auth/nonce", json={"address": account.address}).json()
        signed = account.sign_message(encode_defunct(text=message["message"]))
        answer = client.post(
            "/v1/auth/verify",
            json={"message": message["message"], "signature": "0x" + signed.signature.hex()},
        )
        assert answer.status_code == 200, answer.text
        yield client


def test_uploads_are_limited_per_wallet_and_address(node: NodeProcess) -> None:
    # Each upload fills the node's disk, and wallets cost nothing: both limits apply.
    odd = {"name": "x", "files": [{"path": "../x", "data": ""}], "encrypt": False}
    with _signed_in_from(node, "127.0.0.4", "0x" + "66" * 32) as creator:
        statuses = [creator.post("/v1/uploads", json=odd).status_code for _ in range(21)]
        assert statuses == [400] * 20 + [429]
        assert creator.post("/v1/uploads", json=odd).headers["Retry-After"]
    # The same wallet from another address is still limited (the wallet's own count).
    with _signed_in_from(node, "127.0.0.5", "0x" + "66" * 32) as elsewhere:
        assert elsewhere.post("/v1/uploads", json=odd).status_code == 429
    # Another wallet from a fresh address is not.
    with _signed_in_from(node, "127.0.0.6", "0x" + "77" * 32) as other:
        assert other.post("/v1/uploads", json=odd).status_code == 400


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("launcher", [PYTHON_M, CONSOLE_SCRIPT], ids=["python-m", "mercato"])
def test_a_killed_node_leaves_no_anvil(launcher: list[str], tmp_path: Path) -> None:
    started = _start_node(launcher, tmp_path / "node")
    anvils = started.anvil_pids()
    # Everything it started: Anvil, the try workers, multiprocessing's helper.
    children = psutil.Process(started.process.pid).children(recursive=True)
    try:
        assert len(anvils) == 1
        started.process.kill()  # SIGKILL: no handler, no clean-up code runs in the node
        started.process.wait(timeout=30)
        # Generous: Anvil saves its chain state on the way out.
        psutil.wait_procs(children, timeout=60)
        assert anvils[0] in [c.pid for c in children]
        assert [c.pid for c in children if not _gone(c)] == []
    finally:
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
