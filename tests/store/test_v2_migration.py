"""Migration 0009 on a database from before it: balance and point_lots made again and refilled.

A database migrated before program version 2 holds the version 1 `balance` (no adjusted,
transfers or pending) and a `point_lots` that knows only version 1's entry kinds, each
with a checkpoint at the ledger's end. After `migrate` both have the version 2 shape and
were filled again from the whole ledger, and the views over them are back.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from loyalty_ledger.generations.migrate import migrate
from loyalty_ledger.store.db import Connection, connect, sqlalchemy_url
from loyalty_ledger.store.tables import migrations_dir
from support import V2_CASES, export, ingest

FROZEN_V1 = migrations_dir() / "sql" / "0001"
LOTS = "SELECT * FROM point_lots ORDER BY customer_id, lot_seq"
CASE = next(c for c in V2_CASES if c.name == "case-11")


def _as_before_0009(url: str, conn: Connection) -> None:
    """The version 1 read models, stale at the ledger's end, and the database at 0008."""
    conn.execute("SET search_path TO gen_main, public")
    conn.execute("DROP TABLE balance, point_lots CASCADE")
    for name in ("balance", "point_lots"):
        conn.execute((FROZEN_V1 / f"{name}.sql").read_text(encoding="utf-8"))
    conn.execute(
        "UPDATE projection_checkpoints SET seq = (SELECT max(seq) FROM ledger) "
        "WHERE name IN ('balance', 'point_lots')"
    )
    conn.commit()
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    command.stamp(config, "0008", purge=True)


def _columns(conn: Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'gen_main' AND table_name = %s",
        (table,),
    )
    return {name for (name,) in rows}


def test_0009_rebuilds_balance_and_point_lots_from_the_ledger(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    before = export(database_url)
    with connect(database_url) as conn:
        lots = conn.execute(LOTS).fetchall()
        _as_before_0009(database_url, conn)
        assert "adjusted" not in _columns(conn, "balance")
    migrate(database_url)
    assert export(database_url) == before
    with connect(database_url) as conn:
        assert {"adjusted", "transferred_in", "transferred_out", "pending"} <= _columns(
            conn, "balance"
        )
        assert conn.execute(LOTS).fetchall() == lots
        # the analysts' views over the rebuilt tables are back, in the live schema too
        assert conn.execute("SELECT count(*) FROM live.points_liability").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM live.customers").fetchone() == (len(before[0]),)
