"""Generations, the ledger's hash chain, dead-letter resolutions and member erasures.

The tables of one program's ledger move into the schema of generation `main`;
the live schema's views point at it. Existing ledger rows get their chain
hashes here (the append-only trigger is lifted for that one backfill).

Revision ID: 0003
Revises: 0002
"""

from alembic import op
from psycopg import sql

from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.ledger.chain import GENESIS
from loyalty_ledger.ledger.chain import legacy_chain_hash as chain_hash
from loyalty_ledger.ledger.entries import COLUMNS
from loyalty_ledger.projectors import install
from loyalty_ledger.projectors.sql import projections
from loyalty_ledger.store.db import Connection

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = """
CREATE TABLE generations (
    name             text PRIMARY KEY,
    schema_name      text NOT NULL UNIQUE,
    program_hash     text REFERENCES programs (hash),
    status           text NOT NULL,
    parent           text REFERENCES generations (name),
    replayed_arrival bigint NOT NULL DEFAULT 0,
    until_at         timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    promoted_at      timestamptz,
    CONSTRAINT generations_status CHECK (status IN ('candidate', 'live', 'retired')),
    CONSTRAINT generations_name CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    -- a what-if limited by --until never goes live: it lacks later inputs
    CONSTRAINT generations_until CHECK (status <> 'live' OR until_at IS NULL)
);
CREATE UNIQUE INDEX generations_one_live ON generations ((true)) WHERE status = 'live';
CREATE TABLE erasures (
    customer_id text PRIMARY KEY,
    erased_at   timestamptz NOT NULL DEFAULT now(),
    inputs      integer NOT NULL,
    dead_letters integer NOT NULL
);
ALTER TABLE dead_letters
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolution  text,
    ADD CONSTRAINT dead_letters_status CHECK (status IN ('open', 'redriven', 'discarded')),
    ADD CONSTRAINT dead_letters_resolved CHECK ((status = 'open') = (resolved_at IS NULL));
"""


def upgrade() -> None:
    conn = op.get_bind().connection.driver_connection  # psycopg: SQL composed, not formatted
    assert conn is not None
    conn.execute(TABLES)
    schema = generations.schema_of(generations.FIRST)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for table in generations.GENERATION_TABLES:
        conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier("public", table), sql.Identifier(schema)
            )
        )
    for projection in projections():
        conn.execute(
            sql.SQL("ALTER {} IF EXISTS {} SET SCHEMA {}").format(
                sql.SQL("TABLE" if projection.table else "VIEW"),
                sql.Identifier("public", projection.name),
                sql.Identifier(schema),
            )
        )
    conn.execute(
        "INSERT INTO generations (name, schema_name, program_hash, status, promoted_at) "
        "SELECT %s, %s, (SELECT value FROM settings WHERE key = 'program_hash'), 'live', now()",
        (generations.FIRST, schema),
    )
    conn.execute("DELETE FROM settings WHERE key = 'program_hash'")
    _chain_existing(conn, schema)
    install.ensure_read_models(conn, schema)
    install.expose(conn, schema)


def _chain_existing(conn: Connection, schema: str) -> None:
    """Add the hash column and fill it for the entries written before it existed."""
    ledger = sql.Identifier(schema, "ledger")
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN hash bytea").format(ledger))
    conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER ledger_no_update_delete").format(ledger))
    prev = GENESIS
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    rows = conn.execute(
        sql.SQL("SELECT seq, {} FROM {} ORDER BY seq").format(columns, ledger)
    ).fetchall()
    with conn.cursor() as cur:
        for seq, *values in rows:
            prev = chain_hash(prev, tuple(values))
            cur.execute(
                sql.SQL("UPDATE {} SET hash = %s WHERE seq = %s").format(ledger), (prev, seq)
            )
    conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER ledger_no_update_delete").format(ledger))
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN hash SET NOT NULL").format(ledger))


def downgrade() -> None:
    raise NotImplementedError("generations have no downgrade: restore a backup instead")
