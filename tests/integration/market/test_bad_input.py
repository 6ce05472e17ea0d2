# SPDX-License-Identifier: AGPL-3.0-only
"""Bad input gets a clear error and a stable exit code, and changes nothing."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from mercato.chain.anvil import free_port
from mercato.chain.contracts import LicenseState
from mercato.models.samples import build_samples

from .conftest import PASSWORD, Network, import_keys

TOKEN = 10**18


@pytest.fixture(scope="module")
def paid_model(network: Network, tmp_path_factory: pytest.TempPathFactory) -> int:
    samples = build_samples(tmp_path_factory.mktemp("bad-input-samples"), ["digits-mlp"])
    published = network.market(network.creator_dir, network.creator).models.publish(
        samples["digits-mlp"].root, price=2 * TOKEN
    )
    return int(published.model_id)


def _auth(network: Network, index: int) -> list[str]:
    return [
        "--password-file",
        str(network.password_file),
        "--account",
        network.buyers[index].address,
    ]


def test_missing_keystore_is_exit_11(network: Network, paid_model: int) -> None:
    stranger = Account.create().address
    result = network.cli("buy", "--yes", str(paid_model), "--password-file",
                         str(network.password_file), "--account", stranger)  # fmt: skip
    assert result.returncode == 11
    assert "mercato wallet" in result.stderr


def test_wrong_password_is_exit_12_and_buys_nothing(
    network: Network, paid_model: int, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    buyer = network.buyers[3]
    result = network.cli(
        "buy", "--yes", str(paid_model), "--password-file", str(wrong), "--account", buyer.address
    )
    assert result.returncode == 12
    market = network.market(network.buyer_dir)
    assert market.orders.status(paid_model, buyer.address).state is LicenseState.NONE


def test_insufficient_balance_is_exit_65_and_changes_nothing(
    network: Network, paid_model: int, tmp_path: Path
) -> None:
    poor = Account.create()
    folder = tmp_path / "poor"
    import_keys(folder, [poor])
    (folder / "deployments").mkdir()
    network.deployment.save(folder)
    result = network.cli("buy", "--yes", str(paid_model), "--password-file",
                         str(network.password_file), data_dir=folder)  # fmt: skip
    assert result.returncode == 65
    assert "Not enough MCT: balance 0, price 2" in result.stderr
    market = network.market(folder)
    assert market.orders.status(paid_model, poor.address).state is LicenseState.NONE


def test_buying_a_deprecated_version_is_exit_63(network: Network, tmp_path: Path) -> None:
    sample = build_samples(tmp_path, ["diabetes-gbr"])["diabetes-gbr"]
    creator = network.market(network.creator_dir, network.creator)
    model = creator.models.publish(sample.root, price=TOKEN)
    creator.models.deprecate(model.model_id, 1)
    buyer = network.buyers[4]
    before = network.market(network.buyer_dir).wallet.balance(buyer.address)
    result = network.cli("buy", "--yes", str(model.model_id), *_auth(network, 4))
    assert result.returncode == 63
    assert "deprecated" in result.stderr
    assert network.market(network.buyer_dir).wallet.balance(buyer.address) == before


def test_a_model_id_that_does_not_exist_is_exit_61(network: Network) -> None:
    result = network.cli("buy", "--yes", "999", *_auth(network, 4))
    assert result.returncode == 61
    assert "Model 999 does not exist" in result.stderr
    shown = network.cli("show", "999")
    assert shown.returncode == 61


class _TamperingGateway(http.server.BaseHTTPRequestHandler):
    """Forwards to the real provider but flips one byte in the middle of every answer."""

    upstream = ""

    def do_GET(self) -> None:
        with urllib.request.urlopen(self.upstream + self.path) as answer:
            body = bytearray(answer.read())
            content_type = answer.headers["Content-Type"]
        body[len(body) // 2] ^= 0x01
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(bytes(body))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tampering_gateway(network: Network) -> Iterator[str]:
    handler = type("Handler", (_TamperingGateway,), {"upstream": network.creator_gateway})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_tampered_or_unreachable_provider_writes_nothing_then_the_real_one_works(
    network: Network, paid_model: int, tampering_gateway: str, tmp_path: Path
) -> None:
    buyer = network.buyers[5]
    auth = _auth(network, 5)
    bought = network.cli("buy", "--yes", str(paid_model), "--wait", "90", *auth)
    assert bought.returncode == 0, bought.stderr
    dest = tmp_path / "model"

    tampered = network.cli(
        "download", str(paid_model), str(dest), "--gateway", tampering_gateway, *auth
    )
    assert tampered.returncode == 81
    assert "do not match" in tampered.stderr
    assert not dest.exists()

    down = network.cli("download", str(paid_model), str(dest), "--gateway",
                       f"http://127.0.0.1:{free_port()}", *auth)  # fmt: skip
    assert down.returncode == 81
    assert "cannot serve it" in down.stderr
    assert not dest.exists()

    fine = network.cli("download", str(paid_model), str(dest), *auth)
    assert fine.returncode == 0, fine.stderr
    assert (dest / "README.md").exists()
    assert network.market(network.buyer_dir).contracts.marketplace.has_license(
        buyer.address, paid_model
    )
    assert PASSWORD not in fine.stdout + fine.stderr
