"""The view `tier_levels`: the program's tier levels, which the analyst views read (the
thresholds live only in the program's TOML). Apart from refresh.py so that a program's
adoption does not import numpy and scipy (half a second of every command's start)."""

from __future__ import annotations

from psycopg import sql

from loyalty_ledger.program import Program
from loyalty_ledger.store.db import Connection

TIERS_VIEW = sql.SQL(
    "CREATE OR REPLACE VIEW tier_levels AS "
    "SELECT rank, name, min_spend, multiplier, window_days FROM (VALUES {}) "
    "AS levels (rank, name, min_spend, multiplier, window_days)"
)
NO_TIERS = sql.SQL(
    "CREATE OR REPLACE VIEW tier_levels AS SELECT NULL::integer AS rank, NULL::text AS name, "
    "NULL::numeric AS min_spend, NULL::numeric AS multiplier, NULL::integer AS window_days "
    "WHERE false"
)


def publish_tiers(conn: Connection, program: Program) -> int:
    """Replace the view `tier_levels` with the program's levels; returns how many."""
    tiers = program.tiers
    if tiers is None:
        conn.execute(NO_TIERS)
        return 0
    rows = [
        sql.SQL("({}::integer, {}::text, {}::numeric, {}::numeric, {}::integer)").format(
            rank, level.name, level.min_spend, level.multiplier, tiers.window_days
        )
        for rank, level in enumerate(tiers.levels, start=1)
    ]
    conn.execute(TIERS_VIEW.format(sql.SQL(", ").join(rows)))
    return len(rows)
