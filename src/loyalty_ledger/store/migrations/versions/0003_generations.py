"""Generations, the ledger's hash chain, dead-letter resolutions and member erasures.

The tables of one program's ledger move into the schema of generation `main`;
the live schema's views point at it. Existing ledger rows get their chain
hashes here (the append-only trigger is lifted for that one backfill).

Frozen history, importing nothing of the package: the generation tables, the read
models (0001's frozen copies of projections/, sql/0001/), the ledger's columns and the
legacy sha256 chain are spelled out here as they were when this revision was written.

Revision ID: 0003
Revises: 0002
"""

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
from alembic import op
from psycopg import Connection, sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FIRST = "main"  # the generation the existing ledger becomes
SCHEMA = "gen_main"  # its schema: gen_<name>
LIVE_SCHEMA = "live"  # views over the live generation's read models
GENERATION_TABLES = (
    "inbox", "ledger", "customer_state", "ticks", "outbox", "relay_checkpoints",
    "projection_checkpoints",
)  # fmt: skip

# The read models as 0001 created them, in its order: (name, is a table).
FROZEN_SQL = Path(__file__).resolve().parents[1] / "sql" / "0001"
PROJECTIONS = (
    ("balance", True), ("tier", True), ("customer_value", True), ("customers", False),
    ("ledger_clock", True), ("customer_months", True), ("customer_spend", True),
    ("point_lots", True), ("tier_moves", True), ("referral_activity", True),
    ("tier_levels", False), ("clv_model", False), ("customer_clv", False), ("segments", False),
    ("tier_progress", False), ("tier_distribution", False), ("points_liability", False),
    ("points_liability_total", False), ("retention", False), ("repeat_purchase", False),
    ("referrals", False),
)  # fmt: skip

# The ledger's columns in chain order, and the legacy chain's encoding.
COLUMNS = (
    "customer_id", "version", "kind", "occurred_at", "event_id", "points", "amount", "cause",
    "ref", "reward", "tier_from", "tier_to", "reason", "expires_at",
)  # fmt: skip
GENESIS = bytes(32)  # the predecessor of a ledger's first entry
_NONE = "\x00"  # absent
_SEP = "\x1f"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

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
    schema = SCHEMA
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for table in GENERATION_TABLES:
        conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                sql.Identifier("public", table), sql.Identifier(schema)
            )
        )
    for name, is_table in PROJECTIONS:
        conn.execute(
            sql.SQL("ALTER {} IF EXISTS {} SET SCHEMA {}").format(
                sql.SQL("TABLE" if is_table else "VIEW"),
                sql.Identifier("public", name),
                sql.Identifier(schema),
            )
        )
    conn.execute(
        "INSERT INTO generations (name, schema_name, program_hash, status, promoted_at) "
        "SELECT %s, %s, (SELECT value FROM settings WHERE key = 'program_hash'), 'live', now()",
        (FIRST, schema),
    )
    conn.execute("DELETE FROM settings WHERE key = 'program_hash'")
    _chain_existing(conn, schema)
    _ensure_read_models(conn, schema)
    _expose(conn, schema)


def _canonical(value: object) -> str:
    if value is None:
        return _NONE
    if isinstance(value, datetime):
        return str((value - _EPOCH) // _MICROSECOND)  # the instant, whatever the zone
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # 12.50, 12.5 and 1.25E+1 are one amount
    return str(value)


def chain_hash(prev: bytes, values: tuple[object, ...]) -> bytes:
    """The legacy chain: sha256(predecessor's hash || the entry's COLUMNS joined by \\x1f)."""
    body = _SEP.join(_canonical(v) for v in values).encode()
    return hashlib.sha256(prev + body).digest()


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


def _ensure_read_models(conn: Connection, schema: str) -> None:
    """Create the read models `schema` lacks (a database from before some of them), each
    table with its checkpoint at 0, so the next catch-up fills it from the whole ledger."""
    previous = conn.execute("SELECT current_setting('search_path')").fetchone()
    assert previous is not None
    conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
    try:
        for name, table in PROJECTIONS:
            exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL",
                (sql.Identifier(schema, name).as_string(conn),),
            ).fetchone()
            if exists and exists[0]:
                continue
            create = (FROZEN_SQL / f"{name}.sql").read_text(encoding="utf-8").strip()
            conn.execute(sql.SQL(create))  # a frozen file, not input
            if table:
                conn.execute(
                    "INSERT INTO projection_checkpoints (name, seq) VALUES (%s, 0) "
                    "ON CONFLICT (name) DO NOTHING",
                    (name,),
                )
    finally:
        conn.execute("SELECT set_config('search_path', %s, false)", (str(previous[0]),))


def _expose(conn: Connection, schema: str) -> None:
    """Point the `live` views at `schema`: every read model, and the ledger (read-only)."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(LIVE_SCHEMA)))
    for name in [name for name, _ in PROJECTIONS] + ["ledger"]:
        view = sql.Identifier(LIVE_SCHEMA, name)
        select = sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name))
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(view, select))
        except psycopg.errors.InvalidTableDefinition:  # its columns changed: a new view
            conn.execute(sql.SQL("DROP VIEW {}").format(view))
            conn.execute(sql.SQL("CREATE VIEW {} AS {}").format(view, select))


def downgrade() -> None:
    raise NotImplementedError("generations have no downgrade: restore a backup instead")
