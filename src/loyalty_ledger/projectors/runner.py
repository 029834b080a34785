"""Run the projections over the ledger in seq order, a step and its checkpoint per transaction.

Writers take seqs only while holding store.batch's append lock, until they
commit, so seqs commit in order: every seq up to the max(seq) a projector
sees is committed (guarantee 5), however many consumers write.
"""

from __future__ import annotations

from collections.abc import Callable

from psycopg import sql

from loyalty_ledger.errors import UserError
from loyalty_ledger.projectors.sql import Projection, projections
from loyalty_ledger.store.db import Connection

STEP_ENTRIES = 500_000  # one transaction per step bounds memory and lock time on rebuild

Progress = Callable[[str, int, int], None]  # projection, seq reached, seq to reach


def tables(names: tuple[str, ...] = ()) -> list[Projection]:
    chosen = [p for p in projections() if p.table and (not names or p.name in names)]
    unknown = set(names) - {p.name for p in chosen}
    if unknown:
        known = ", ".join(p.name for p in projections() if p.table)
        raise UserError(f"unknown projection {sorted(unknown)[0]!r}; known: {known}")
    return chosen


def catch_up(
    conn: Connection, names: tuple[str, ...] = (), progress: Progress | None = None
) -> int:
    """Apply every committed entry past each checkpoint; returns the seq reached.

    Every projection that is behind moves in the same transaction, its
    statements pipelined: after a small batch the round trips, not the work,
    would cost most.
    """
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()
    upto_max = int(row[0]) if row else 0
    chosen = {p.name: p for p in tables(names)}
    while True:
        with conn.transaction():
            behind = {
                name: after for name, after in _checkpoints(conn, list(chosen)) if after < upto_max
            }
            if not behind:
                break
            reached = {name: min(after + STEP_ENTRIES, upto_max) for name, after in behind.items()}
            with conn.pipeline():
                for name, after in behind.items():
                    apply = chosen[name].apply
                    assert apply is not None
                    conn.execute(sql.SQL(apply), {"after": after, "upto": reached[name]})
                conn.execute(
                    "UPDATE projection_checkpoints c SET seq = r.seq "
                    "FROM unnest(%s::text[], %s::bigint[]) AS r (name, seq) WHERE c.name = r.name",
                    (list(reached), list(reached.values())),
                )
        if progress:
            for name, upto in reached.items():
                progress(name, upto, upto_max)
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


def _checkpoints(conn: Connection, names: list[str]) -> list[tuple[str, int]]:
    # FOR UPDATE, in one order: two catch-ups take turns instead of doubling rows.
    rows = conn.execute(
        "SELECT name, seq FROM projection_checkpoints WHERE name = ANY(%s) ORDER BY name "
        "FOR UPDATE",
        (names,),
    ).fetchall()
    assert len(rows) == len(names), f"projections without a checkpoint row: {names}"
    return [(str(name), int(seq)) for name, seq in rows]
