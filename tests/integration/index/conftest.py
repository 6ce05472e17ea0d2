# SPDX-License-Identifier: AGPL-3.0-only
"""Fixtures for the index on a real Anvil, with SQLite and a throwaway PostgreSQL.

PostgreSQL comes from Debian's packages (`/usr/lib/postgresql/<major>/bin`). Its server
refuses to run as root, so as root every server binary runs as the `postgres` user via
`runuser`, in a temporary directory it owns, on a free loopback port. Without the
binaries the PostgreSQL cases are skipped, unless MERCATO_REQUIRE_POSTGRES is set (CI),
where that is a failure.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from web3 import Web3

from mercato.chain.anvil import dev_accounts, free_port
from mercato.chain.contracts import MercatoContracts
from mercato.chain.deployment import Deployment, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.index import DictMetadataSource, Index, Indexer, IndexerConfig

REQUIRE_ENV = "MERCATO_REQUIRE_POSTGRES"


def _postgres_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    host: str
    port: int
    _databases: itertools.count[int]

    def new_database(self) -> str:
        """Creates an empty database and returns its SQLAlchemy URL."""
        name = f"mercato_index_{next(self._databases)}"
        admin = f"host={self.host} port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for this test session, removed afterwards."""
    bindir = _postgres_bin()
    if bindir is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but no /usr/lib/postgresql/*/bin/initdb exists")
        pytest.skip("PostgreSQL server binaries are not installed (Debian package postgresql)")
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    root = Path(tempfile.mkdtemp(prefix="mercato-pg-"))
    if as_root:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, port = root / "data", free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "log"),
        "-w",
        "start",
    )
    try:
        yield PostgresServer("127.0.0.1", port, itertools.count())
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty index database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture
def fresh_url(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Makes another empty database on the same backend as a given URL (for rebuilds)."""
    counter = itertools.count()

    def make(like: str) -> str:
        if like.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'rebuild-{next(counter)}.sqlite'}"
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.new_database()

    return make


@dataclass
class Market:
    """A deployment on Anvil with one client per dev account (0 deploys)."""

    w3: Web3
    deployment: Deployment
    clients: list[MercatoContracts]
    addresses: list[str]
    metadata: DictMetadataSource

    def indexer(self, index: Index, **config: int | float) -> Indexer:
        return Indexer(index, self.w3, self.deployment, self.metadata, IndexerConfig(**config))  # type: ignore[arg-type]


@pytest.fixture
def market(w3: Web3) -> Market:
    accounts = dev_accounts(6)
    deployment = deploy(Web3Backend(w3, accounts[0]), fund=[a.address for a in accounts])
    clients = [MercatoContracts.connect(w3, deployment, Web3Backend(w3, a)) for a in accounts]
    return Market(w3, deployment, clients, [a.address for a in accounts], DictMetadataSource())
