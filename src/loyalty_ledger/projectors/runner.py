"""Run the projections over the ledger in seq order, a step and its checkpoint per transaction.

Writers take seqs only while holding store.batch's append lock, until they
commit, so seqs commit in order: every seq up to the max(seq) a projector
sees is committed (guarantee 5), however many consumers write.
"""

from __future__ import annotations

from collections.abc import Callable

from psycopg import sql

from loyalty_ledger.projectors.sql import Projection, projections
from loyalty_ledger.store.db import Connection

STEP_ENTRIES = 500_000  # one transaction per step bounds memory and lock time on rebuild

Progress = Callable[[str, int, int], None]  # projection, seq reached, seq to reach


def tables(names: tuple[str, ...] = ()) -> list[Projection]:
    chosen = [p for p in projections() if p.table and (not names or p.name in names)]
    unknown = set(names) - {p.name for p in chosen}
    if unknown:
        known = ", ".join(p.name for p in projections() if p.table)
        raise ValueError(f"unknown projection {sorted(unknown)[0]!r}; known: {known}")
    return chosen


def catch_up(
    conn: Connection, names: tuple[str, ...] = (), progress: Progress | None = None
) -> int:
    """Apply every committed entry past each checkpoint; returns the seq reached."""
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()
    upto_max = int(row[0]) if row else 0
    for projection in tables(names):
        assert projection.apply is not None
        statement = sql.SQL(projection.apply)  # a trusted file, not input
        while True:
            with conn.transaction():
                after = _checkpoint(conn, projection.name)
                if after >= upto_max:
                    break
                upto = min(after + STEP_ENTRIES, upto_max)
                conn.execute(statement, {"after": after, "upto": upto})
                conn.execute(
                    "UPDATE projection_checkpoints SET seq = %s WHERE name = %s",
                    (upto, projection.name),
                )
            if progress:
                progress(projection.name, upto, upto_max)
    return upto_max


def rebuild(conn: Connection, names: tuple[str, ...] = (), progress: Progress | None = None) -> int:
    """Empty the projections and replay them from seq 0; the result is identical."""
    chosen = tables(names)
    with conn.transaction():
        for projection in chosen:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(projection.name)))
            conn.execute(
                "UPDATE projection_checkpoints SET seq = 0 WHERE name = %s", (projection.name,)
            )
    return catch_up(conn, tuple(p.name for p in chosen), progress)


def _checkpoint(conn: Connection, name: str) -> int:
    # FOR UPDATE: two catch-ups of the same projection take turns instead of doubling rows.
    row = conn.execute(
        "SELECT seq FROM projection_checkpoints WHERE name = %s FOR UPDATE", (name,)
    ).fetchone()
    assert row is not None, f"projection {name} has no checkpoint row"
    return int(row[0])
