# SPDX-License-Identifier: AGPL-3.0-only
"""An operator's PostgreSQL URL as they would write it: a role with a password whose
characters must be percent-encoded in a URL (`@`, `%`, `:`, `/`).

The throwaway cluster trusts loopback connections, so the server does not check the
password; what is tested is that Mercato carries such a URL through its migrations
(Alembic's ConfigParser refused any `%`) and connects as that role."""

from __future__ import annotations

import psycopg
from sqlalchemy import URL, make_url, text

from mercato.index.db import create_index_engine, migrate
from tests.integration.index.conftest import PostgresServer

PASSWORD = "p@ss%w:rd/1"


def test_a_password_with_url_reserved_characters_opens_and_migrates(
    postgres_server: PostgresServer,
) -> None:
    database = make_url(postgres_server.new_database()).database
    admin = f"host={postgres_server.host} port={postgres_server.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS mercato_operator")
        conn.execute(f"CREATE ROLE mercato_operator LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f'ALTER DATABASE "{database}" OWNER TO mercato_operator')
    url = URL.create(
        "postgresql+psycopg",
        username="mercato_operator",
        password=PASSWORD,
        host=postgres_server.host,
        port=postgres_server.port,
        database=database,
    ).render_as_string(hide_password=False)
    assert "%40" in url and "%25" in url  # what an operator pastes into --index-url

    engine = create_index_engine(url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar_one() == (
                "mercato_operator"
            )
            assert connection.execute(text("SELECT count(*) FROM models")).scalar_one() == 0
    finally:
        engine.dispose()
