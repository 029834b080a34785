"""Bounds (PROGRAM.md "Bounds"): the points limit as CHECKs, and lifetime totals in snapshots.

In every generation's schema: the ledger's points and the point totals of the
read models (balance, customer_months, point_lots) get a CHECK at 10^15, paired
with the engine's assertions; each customer_state snapshot gets the lifetime
totals the engine now keeps (earned, redeemed, reversed, expired), summed from
the ledger up to the snapshot's version; the two analyst views that sum points
over customers are dropped, so that `migrate` creates them again from
projections/ with numeric sums (and points the `live` views at them).

A ledger written before the bounds may hold points beyond them, which nothing
can correct in place (re-run such a ledger into a new generation): a CHECK that
its rows fail stays NOT VALID, enforced for every new row only.

Plain SQL only: a migration is frozen history and imports nothing of the package.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
from psycopg import Connection, sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# (table, constraint, condition), 10^15 spelled out: each added in every generation schema
# that has the table (a fresh database's read models already have theirs, from projections/).
CHECKS = (
    ("ledger", "ledger_points_limit", "points <= 1000000000000000"),
    (
        "balance",
        "balance_points_limit",
        "abs(balance) <= 1000000000000000 AND earned <= 1000000000000000 "
        "AND redeemed <= 1000000000000000 AND reversed <= 1000000000000000 "
        "AND expired <= 1000000000000000",
    ),
    (
        "customer_months",
        "customer_months_points_limit",
        "points_earned BETWEEN 0 AND 1000000000000000 "
        "AND points_redeemed BETWEEN 0 AND 1000000000000000 "
        "AND points_reversed BETWEEN 0 AND 1000000000000000 "
        "AND points_expired BETWEEN 0 AND 1000000000000000",
    ),
    ("point_lots", "point_lots_points_limit", "remaining <= 1000000000000000"),
)

# The sums of the ledger's balance-moving entries per customer, up to its snapshot.
TOTALS = """
UPDATE {state} AS c
SET state = c.state || jsonb_build_object(
    'earned', t.earned, 'redeemed', t.redeemed, 'reversed', t.reversed, 'expired', t.expired)
FROM (
    SELECT l.customer_id,
           coalesce(sum(l.points) FILTER (WHERE l.kind = 'credit'), 0) AS earned,
           coalesce(sum(l.points) FILTER (WHERE l.kind = 'redemption'), 0) AS redeemed,
           coalesce(sum(l.points) FILTER (WHERE l.kind = 'reversal'), 0) AS reversed,
           coalesce(sum(l.points) FILTER (WHERE l.kind = 'expiry'), 0) AS expired
    FROM {ledger} AS l
    JOIN {state} AS s ON s.customer_id = l.customer_id AND l.version <= s.version
    WHERE l.kind IN ('credit', 'redemption', 'reversal', 'expiry')
    GROUP BY l.customer_id
) AS t
WHERE t.customer_id = c.customer_id AND NOT c.state ? 'earned'
"""
NO_TOTALS = """
UPDATE {state}
SET state = state || '{{"earned": 0, "redeemed": 0, "reversed": 0, "expired": 0}}'::jsonb
WHERE NOT state ? 'earned'
"""

# Views over customers whose sums were bigint: `migrate` makes them again from projections/.
SUMMED_VIEWS = ("points_liability", "points_liability_total")


def upgrade() -> None:
    conn = op.get_bind().connection.driver_connection  # psycopg: SQL composed, not formatted
    assert conn is not None
    schemas = [name for (name,) in conn.execute("SELECT schema_name FROM public.generations")]
    for schema in schemas:
        for table, name, condition in CHECKS:
            _add_check(conn, schema, table, name, condition)
        state = sql.Identifier(schema, "customer_state")
        ledger = sql.Identifier(schema, "ledger")
        conn.execute(sql.SQL(TOTALS).format(state=state, ledger=ledger))
        conn.execute(sql.SQL(NO_TOTALS).format(state=state))
        for view in SUMMED_VIEWS:
            # CASCADE: the `live` view over it; `migrate` shows the new one there.
            conn.execute(
                sql.SQL("DROP VIEW IF EXISTS {} CASCADE").format(sql.Identifier(schema, view))
            )


def _add_check(conn: Connection, schema: str, table: str, name: str, condition: str) -> None:
    """Add the CHECK, and validate it unless rows from before the bounds fail it."""
    relation = sql.Identifier(schema, table).as_string(conn)
    found = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AND NOT EXISTS ("
        "    SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s)",
        (relation, relation, name),
    ).fetchone()
    if not found or not found[0]:
        return  # no such read model here yet, or made with its CHECK: created as in projections/
    target = sql.Identifier(schema, table)
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
            target,
            sql.Identifier(name),
            sql.SQL(condition),  # constants above, not input
        )
    )
    failing = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE NOT ({}))").format(
            target, sql.SQL(condition)
        )
    ).fetchone()
    if failing and not failing[0]:
        conn.execute(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(target, sql.Identifier(name))
        )


def downgrade() -> None:
    raise NotImplementedError("bounds have no downgrade: restore a backup instead")
