"""Read models as JSON: one object per enrolled customer, and the summary of every input's fate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg import sql

from loyalty_ledger.events import EVENT_TYPES
from loyalty_ledger.store.db import Connection

CUSTOMER_FIELDS = (
    "customer_id", "balance", "earned", "redeemed", "reversed", "expired", "tier",
    "qualifying_spend", "orders", "gross_revenue", "refunded", "net_revenue", "aov",
    "first_purchase_at", "last_purchase_at", "referrals_qualified", "rewards",
    # version 2 (PROGRAM.md "Read models, version 2"): 0, null and "0" when unused
    "pending", "adjusted", "transferred_in", "transferred_out", "membership",
    "membership_ends_at", "membership_fees",
)  # fmt: skip


def json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money stays a decimal string
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def customers(conn: Connection) -> Iterator[dict[str, Any]]:
    """Rows of the `customers` view, sorted by customer_id (byte order, as the ids are)."""
    query = sql.SQL('SELECT {} FROM customers ORDER BY customer_id COLLATE "C"').format(
        sql.SQL(", ").join(map(sql.Identifier, CUSTOMER_FIELDS))
    )
    # A named cursor streams: the export never holds every customer in memory.
    with conn.transaction(), conn.cursor(name="export_customers") as cur:
        cur.execute(query)
        for row in cur:
            yield {
                name: json_value(value) for name, value in zip(CUSTOMER_FIELDS, row, strict=True)
            }


def summary(conn: Connection) -> dict[str, Any]:
    """Every input's fate. A redriven dead letter's input is counted where it went (accepted,
    rejected or duplicates), so `dead_lettered` counts the open and the discarded ones."""
    accepted: dict[str, int] = {}
    rejected: dict[str, int] = {}
    for event_type, reason, n in conn.execute(
        "SELECT event_type, reason, count(*) FROM inbox WHERE event_type = ANY(%s) "
        "GROUP BY event_type, reason ORDER BY event_type, reason",
        (list(EVENT_TYPES),),  # internal commands are not inputs of their own
    ):
        if reason is None:
            accepted[event_type] = n
        else:
            rejected[reason] = rejected.get(reason, 0) + n
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'open'), "
        "count(*) FILTER (WHERE status = 'discarded'), "
        "count(*) FILTER (WHERE status = 'redriven'), "
        "(SELECT count(*) FROM duplicates), (SELECT count(*) FROM duplicates WHERE NOT same_body) "
        "FROM dead_letters"
    ).fetchone()
    assert row is not None
    dead_open, discarded, redriven, duplicates, other_body = row
    return {
        "accepted": accepted,
        "rejected": dict(sorted(rejected.items())),
        "dead_lettered": dead_open + discarded,
        "dead_letters_open": dead_open,
        "dead_letters_discarded": discarded,
        "dead_letters_redriven": redriven,
        "duplicates": duplicates,
        "duplicates_with_other_body": other_body,
    }
