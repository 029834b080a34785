"""What the pipeline reads per batch: known event ids, snapshots, due customers, ticks, offsets."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from loyalty_ledger.store.batch import Position
from loyalty_ledger.store.db import Connection

# A snapshot row: (customer_id, state as parsed JSON, next_due_at).
SnapshotRow = tuple[str, dict[str, Any], datetime | None]


def known_event_ids(conn: Connection, event_ids: Collection[str]) -> dict[str, bytes]:
    """event_id -> body hash, for the ids already in the inbox."""
    if not event_ids:
        return {}
    rows = conn.execute(
        "SELECT event_id, body_hash FROM inbox WHERE event_id = ANY(%s)", (list(event_ids),)
    ).fetchall()
    return {event_id: bytes(body_hash) for event_id, body_hash in rows}


def snapshots(conn: Connection, customer_ids: Collection[str]) -> list[SnapshotRow]:
    if not customer_ids:
        return []
    return conn.execute(
        "SELECT customer_id, state, next_due_at FROM customer_state WHERE customer_id = ANY(%s)",
        (list(customer_ids),),
    ).fetchall()


def due_customers(conn: Connection, at: datetime) -> list[str]:
    """Customers whose stored next due instant is at or before `at` (an index range scan)."""
    rows = conn.execute(
        "SELECT customer_id FROM customer_state WHERE next_due_at <= %s", (at,)
    ).fetchall()
    return [customer_id for (customer_id,) in rows]


def ticks(conn: Connection, stream: str) -> list[datetime]:
    rows = conn.execute("SELECT at FROM ticks WHERE stream = %s ORDER BY n", (stream,)).fetchall()
    return [at for (at,) in rows]


def position(conn: Connection, source: str) -> Position | None:
    found = conn.execute(
        "SELECT position, byte_offset, fingerprint FROM source_positions WHERE source = %s",
        (source,),
    ).fetchone()
    if found is None:
        return None
    return Position(source, found[0], found[1], found[2])
