"""What the pipeline reads per batch: known event ids, snapshots, due customers, ticks, offsets."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, NamedTuple

from loyalty_ledger.store.batch import Position
from loyalty_ledger.store.db import Connection

# A snapshot row: (customer_id, state as parsed JSON, next_due_at).
SnapshotRow = tuple[str, dict[str, Any], datetime | None]


class Known(NamedTuple):
    """An event id already used: the hash of its body, and the input that used it."""

    body_hash: bytes
    source: str
    position: int


def known_event_ids(conn: Connection, event_ids: Collection[str]) -> dict[str, Known]:
    """event_id -> what first used it, for the ids already in the inbox."""
    if not event_ids:
        return {}
    rows = conn.execute(
        "SELECT event_id, body_hash, source, position FROM inbox WHERE event_id = ANY(%s)",
        (list(event_ids),),
    ).fetchall()
    return {event_id: Known(bytes(h), source, position) for event_id, h, source, position in rows}


def erased_since(conn: Connection, after: datetime) -> tuple[list[str], datetime]:
    """Members erased after `after`, and the newest erasure's instant (or `after`)."""
    rows = conn.execute(
        "SELECT customer_id, erased_at FROM public.erasures WHERE erased_at > %s", (after,)
    ).fetchall()
    return [customer_id for customer_id, _ in rows], max((at for _, at in rows), default=after)


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
