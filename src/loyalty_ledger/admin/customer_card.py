"""A customer's card, as a till, a web shop or a support agent needs it: the read model, the
next tier and what is missing to it, the points expiring soon and the rewards affordable now.

Read from the live generation's read models and the customer's snapshot (for
the open lots); no PII (members are never read).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg import sql

from loyalty_ledger.admin.exports import CUSTOMER_FIELDS, json_value
from loyalty_ledger.errors import UserError
from loyalty_ledger.program import Program
from loyalty_ledger.store.db import Connection

EXPIRING_DAYS = 30  # "use them before they go": what a receipt prints


class UnknownCustomer(UserError):
    """No enrolled customer has this id; the message says what to check."""


def read_models(conn: Connection, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """customer_id -> the row of the `customers` read model, as JSON values."""
    if not customer_ids:
        return {}
    query = sql.SQL("SELECT {} FROM customers WHERE customer_id = ANY(%s)").format(
        sql.SQL(", ").join(map(sql.Identifier, CUSTOMER_FIELDS))
    )
    rows = conn.execute(query, (list(customer_ids),)).fetchall()
    return {
        row[0]: {name: json_value(v) for name, v in zip(CUSTOMER_FIELDS, row, strict=True)}
        for row in rows
    }


# The read model and the customer's open lots expiring by the horizon (from `point_lots`),
# in one statement: one snapshot, one round trip.
# Composed once, here: composing it per request cost a tenth of a read's CPU.
CARD = sql.SQL(
    sql.SQL(
        "SELECT {}, ARRAY(SELECT row(l.expires_at, l.remaining) FROM point_lots l "
        "WHERE l.customer_id = c.customer_id AND l.lot_seq > 0 AND l.expires_at <= %s "
        "ORDER BY l.expires_at, l.lot_seq) FROM customers c WHERE c.customer_id = %s"
    )
    .format(sql.SQL(", ").join(sql.Identifier("c", f) for f in CUSTOMER_FIELDS))
    .as_string()
)


def card_parameters(customer_id: str, as_of: datetime) -> tuple[datetime, str]:
    """CARD's parameters: points expiring count from `as_of` (a request's instant)."""
    return as_of + timedelta(days=EXPIRING_DAYS), customer_id


def card(conn: Connection, customer_id: str, program: Program, as_of: datetime) -> dict[str, Any]:
    """The card of `customer_id`; points expiring count from `as_of`."""
    row = conn.execute(CARD, card_parameters(customer_id, as_of)).fetchone()
    return card_of(row, customer_id, program, as_of)


def card_of(
    row: Sequence[Any] | None, customer_id: str, program: Program, as_of: datetime
) -> dict[str, Any]:
    """The card from CARD's row (None: no such customer), whoever ran the query."""
    if row is None:
        raise UnknownCustomer(
            f"no enrolled customer {customer_id!r}: check the id (ids are case-sensitive)"
        )
    found = {name: json_value(v) for name, v in zip(CUSTOMER_FIELDS, row, strict=False)}
    expiring = [(_instant(at), int(n)) for at, n in row[-1]]
    return {
        **found,
        "next_tier": next_tier(program, found["tier"], found["qualifying_spend"]),
        "expiring": {
            "days": EXPIRING_DAYS,
            "as_of": json_value(as_of),
            "points": sum(points for _, points in expiring),
            "lots": [{"expires_at": json_value(at), "points": n} for at, n in expiring],
        },
        "rewards_affordable": affordable(program, int(found["balance"])),
    }


def _instant(text: str) -> datetime:
    """A timestamptz inside a record, which reaches us as PostgreSQL's text."""
    return datetime.fromisoformat(text).astimezone(UTC)


def next_tier(program: Program, tier: str | None, spend: str | None) -> dict[str, Any] | None:
    """The level above `tier` and the qualifying spend still missing to it (None at the top,
    or without tiers)."""
    if program.tiers is None or tier is None:
        return None
    levels = program.tiers.levels
    names = [level.name for level in levels]
    at = names.index(tier) if tier in names else -1
    if at + 1 >= len(levels):
        return None
    above = levels[at + 1]
    missing = max(above.min_spend - Decimal(spend or 0), Decimal(0))
    return {"name": above.name, "min_spend": str(above.min_spend), "missing_spend": str(missing)}


def affordable(program: Program, balance: int) -> list[dict[str, Any]]:
    """The catalogue's rewards a redemption could take now, cheapest first."""
    floor = program.redemption.min_points if program.redemption else 0
    if balance < floor:
        return []
    fitting = sorted((r for r in program.rewards if r.cost <= balance), key=lambda r: r.cost)
    return [{"id": r.id, "cost": r.cost} for r in fitting]


def catalogue(program: Program) -> dict[str, Any]:
    """The rewards of the program in force, and the smallest balance a redemption needs."""
    return {
        "min_points": program.redemption.min_points if program.redemption else 0,
        "rewards": [{"id": r.id, "cost": r.cost} for r in program.rewards],
    }
