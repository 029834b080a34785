"""`loyalty db grant-analyst`: the login reads every live view, writes nothing, and reads
members' PII only with --with-pii. Proven by connecting as that role."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from analytics_cases import V2_CASE, V2_TABLES, V2_VIEWS, prepare
from psycopg import sql
from sqlalchemy.engine import make_url

from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.migrate import migrate
from loyalty_ledger.projectors import runner
from loyalty_ledger.projectors.sql import projections
from loyalty_ledger.store.db import connect, psycopg_url

PASSWORD = "s3cret-analyst"


def grant(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loyalty_ledger.cli", "db", "grant-analyst", *args],
        env={**os.environ, "LOYALTY_DATABASE_URL": url}, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=120, check=False,
    )  # fmt: skip


def login(url: str, role: str) -> psycopg.Connection[tuple[Any, ...]]:
    as_role = make_url(url).set(username=role, password=PASSWORD)
    return psycopg.connect(psycopg_url(as_role.render_as_string(hide_password=False)),
                           autocommit=True)  # fmt: skip


@pytest.fixture
def analyst(database_url: str) -> Iterator[str]:
    role = f"analyst_{uuid.uuid4().hex[:12]}"
    yield role
    with connect(database_url) as conn:  # roles are cluster-wide: leave none behind
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def denied(conn: psycopg.Connection[tuple[Any, ...]], statement: str) -> bool:
    try:
        conn.execute(statement)  # type: ignore[arg-type]
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable):
        return True
    return False


def test_analyst_reads_every_view_and_writes_nothing(database_url: str, analyst: str) -> None:
    prepare(database_url)
    done = grant(database_url, analyst, "--password", PASSWORD)
    assert done.returncode == 0, done.stderr
    assert f"created analyst login {analyst}" in done.stdout and "no PII" in done.stdout
    with login(database_url, analyst) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("live",)
        for projection in projections():  # every read model, views over functions included
            conn.execute(
                sql.SQL("SELECT * FROM {} LIMIT 5").format(sql.Identifier(projection.name))
            )
        top = conn.execute("SELECT customer_id, predicted_value_12m FROM segments "
                           "ORDER BY value_rank LIMIT 1").fetchone()  # fmt: skip
        assert top is not None and top[1] is not None
        assert conn.execute("SELECT count(*) FROM ledger").fetchone() != (0,)
        gen = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'gen\\_%' LIMIT 1"
        ).fetchone()
        assert gen is not None
        for statement in (
            "INSERT INTO ledger (customer_id, version, kind, occurred_at, event_id, points) "
            "VALUES ('x', 1, 'credit', now(), 'x', 1)",
            "UPDATE balance SET balance = 0",
            "DELETE FROM customer_months",
            "CREATE TABLE public.mine (a int)",
            "CREATE TABLE live.mine (a int)",
            "CREATE VIEW live.mine AS SELECT 1",
            "SELECT * FROM public.members",
            "SELECT * FROM public.dead_letters",
            f"SELECT * FROM {gen[0]}.ledger",
            f"SELECT * FROM {gen[0]}.customer_state",
            f"SELECT {gen[0]}.point_lots_apply(0, 1000000)",
        ):
            assert denied(conn, statement), statement


def test_an_upgrade_shows_new_views_to_existing_analysts(database_url: str, analyst: str) -> None:
    """The version 2 views came after analysts had logins: the migrate that makes them (and
    fills their tables on the next catch-up) shows them to every analyst, ungranted."""
    prepare(database_url, V2_CASE)
    assert grant(database_url, analyst, "--password", PASSWORD).returncode == 0
    with connect(database_url) as conn:  # back to a database from before the version 2 views
        gen = sql.Identifier(generations.live(conn).schema_name)
        for name in (*V2_TABLES, "expiring_soon"):  # the views over them go with them
            kind = sql.SQL("VIEW" if name == "expiring_soon" else "TABLE")
            conn.execute(sql.SQL("DROP {} {}.{} CASCADE").format(kind, gen, sql.Identifier(name)))
            conn.execute(sql.SQL("DELETE FROM {}.projection_checkpoints WHERE name = %s").format(
                gen), (name,))  # fmt: skip
        assert conn.execute("SELECT to_regclass('live.memberships')").fetchone() == (None,)
    migrate(database_url)
    with connect(database_url) as conn:
        runner.catch_up(conn)
    with login(database_url, analyst) as conn:
        for name in V2_TABLES + V2_VIEWS:
            found = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
            assert found.fetchone() != (0,), name


def test_pii_only_with_the_flag(database_url: str, analyst: str) -> None:
    prepare(database_url)
    assert grant(database_url, analyst, "--password", PASSWORD).returncode == 0
    with login(database_url, analyst) as conn:
        assert denied(conn, "SELECT email FROM public.members")
    done = grant(database_url, analyst, "--with-pii")
    assert done.returncode == 0 and "updated analyst login" in done.stdout, done.stderr
    with login(database_url, analyst) as conn:
        assert conn.execute("SELECT count(*) FROM public.members").fetchone() != (0,)
        assert denied(conn, "UPDATE public.members SET email = 'x'")
    assert grant(database_url, analyst).returncode == 0  # without the flag: taken back
    with login(database_url, analyst) as conn:
        assert denied(conn, "SELECT email FROM public.members")


def test_refuses_other_roles_and_bad_names(database_url: str) -> None:
    with connect(database_url) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    for args, fragment in (([str(row[0])], "is not an analyst login"),
                           (["Robert'); drop"], "is not valid")):  # fmt: skip
        done = grant(database_url, *args)
        assert done.returncode == 2 and fragment in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
