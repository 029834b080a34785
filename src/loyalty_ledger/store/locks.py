"""Every advisory lock of the package: its key, what it guards, and the order they are taken.

PostgreSQL advisory locks are keyed by numbers the whole database shares, so they are kept
here, together, where two keys cannot collide unseen. The order, outermost first (a holder
of one may take those below it, never those above, so no two commands deadlock):

1. `migrating` (session): commands starting together migrate one at a time.
2. `one_file_writer` (session): one file ingest, redrive, erasure or group of `loyalty serve`
   (embedded mode) per database at a time (their pipelines cache customers' states in
   memory). Each taking of it bumps the writer epoch, so a server that takes it group by
   group can tell whether another writer ran in between (and drop what it cached).
3. `hold_appends` (session, per generation): a promotion stops every live writer.
4. `APPEND` (transaction, per generation): held by a batch from its first identity-numbered
   row to commit, so ledger seqs, dead-letter and outbox ids commit in order (readers that
   follow them by position never pass a row that commits later, guarantee 5) and the hash
   chain runs in seq order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from loyalty_ledger import log
from loyalty_ledger.store.db import Connection

MIGRATE_KEY = 0x6C6F79616C740002
WRITER_KEY = 0x6C6F79616C7479  # "loyalty"
APPEND_SPACE = 0x6C656467  # "ledg": the append locks' key space, (this, hashtext(schema))

APPEND = sql.SQL("SELECT pg_advisory_xact_lock({}, hashtext(current_schema()))").format(
    sql.Literal(APPEND_SPACE)
)


def migrating(conn: Connection) -> None:
    """Until `conn` closes: the migrations are this session's to run."""
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_KEY,))


@contextmanager
def one_file_writer(conn: Connection) -> Iterator[int]:
    """The pipeline caches state in memory: two writers at once would overwrite each other.
    Yields the writer epoch this taking of the lock made."""
    epoch = take_writer(conn)
    try:
        yield epoch
    finally:
        release_writer(conn)


def take_writer(conn: Connection) -> int:
    """Take the writer lock (waiting for its holder), and bump and return the writer epoch."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_KEY,)).fetchone()
    if not (row and row[0]):
        log.get("ingest").info("waiting for another writer to finish")
        conn.execute("SELECT pg_advisory_lock(%s)", (WRITER_KEY,))
    bumped = conn.execute(
        "INSERT INTO public.settings (key, value) VALUES ('writer_epoch', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = (settings.value::bigint + 1)::text "
        "RETURNING value::bigint"
    ).fetchone()
    assert bumped is not None
    return int(bumped[0])


def release_writer(conn: Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (WRITER_KEY,))


def hold_appends(conn: Connection, schema: str) -> None:
    """Until `conn` closes: no batch of generation `schema` can commit (a promotion)."""
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (APPEND_SPACE, schema))
