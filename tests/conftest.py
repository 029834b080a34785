"""Fixtures on a real PostgreSQL server: embedded, or LOYALTY_TEST_DATABASE_URL when set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, make_url

from loyalty_ledger import embedded

TEMPLATE = "loyalty_template"


@dataclass(frozen=True)
class PgServer:
    """A server we may create databases on; `url` points at its maintenance database."""

    url: URL

    def url_for(self, dbname: str) -> str:
        url = self.url.set(drivername="postgresql+psycopg", database=dbname)
        return url.render_as_string(hide_password=False)

    def connect(self, dbname: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        url = self.url if dbname is None else self.url.set(database=dbname)
        params: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
            **url.query,  # e.g. host=/socket/dir for Unix sockets
        }
        conninfo = make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
        return psycopg.connect(conninfo, autocommit=True)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    external = os.environ.get("LOYALTY_TEST_DATABASE_URL")
    if external:
        yield PgServer(make_url(external))
        return
    # no skip on failure: a missing server must fail the run, in CI and locally
    with embedded.running(tmp_path_factory.mktemp("pg"), fsync=False) as server:
        yield PgServer(make_url(server.url).set(database="postgres"))


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    # imported here so this file imports even before the schema module exists
    from loyalty_ledger.store.schema import migrate

    name = sql.Identifier(TEMPLATE)
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))
        conn.execute(sql.SQL("create database {}").format(name))
    migrate(pg_server.url_for(TEMPLATE))
    with pg_server.connect() as conn:
        # create database ... template fails while anyone (e.g. a leftover pool) is connected
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            [TEMPLATE],
        )
    return TEMPLATE


@pytest.fixture
def database_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    with twin_database(pg_server, template_db) as url:
        yield url


@contextmanager
def twin_database(pg_server: PgServer, template_db: str = TEMPLATE) -> Iterator[str]:
    """A fresh, migrated database (a copy of the template); dropped afterwards."""
    name = f"test_{uuid.uuid4().hex}"
    with pg_server.connect() as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    try:
        yield pg_server.url_for(name)
    finally:
        with pg_server.connect() as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "LOYALTY_DATABASE_URL": database_url}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # in CI a skipped test (e.g. "no postgres") would hide a broken setup, so it fails the run
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or os.environ.get("CI") != "true" or exitstatus != pytest.ExitCode.OK:
        return
    if skipped := reporter.stats.get("skipped", []):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter.write_sep("=", f"ci: {len(skipped)} skipped; skips fail the run in CI", red=True)
