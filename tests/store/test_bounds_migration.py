"""Migration 0006 on a database from before it: totals backfilled, points-limit CHECKs added."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from psycopg import sql

from loyalty_ledger.engine.state import from_snapshot
from loyalty_ledger.generations.migrate import migrate
from loyalty_ledger.store.db import Connection, connect, sqlalchemy_url
from loyalty_ledger.store.tables import migrations_dir
from support import export, ingest, undo_0010

ROOT = Path(__file__).resolve().parents[2]
TOTALS = ("earned", "redeemed", "reversed", "expired")
CHECKS = {
    "ledger": "ledger_points_limit",
    "balance": "balance_points_limit",
    "customer_months": "customer_months_points_limit",
    "point_lots": "point_lots_points_limit",
}
VIEWS = ("points_liability", "points_liability_total")


def _as_before_0006(url: str, conn: Connection) -> None:
    """Undo what 0006 and the revisions after it did, and say the database is at 0005."""
    undo_0010(conn)
    conn.execute("DROP TABLE public.api_keys")  # 0008
    conn.execute("ALTER TABLE consumer_offsets RENAME COLUMN owner_epoch TO generation")  # 0007
    conn.execute("UPDATE customer_state SET state = state - %s::text[]", (list(TOTALS),))
    for table, name in CHECKS.items():
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    conn.commit()
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    command.stamp(config, "0005", purge=True)


def _states(conn: Connection) -> dict[str, Any]:
    return dict(conn.execute("SELECT customer_id, state FROM customer_state").fetchall())


def _checks(conn: Connection) -> dict[str, bool]:
    """Constraint name -> validated, for the points-limit CHECKs of the live generation."""
    rows = conn.execute(
        "SELECT conname, convalidated FROM pg_constraint WHERE conname = ANY(%s) "
        "AND connamespace = 'gen_main'::regnamespace",
        (list(CHECKS.values()),),
    ).fetchall()
    return dict(rows)


def test_0006_backfills_the_totals_from_the_ledger(database_url: str) -> None:
    ingest(database_url, ROOT / "examples" / "events.jsonl", ROOT / "examples" / "program.toml")
    customers, _ = export(database_url)
    with connect(database_url) as conn:
        before = _states(conn)
        _as_before_0006(database_url, conn)
        assert all("earned" not in state for state in _states(conn).values())
    migrate(database_url)
    with connect(database_url) as conn:
        assert _states(conn) == before
        assert _checks(conn) == dict.fromkeys(CHECKS.values(), True)
        for customer_id, state in before.items():
            loaded = from_snapshot(customer_id, state)
            assert loaded.balance == (
                loaded.earned + loaded.adjusted + loaded.transferred_in
                - loaded.redeemed - loaded.reversed - loaded.expired - loaded.transferred_out
            )  # fmt: skip
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO ledger (customer_id, version, kind, occurred_at, event_id, points, "
                "hash) VALUES ('x', 1, 'credit', now(), 'e', 1000000000000001, '\\x00')"
            )
    assert export(database_url)[0] == customers
    # the summed views were made again from projections/, and `live` shows them
    with connect(database_url) as conn:
        for view in VIEWS:
            conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier("live", view)))
            (kind,) = conn.execute(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = 'gen_main' "
                "AND table_name = %s AND column_name = 'points_earned'",
                (view,),
            ).fetchone() or (None,)
            assert kind == "numeric", view


def test_0006_leaves_a_check_unvalidated_where_old_rows_pass_the_limit(database_url: str) -> None:
    with connect(database_url) as conn:
        _as_before_0006(database_url, conn)
        conn.execute(
            "INSERT INTO ledger (customer_id, version, kind, occurred_at, event_id, points, hash) "
            "VALUES ('old', 1, 'credit', now(), 'e', 5000000000000000000, '\\x00')"
        )
        conn.commit()
    migrate(database_url)
    with connect(database_url) as conn:
        checks = _checks(conn)
        assert checks.pop("ledger_points_limit") is False
        assert all(checks.values())
        with pytest.raises(psycopg.errors.CheckViolation):  # new rows are held to it
            conn.execute(
                "INSERT INTO ledger (customer_id, version, kind, occurred_at, event_id, points, "
                "hash) VALUES ('x', 1, 'credit', now(), 'e', 1000000000000001, '\\x00')"
            )
