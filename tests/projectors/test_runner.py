"""projectors.runner directly: catch-up in steps equals a rebuild, table for table."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

from loyalty_ledger.errors import UserError
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import Connection, connect
from support import CASES, ingest

CASE = CASES[2]


def _dump(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        p.name: conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier(p.name))
        ).fetchall()
        for p in runner.tables()
    }


def test_catch_up_in_small_steps_equals_a_rebuild(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    with connect(database_url) as conn:
        runner.rebuild(conn)
        whole = _dump(conn)
        monkeypatch.setattr(runner, "STEP_ENTRIES", 7)  # many steps, each its own transaction
        steps: list[tuple[str, int, int]] = []
        reached = runner.rebuild(conn, progress=lambda *step: steps.append(step))
        assert _dump(conn) == whole and whole["balance"]
        assert len(steps) > 100 * len(whole) and steps[-1][1] == reached
        assert runner.catch_up(conn) == reached  # caught up: nothing moves


def test_rebuilding_one_projection_leaves_the_others(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    with connect(database_url) as conn:
        runner.catch_up(conn)
        before = _dump(conn)
        conn.execute("UPDATE projection_checkpoints SET seq = 0 WHERE name <> 'balance'")
        runner.rebuild(conn, ("balance",))
        assert _dump(conn)["balance"] == before["balance"]
        row = conn.execute("SELECT max(seq) FROM projection_checkpoints WHERE name <> 'balance'")
        assert row.fetchone() == (0,)


def test_an_unknown_projection_is_named(database_url: str) -> None:
    with connect(database_url) as conn, pytest.raises(UserError, match="unknown projection 'x'"):
        runner.rebuild(conn, ("x",))
