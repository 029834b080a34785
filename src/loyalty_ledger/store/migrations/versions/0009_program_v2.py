"""Program version 2: the balance and point lot read models learn the new entry kinds.

`balance` gets adjusted, transferred_in, transferred_out and pending (and the version 2
conservation CHECK); `point_lots` replays adjustment and transfer entries too. Neither
can be altered in place, since their rows must be summed again from the ledger: in
every generation's schema both are dropped with what stands over them (the `customers`
view, the analyst views, the `live` views) and their checkpoints removed, so `migrate`
creates them again from projections/ at checkpoint 0 and the next catch-up fills them
from the whole ledger (a rebuild, as `loyalty rebuild` does).

Plain SQL only: a migration is frozen history and imports nothing of the package.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
from psycopg import sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

REBUILT = ("balance", "point_lots")
FUNCTIONS = (
    "point_lots_apply(bigint, bigint)",
    "point_lots_take(text, bigint, bigint)",
    "point_lots_debit(text, text, bigint, timestamptz)",
)


def upgrade() -> None:
    conn = op.get_bind().connection.driver_connection  # psycopg: SQL composed, not formatted
    assert conn is not None
    schemas = [name for (name,) in conn.execute("SELECT schema_name FROM public.generations")]
    for schema in schemas:
        for table in REBUILT:
            # CASCADE: the views over it, here and in `live`; `migrate` makes them again.
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(schema, table))
            )
        for function in FUNCTIONS:
            conn.execute(
                sql.SQL("DROP FUNCTION IF EXISTS {}.{}").format(
                    sql.Identifier(schema), sql.SQL(function)  # constants above, not input
                )
            )
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            (sql.Identifier(schema, "projection_checkpoints").as_string(conn),),
        ).fetchone()
        if exists and exists[0]:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE name = ANY(%s)").format(
                    sql.Identifier(schema, "projection_checkpoints")
                ),
                (list(REBUILT),),
            )


def downgrade() -> None:
    raise NotImplementedError("version 2 read models have no downgrade: restore a backup instead")
