# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato fl` on a real Anvil: create, list, show, status, finalize and claim, with the
exit codes of what goes wrong. Joining and rounds are sent through the SDK here (the
SuperLink and SuperNode processes are exercised by the federation end-to-end test)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.cli.app import _register_commands, app
from mercato.client import Market
from mercato.config import Settings
from mercato.federation.checkpoint import task_dir
from mercato.federation.spec import raw_cid_for
from mercato.storage.cids import parse_cid
from tests.integration.market.conftest import PASSWORD, import_keys

pytestmark = pytest.mark.integration
_register_commands()
TOKEN = 10**18

SPEC = """
name = "digits-cli"
description = "Handwritten digits, 8x8, for the CLI test"
rounds = 2
min_participants = 2
max_participants = 3

[learner]
kind = "sgd"

[input]
n_features = 64
classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
"""


@dataclass
class Cli:
    data_dir: Path
    rpc_url: str
    password_file: Path
    deployment: Deployment
    accounts: list[LocalAccount]

    def __call__(self, *args: str, who: int = 1) -> tuple[int, str, str]:
        result = CliRunner().invoke(
            app,
            list(args),
            env={
                "MERCATO_DATA_DIR": str(self.data_dir),
                "MERCATO_RPC_URL": self.rpc_url,
                "MERCATO_ACCOUNT": self.accounts[who].address,
                "MERCATO_PASSWORD": PASSWORD,
                "COLUMNS": "200",
            },
        )
        return result.exit_code, result.stdout, result.stderr

    def market(self, who: int) -> Market:
        settings = Settings(data_dir=self.data_dir, rpc_url=self.rpc_url)
        return Market(settings, account=self.accounts[who], deployment=self.deployment)


@pytest.fixture
def cli(anvil: AnvilSupervisor, w3: Web3, tmp_path: Path) -> Iterator[Cli]:
    accounts = dev_accounts(6)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    data_dir = tmp_path / "data"
    deployment.save(data_dir)
    import_keys(data_dir, accounts[1:])
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    yield Cli(data_dir, anvil.rpc_url, password, deployment, accounts)


def test_a_task_from_create_to_claim(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "task.toml"
    spec.write_text(SPEC)
    code, out, err = cli(
        "fl", "create", str(spec), "--reward", "30", "--stake", "2", "--superlink",
        "127.0.0.1:9092", "--yes", "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    task = created["task_id"]
    assert created["reward"] == 30 * TOKEN
    # The spec the chain names is in the requester's store, byte for byte, naming the
    # SuperLink and the TLS root certificate made for it (kept where `fl run` finds it).
    store = cli.market(1).store
    stored = json.loads(store.get(parse_cid(created["spec_cid"])))
    assert stored["name"] == "digits-cli" and stored["coordinator_address"] == "127.0.0.1:9092"
    tls = task_dir(cli.data_dir, 31_337, task) / "superlink" / "tls"
    assert store.get(parse_cid(stored["tls_root_cid"])) == (tls / "ca.pem").read_bytes()
    assert (tls / "server.key").stat().st_mode & 0o077 == 0

    for who in (2, 3):
        cli.market(who).federation.join(task, bytes([who]) * 32)
    code, out, _ = cli("fl", "list", "digits", "--json")
    assert code == 0 and [t["task_id"] for t in json.loads(out)["items"]] == [task]
    code, out, _ = cli("fl", "show", str(task))
    assert code == 0 and "digits-cli" in out and "30 MCT" in out and "Input features" in out
    assert f"mercato fl join {task} --data" in out

    coordinator = cli.market(1).federation
    coordinator.commit_round(task, 1, raw_cid_for(b"m1"), raw_cid_for(b"r1"), {0}, 0.5)
    coordinator.commit_round(task, 2, raw_cid_for(b"m2"), raw_cid_for(b"r2"), {0, 1}, 0.75)
    code, out, _ = cli("fl", "status", str(task), "--json")
    status = json.loads(out)
    assert code == 0 and status["status"] == "running" and status["total_rounds"] == 2
    assert [r["metric"] for r in status["round_list"]] == [0.5, 0.75]

    code, _, err = cli("fl", "finalize", str(task), "--shares", "6000,3000", "--yes")
    assert code == 10 and "summing to 10000" in err  # 9000
    code, out, err = cli("fl", "finalize", str(task), "--yes", "--json")
    assert code == 0, err
    assert json.loads(out)["shares"] == [5_000, 5_000]  # equal among contributing seats

    code, _, err = cli("fl", "claim", str(task), "--yes", who=4)
    assert code == 106 and "owes" in err  # never joined
    before = cli.market(2).contracts.token.balance_of(cli.accounts[2].address)
    code, out, err = cli("fl", "claim", str(task), "--yes", "--json", who=2)
    assert code == 0, err
    paid = json.loads(out)["amount"]
    assert paid == 2 * TOKEN + 15 * TOKEN
    assert cli.market(2).contracts.token.balance_of(cli.accounts[2].address) == before + paid
    code, out, _ = cli("fl", "status", str(task), "--json", who=2)
    people = json.loads(out)["participant_list"]
    assert json.loads(out)["status"] == "finalized"
    assert [(p["share_bps"], p["claimed"]) for p in people] == [(5_000, paid), (5_000, 0)]


def test_mistakes_have_their_exit_codes(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SPEC.replace('kind = "sgd"', 'kind = "run_my_code"'))
    code, _, err = cli("fl", "create", str(bad), "--reward", "30", "--yes")
    assert code == 101 and "run_my_code" in err
    good = tmp_path / "task.toml"
    good.write_text(SPEC)
    code, _, err = cli("fl", "create", str(good), "--reward", "0", "--yes")
    assert code == 10 and "--reward" in err
    code, _, err = cli("fl", "create", str(good), "--reward", "5", "--yes")
    assert code == 10 and "--superlink" in err  # nowhere for data owners to connect
    code, _, err = cli("fl", "create", str(good), "--reward", "5", "--superlink", "x y:1", "--yes")
    assert code == 101 and "coordinator_address" in err
    code, _, err = cli("fl", "show", "99")
    assert code == 107 and "Task 99 is not in the index" in err
    code, _, err = cli("fl", "list", "--status", "paid")
    assert code == 10 and "open, running" in err
