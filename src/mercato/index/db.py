# SPDX-License-Identifier: AGPL-3.0-only
"""Opening the index database and bringing its schema up to date.

SQLite is the default, in the node's data directory:

    <data dir>/
    └── index.sqlite     (+ -wal, -shm while open: WAL mode, so searches never wait
                          for ingestion and ingestion never waits for searches)

Any SQLAlchemy URL works instead; PostgreSQL (`postgresql://...`) runs through psycopg 3.
Migrations are Alembic revisions shipped inside this package and applied on open, with
no alembic.ini: the configuration is built here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from mercato.errors import IndexDatabaseError

INDEX_FILENAME = "index.sqlite"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATE_LOCK = 0x4D45_5243_4154_4F00  # advisory-lock key ("MERCATO\0") held while migrating


def default_url(data_dir: Path) -> str:
    """The SQLite URL of the index in `data_dir`."""
    return f"sqlite:///{data_dir / INDEX_FILENAME}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL still never corrupts the database; a power cut may lose the
    # last transactions, which the cursor then re-ingests from the chain.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Searches read the file through a memory map (address space, not memory: the pages
    # are the OS's cache, shared by every connection) and keep a larger private cache
    # than the 2 MiB default; sorts of a page's candidates stay in memory. Together about
    # 10-20% off the median search on 100,000 models (benchmarks/index_search.py).
    cursor.execute(f"PRAGMA mmap_size={256 * 2**20}")
    cursor.execute(f"PRAGMA cache_size=-{16 * 2**10}")  # KiB
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def create_index_engine(url: str) -> Engine:
    """Creates the engine for an index database URL.

    Args:
        url: A SQLAlchemy URL: `sqlite:///path`, or `postgresql://user@host:port/db`
            (the psycopg 3 driver is chosen when the URL names none).

    Returns:
        The engine; SQLite connections are switched to WAL mode and given the cache
            settings searches want.

    Raises:
        IndexDatabaseError: The URL is malformed or names an unsupported backend.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise IndexDatabaseError(f"The index database URL {url!r} is malformed ({exc}).") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    raise IndexDatabaseError(
        f"The index supports SQLite and PostgreSQL, not {backend!r}. Give a sqlite:/// or "
        "postgresql:// URL."
    )


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration for this package's migrations (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's options go through ConfigParser interpolation: a `%` in the URL (a
    # percent-encoded password, `:memory:` rendered as `%3Amemory%3A`, a data directory
    # with `%` in its name) must be doubled or reading the option fails.
    url = engine.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_migration_engine(engine: Engine) -> Engine:
    """An engine on the same SQLite file whose transactions cover DDL too.

    pysqlite opens no transaction before DDL, so each CREATE/ALTER/DROP of a migration
    would commit on its own and a migration failing half-way would leave half a schema.
    SQLAlchemy's recipe: the driver's own handling off, an explicit BEGIN (IMMEDIATE:
    the write lock from the start, so two processes opening a new index migrate one
    after the other). Only migrations use it; the node's connections are unchanged.
    """
    migration = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(migration, "connect")
    def _driver_transactions_off(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        _sqlite_pragmas(dbapi_connection, _record)

    @event.listens_for(migration, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return migration


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrades the schema to `revision` in one transaction.

    Args:
        engine: The index database.
        revision: The target revision; `head` is the newest.

    Raises:
        IndexDatabaseError: The database cannot be reached or migrated.
    """
    config = alembic_config(engine)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        engine = _sqlite_migration_engine(engine)  # (an in-memory one is its own database)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Replicas started together would each create the tables; the lock ends
                # with this transaction, and the ones that waited find nothing to do.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except SQLAlchemyError as exc:
        raise IndexDatabaseError(
            f"Cannot migrate the index database at {engine.url!r}: {exc}. Check that it is "
            "reachable and writable; an index can always be deleted and rebuilt from the chain."
        ) from exc
    except CommandError as exc:
        # Typically an index written by a newer Mercato: its revision is unknown here.
        raise IndexDatabaseError(
            f"Cannot migrate the index database at {engine.url!r}: {exc}. It was probably "
            "written by a newer Mercato; upgrade, or delete the index and let the node "
            "rebuild it from the chain."
        ) from exc


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Downgrades the schema to `revision` (`base` drops every table)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
