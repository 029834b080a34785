"""Independent figures for the analyst views, computed in Python from the raw ledger rows,
the engine's snapshots and the conformance case's expected read models."""

from __future__ import annotations

import json
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row

from loyalty_ledger.engine.state import CustomerState, from_snapshot
from loyalty_ledger.store.db import Connection
from support import expected

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Data:
    ledger: list[dict[str, Any]]
    customers: dict[str, dict[str, Any]]  # the case's expected read model, by customer_id
    program: dict[str, Any]
    as_of: datetime


def load(conn: Connection, case: Path) -> Data:
    with conn.cursor(row_factory=dict_row) as cur:
        ledger = cur.execute("SELECT * FROM ledger ORDER BY seq").fetchall()
    rows, _ = expected(case)
    program = tomllib.loads((case / "program.toml").read_text(encoding="utf-8"))
    as_of = max(e["occurred_at"] for e in ledger)
    return Data(ledger, {r["customer_id"]: r for r in rows}, program, as_of)


def money(value: Any) -> Decimal:
    return Decimal(str(value))


def round4(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def month(at: datetime | date) -> date:
    return date(at.year, at.month, 1)


def utc_month(at: datetime) -> date:
    return month(at.astimezone(UTC))


def orders(data: Data) -> dict[str, list[tuple[datetime, int, Decimal]]]:
    """Per customer: (placed at, seq, net value) of each order, by time."""
    placed: dict[tuple[str, str], list[Any]] = {}
    for e in data.ledger:
        key = (e["customer_id"], e["ref"])
        if e["kind"] == "order_placed":
            placed[key] = [e["occurred_at"], e["seq"], e["amount"]]
        elif e["kind"] == "refund_applied":
            placed[key][2] -= e["amount"]
    found: dict[str, list[tuple[datetime, int, Decimal]]] = defaultdict(list)
    for (customer, _), (at, seq, net) in placed.items():
        found[customer].append((at, seq, net))
    return {c: sorted(v) for c, v in found.items()}


def lots(conn: Connection) -> tuple[Counter[tuple[str, datetime | None]], dict[str, int]]:
    """The engine's own open lots (remaining by customer and expiry) and debts."""
    remaining: Counter[tuple[str, datetime | None]] = Counter()
    debts = {}
    for customer_id, snapshot in conn.execute("SELECT customer_id, state FROM customer_state"):
        state = from_snapshot(customer_id, snapshot)
        for lot in state.lots:
            remaining[(customer_id, lot.expires_at)] += lot.remaining
        if state.debt:
            debts[customer_id] = state.debt
    return remaining, debts


# ------------------------------------------------------------------ version 2


def accepted(conn: Connection, event_type: str) -> list[dict[str, Any]]:
    """The accepted input events of a type, as they came (the inbox keeps each one's JSON)."""
    found = conn.execute(
        "SELECT raw FROM inbox WHERE outcome = 'accepted' AND event_type = %s ORDER BY arrival",
        (event_type,),
    )
    return [json.loads(raw) for (raw,) in found]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def snapshots(conn: Connection) -> list[CustomerState]:
    """Every customer's state as the engine left it."""
    found = conn.execute("SELECT customer_id, state FROM customer_state ORDER BY customer_id")
    return [from_snapshot(customer_id, snapshot) for customer_id, snapshot in found]


@dataclass
class Period:
    """A membership as the customer's own ledger stream tells it: bought, renewed, ended."""

    customer_id: str
    plan: str
    started_at: datetime
    ends_at: datetime
    ended: bool = False


def memberships(data: Data) -> tuple[list[Period], list[tuple[str | None, datetime, Decimal]]]:
    """Replay each customer's entries in order: its membership periods, and every order as
    (the plan held when it was placed or None, placed at, total)."""
    periods: list[Period] = []
    held: dict[str, Period] = {}
    placed: list[tuple[str | None, datetime, Decimal]] = []
    for e in data.ledger:
        customer, kind = e["customer_id"], e["kind"]
        if kind == "membership_started":
            assert customer not in held, e
            held[customer] = Period(customer, e["ref"], e["occurred_at"], e["expires_at"])
            periods.append(held[customer])
        elif kind == "membership_renewed":
            assert held[customer].plan == e["ref"], e
            held[customer].ends_at = e["expires_at"]
        elif kind == "membership_ended":
            held.pop(customer).ended = True
        elif kind == "order_placed":
            period = held.get(customer)
            placed.append((period.plan if period else None, e["occurred_at"], e["amount"]))
    return periods, placed


def next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)
