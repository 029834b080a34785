"""`point_lots` applies a step set-wise: new functions in every generation that has the old.

`loyalty migrate` creates only the read models a generation lacks, so a generation made
before this revision would keep replaying the ledger entry by entry. The rows are the same
either way (a step's result does not depend on the function that made it), so nothing is
rebuilt: each generation's `point_lots_apply` is replaced, and `point_lots_replay` added,
from a frozen copy of projections/point_lots.sql's functions (sql/0011/).

Plain SQL only: a migration is frozen history and imports nothing of the package.

Revision ID: 0011
Revises: 0010
"""

from pathlib import Path

from alembic import op
from psycopg import sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

FROZEN_SQL = Path(__file__).resolve().parents[1] / "sql" / "0011" / "point_lots_functions.sql"


def upgrade() -> None:
    conn = op.get_bind().connection.driver_connection  # psycopg: SQL composed, not formatted
    assert conn is not None
    functions = FROZEN_SQL.read_text(encoding="utf-8")
    previous = conn.execute("SELECT current_setting('search_path')").fetchone()
    assert previous is not None
    for (schema,) in conn.execute("SELECT schema_name FROM public.generations").fetchall():
        exists = conn.execute(
            "SELECT to_regprocedure(%s) IS NOT NULL",
            (sql.Identifier(schema).as_string(conn) + ".point_lots_apply(bigint, bigint)",),
        ).fetchone()
        if not (exists and exists[0]):
            continue  # no point_lots here yet: `migrate` creates it from projections/
        # unqualified names in the functions' bodies resolve at call time, as before
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(functions))  # a frozen file, not input
    conn.execute("SELECT set_config('search_path', %s, false)", (str(previous[0]),))


def downgrade() -> None:
    pass  # the later functions give the same rows: the earlier ones need not come back
