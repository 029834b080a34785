"""A conformance case ingested into a database of its own, for the analyst views' tests.

(Not a conftest.py: a second `conftest` module would shadow the root one, which
tests import by that name.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from loyalty_ledger.analytics.refresh import refresh
from loyalty_ledger.generations.programs import adopt
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import connect
from support import CASES, ingest

# Expiry every 2 months, four tiers, returns into debt, referrals with a ladder: every view.
CASE = next(c for c in CASES if c.name == "case-07")
# Pending points, four campaigns, two membership plans, adjustments and transfers: the
# version 2 views and the report's charts of campaigns and memberships.
V2_CASE = next(c for c in CASES if c.name == "case-10")
# The version 2 analysts' read models: the tables (projections), then the views over them.
V2_TABLES = ("campaign_purchases", "pending_amounts", "membership_history", "adjustment_months")
V2_VIEWS = ("campaign_performance", "pending_points", "memberships", "expiring_soon",
            "adjustments")  # fmt: skip


def prepare(url: str, case: Path = CASE) -> None:
    """Ingest the case, catch the projections up, publish the tiers and the CLV model."""
    ingest(url, case / "events.jsonl", case / "program.toml")
    with connect(url) as conn:
        runner.catch_up(conn)
        refresh(conn, adopt(conn, None))


@contextmanager
def case_database(pg_server: Any, template_db: str, case: Path = CASE) -> Iterator[str]:
    """A copy of the migrated template with `case` prepared in it; dropped afterwards."""
    dbname = f"analytics_{uuid.uuid4().hex}"
    name = sql.Identifier(dbname)
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("create database {} template {}").format(
            name, sql.Identifier(template_db)))  # fmt: skip
    try:
        url: str = pg_server.url_for(dbname)
        prepare(url, case)
        yield url
    finally:
        with pg_server.connect() as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))


def rows(url: str, query: str, settings: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A view's rows as dicts, with `loyalty.*` settings set first (e.g. point_value)."""
    with connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        for name, value in (settings or {}).items():
            cur.execute("SELECT set_config(%s, %s, false)", (f"loyalty.{name}", value))
        return cur.execute(query).fetchall()  # type: ignore[arg-type]


def dump(url: str, names: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the projection tables `names`, in a stable order."""
    with connect(url) as conn:
        return {
            name: conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier(name))
                if name != "ledger_clock" else sql.SQL("SELECT * FROM ledger_clock")
            ).fetchall()
            for name in names
        }  # fmt: skip
