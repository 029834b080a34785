"""Dead letters: inputs that could not be read, with where they came from and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from psycopg.rows import class_row

from loyalty_ledger.store.db import Connection

RAW_PREFIX_CHARS = 60


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: int
    source: str
    position: int
    reason: str
    raw: str
    status: str
    received_at: datetime


def listing(conn: Connection, limit: int) -> list[DeadLetterRow]:
    with conn.cursor(row_factory=class_row(DeadLetterRow)) as cur:
        cur.execute(
            "SELECT id, source, position, reason, left(raw, %s) AS raw, status, received_at "
            "FROM dead_letters ORDER BY id LIMIT %s",
            (RAW_PREFIX_CHARS + 1, limit),
        )
        return cur.fetchall()


def print_list(conn: Connection, limit: int, out: TextIO) -> None:
    rows = listing(conn, limit)
    if not rows:
        out.write("no dead letters\n")
        return
    for row in rows:
        raw = row.raw if len(row.raw) <= RAW_PREFIX_CHARS else row.raw[:RAW_PREFIX_CHARS] + "…"
        out.write(f"{row.id}\t{row.source}:{row.position}\t{row.status}\t{row.reason}\t{raw}\n")
