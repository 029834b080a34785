"""A customer's card, as a till, a web shop or a support agent needs it: the read model, the
next tier and what is missing to it, the points expiring soon, the rewards affordable now,
the pending points' next maturity and the price of each membership plan for the customer.

Read from the live generation's read models (the open lots from `point_lots`) and, for
the pending amounts, the customer's ledger entries; no PII (members are never read).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg import sql

from loyalty_ledger.admin.exports import CUSTOMER_FIELDS, json_value
from loyalty_ledger.engine import compile_rules
from loyalty_ledger.engine.rules import Plan
from loyalty_ledger.errors import UserError
from loyalty_ledger.program import Program
from loyalty_ledger.store.db import Connection

EXPIRING_DAYS = 30  # "use them before they go": what a receipt prints


class UnknownCustomer(UserError):
    """No enrolled customer has this id; the message says what to check."""


# The `customers` read model of some customers: parameter, a list of customer ids.
READ_MODELS = sql.SQL("SELECT {} FROM customers WHERE customer_id = ANY(%s)").format(
    sql.SQL(", ").join(map(sql.Identifier, CUSTOMER_FIELDS))
)


def read_models(conn: Connection, customer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """customer_id -> the row of the `customers` read model, as JSON values."""
    if not customer_ids:
        return {}
    return read_models_of(conn.execute(READ_MODELS, (list(customer_ids),)).fetchall())


def read_models_of(rows: Sequence[Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """READ_MODELS' rows as customer_id -> JSON values, whoever ran the query."""
    return {
        row[0]: {name: json_value(v) for name, v in zip(CUSTOMER_FIELDS, row, strict=True)}
        for row in rows
    }


# The read model, the customer's next pending maturity (from the ledger: an order's pending
# amount is what pending_created made less what matured or a return cancelled; the same
# instant may hold several orders' amounts) and its open lots expiring by the horizon (from
# `point_lots`), in one statement: one snapshot, one round trip. The ledger is read only
# for a customer with pending points.
# Composed once, here: composing it per request cost a tenth of a read's CPU.
CARD = sql.SQL(
    sql.SQL(
        "SELECT {}, CASE WHEN c.pending > 0 THEN (SELECT row(p.matures_at, sum(p.left)) "
        "FROM (SELECT max(l.expires_at) FILTER (WHERE l.kind = 'pending_created') AS "
        "matures_at, sum(CASE l.kind WHEN 'pending_created' THEN l.points ELSE -l.points END)"
        " AS left FROM ledger l WHERE l.customer_id = c.customer_id AND l.kind IN "
        "('pending_created', 'pending_matured', 'pending_cancelled') GROUP BY l.ref) p "
        "WHERE p.left > 0 GROUP BY p.matures_at ORDER BY p.matures_at LIMIT 1) END, "
        "ARRAY(SELECT row(l.expires_at, l.remaining) FROM point_lots l "
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
    fields = len(CUSTOMER_FIELDS)
    found = {name: json_value(v) for name, v in zip(CUSTOMER_FIELDS, row[:fields], strict=True)}
    maturing, lots = row[fields], row[fields + 1]
    expiring = [(_instant(at), int(n)) for at, n in lots]
    balance = int(found["balance"])
    return {
        **found,
        "next_tier": next_tier(program, found["tier"], found["qualifying_spend"]),
        "expiring": {
            "days": EXPIRING_DAYS,
            "as_of": json_value(as_of),
            "points": sum(points for _, points in expiring),
            "lots": [{"expires_at": json_value(at), "points": n} for at, n in expiring],
        },
        "rewards_affordable": affordable(program, balance),
        "next_maturity": None if maturing is None else {
            "matures_at": json_value(_instant(maturing[0])), "points": int(maturing[1]),
        },
        "membership_prices": membership_prices(program, balance),
    }  # fmt: skip


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


def membership_prices(program: Program, balance: int) -> list[dict[str, Any]]:
    """Each membership plan of the program and what a customer with `balance` pays for it now:
    the engine's price (the `member_fee` from its minimum balance on, else the `fee`), so a
    till that charges it is not answered `wrong_fee` (unless the balance moves first)."""
    return [
        {"id": plan.id, "days": plan.length.days, "price": str(plan.price_for(balance)),
         "fee": str(plan.fee)}
        for plan in _plans(program)
    ]  # fmt: skip


_compiled: tuple[Program, tuple[Plan, ...]] | None = None


def _plans(program: Program) -> tuple[Plan, ...]:
    """The program's plans as the engine compiles them, once per program in force (a Program
    is not hashable: its tables are dicts)."""
    global _compiled
    if not program.memberships:
        return ()
    if _compiled is None or _compiled[0] is not program:
        _compiled = (program, tuple((compile_rules(program).plans or {}).values()))
    return _compiled[1]


def catalogue(program: Program) -> dict[str, Any]:
    """The rewards of the program in force, and the smallest balance a redemption needs."""
    return {
        "min_points": program.redemption.min_points if program.redemption else 0,
        "rewards": [{"id": r.id, "cost": r.cost} for r in program.rewards],
    }
