"""Creating a generation's read models and showing the live one's in the `live` schema.

Analysts query `live.<read model>`: views over the live generation's tables, so a
promotion switches what they see in one transaction and their grants stay.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from loyalty_ledger.projectors.sql import projections
from loyalty_ledger.store.db import Connection

LIVE_SCHEMA = "live"  # views over the live generation's read models


def ensure_read_models(conn: Connection, schema: str) -> None:
    """Create the projections `schema` lacks (new ones after an upgrade), with checkpoints at 0.

    A new projection table starts empty at checkpoint 0, so the next catch-up
    fills it from the whole ledger.
    """
    previous = _search_path(conn)
    conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
    try:
        for projection in projections():
            exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL",
                (sql.Identifier(schema, projection.name).as_string(conn),),
            ).fetchone()
            if exists and exists[0]:
                continue
            conn.execute(sql.SQL(projection.create))  # a trusted file, not input
            if projection.table:
                conn.execute(
                    "INSERT INTO projection_checkpoints (name, seq) VALUES (%s, 0) "
                    "ON CONFLICT (name) DO NOTHING",
                    (projection.name,),
                )
    finally:
        conn.execute("SELECT set_config('search_path', %s, false)", (previous,))


def _search_path(conn: Connection) -> str:
    row = conn.execute("SELECT current_setting('search_path')").fetchone()
    assert row is not None
    return str(row[0])


def live_relations() -> list[str]:
    """What the `live` schema shows: every read model, and the ledger itself (read-only)."""
    return [p.name for p in projections()] + ["ledger"]


def expose(conn: Connection, schema: str) -> None:
    """Point the `live` views at `schema`: run inside the promotion's transaction."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(LIVE_SCHEMA)))
    for name in live_relations():
        view = sql.Identifier(LIVE_SCHEMA, name)
        select = sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name))
        try:
            # REPLACE keeps the grants analysts were given on the view.
            with conn.transaction():
                conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(view, select))
        except psycopg.errors.InvalidTableDefinition:  # its columns changed: a new view
            conn.execute(sql.SQL("DROP VIEW {}").format(view))
            conn.execute(sql.SQL("CREATE VIEW {} AS {}").format(view, select))
