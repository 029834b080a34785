"""Independent figures for the analyst views, computed in Python from the raw ledger rows,
the engine's snapshots and the conformance case's expected read models."""

from __future__ import annotations

import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row

from loyalty_ledger.engine.state import from_snapshot
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
