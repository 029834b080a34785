"""Migration 0011 on a database from before it: point_lots' functions replaced, rows kept.

A database migrated to 0010 holds, in each generation's schema, the `point_lots_apply` that
replays the ledger entry by entry and no `point_lots_replay`. After `migrate` every
generation has the functions projections/point_lots.sql installs now (PUBLIC still may not
call them), its point_lots rows untouched, and a catch-up over later entries gives the rows
a rebuild from the whole ledger gives.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.migrate import migrate
from loyalty_ledger.generations.rerun import rerun
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import Connection, connect, sqlalchemy_url
from loyalty_ledger.store.tables import migrations_dir
from support import V2_CASES, ingest

CASE = next(c for c in V2_CASES if c.name == "case-11")  # expiries, returns, debt, transfers
LOTS = "SELECT * FROM point_lots ORDER BY customer_id, lot_seq"
SCHEMAS = ("gen_main", "gen_again")
# point_lots_apply as projections/point_lots.sql had it at 0010 (commit 1ad5ba8^): the
# whole step entry by entry. point_lots_take and point_lots_debit were as they are now.
APPLY_0010 = """
CREATE OR REPLACE FUNCTION point_lots_apply(after_seq bigint, upto_seq bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    e record;
    newest bigint;
BEGIN
    FOR e IN
        SELECT customer_id, seq, kind, points, occurred_at, expires_at
        FROM ledger
        WHERE seq > after_seq AND seq <= upto_seq
          AND kind IN ('credit', 'adjustment_credit', 'transfer_in', 'debt_settled',
                       'redemption', 'reversal', 'expiry', 'adjustment_debit', 'transfer_out')
        ORDER BY seq
    LOOP
        IF e.kind IN ('credit', 'adjustment_credit', 'transfer_in') THEN
            INSERT INTO point_lots (customer_id, lot_seq, earned_at, expires_at, remaining)
            VALUES (e.customer_id, e.seq, e.occurred_at, e.expires_at, e.points);
        ELSIF e.kind = 'debt_settled' THEN
            SELECT max(lot_seq) INTO newest FROM point_lots WHERE customer_id = e.customer_id;
            PERFORM point_lots_take(e.customer_id, newest, e.points);
            PERFORM point_lots_take(e.customer_id, 0, e.points);
        ELSE
            PERFORM point_lots_debit(e.customer_id, e.kind, e.points, e.expires_at);
        END IF;
    END LOOP;
END
$$;
"""


def _functions(conn: Connection, schema: str) -> dict[str, tuple[str, bool]]:
    """point_lots' functions in `schema`: name(arguments) -> (body, PUBLIC may execute)."""
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, p.prosrc, has_function_privilege('public', p.oid, "
        "'EXECUTE') FROM pg_proc p WHERE p.pronamespace = %s::regnamespace "
        "AND p.proname LIKE 'point\\_lots\\_%%'",
        (schema,),
    ).fetchall()
    return {name.removeprefix(f"{schema}."): (body, public) for name, body, public in rows}


def _as_before_0011(url: str) -> None:
    """In every generation: the 0010 functions, point_lots filled by them; the database at
    0010."""
    for schema in SCHEMAS:
        with connect(url, schema=schema) as conn:
            conn.execute("DROP FUNCTION point_lots_replay(bigint, bigint, text[])")
            conn.execute(APPLY_0010)
            runner.rebuild(conn, ("point_lots",))  # rows as the entry-by-entry replay makes them
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    command.stamp(config, "0010", purge=True)


def test_0011_replaces_point_lots_functions_and_keeps_the_rows(
    database_url: str, tmp_path: Path
) -> None:
    lines = (CASE / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    second.write_text("".join(lines[len(lines) // 2 :]), encoding="utf-8")
    ingest(database_url, first, CASE / "program.toml")
    with connect(database_url) as conn:
        current = _functions(conn, "gen_main")  # as a generation made now has them
        assert "point_lots_replay(bigint,bigint,text[])" in current
        rerun(conn, None, "test", "again", None)  # a second generation, point_lots of its own
        assert [g.schema_name for g in generations.listing(conn)] == list(SCHEMAS)
    _as_before_0011(database_url)
    lots = {}
    with connect(database_url) as conn:
        for schema in SCHEMAS:
            old = _functions(conn, schema)
            assert "point_lots_replay(bigint,bigint,text[])" not in old
            assert old != current
            conn.execute("SELECT set_config('search_path', %s, false)", (f"{schema}, public",))
            lots[schema] = conn.execute(LOTS).fetchall()
            assert lots[schema], schema
        (migrated_at,) = conn.execute("SELECT max(seq) FROM gen_main.ledger").fetchone() or (0,)

    migrate(database_url)

    with connect(database_url) as conn:
        for schema in SCHEMAS:
            assert _functions(conn, schema) == current, schema
        assert not any(public for _, public in current.values())  # only the runner calls them
        for schema in SCHEMAS:
            conn.execute("SELECT set_config('search_path', %s, false)", (f"{schema}, public",))
            assert conn.execute(LOTS).fetchall() == lots[schema], schema
    # later entries: the new functions catch up, as a rebuild from the whole ledger gives
    ingest(database_url, second, None)
    with connect(database_url) as conn:
        runner.catch_up(conn)
        later = conn.execute(
            "SELECT DISTINCT kind FROM ledger WHERE seq > %s", (migrated_at,)
        ).fetchall()
        assert {"expiry", "reversal", "debt_settled", "transfer_out"} <= {k for (k,) in later}
        caught_up = conn.execute(LOTS).fetchall()
        assert caught_up != lots["gen_main"]
        runner.rebuild(conn, ("point_lots",))
        assert conn.execute(LOTS).fetchall() == caught_up
