"""`loyalty statement`: a customer's ledger entries with their causes, lots, debt and expiries.

Read from one generation (the live one by default); members are never read,
so a statement holds no PII.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import class_row

from loyalty_ledger.engine.state import from_snapshot
from loyalty_ledger.errors import UserError
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.ledger.entries import BALANCE_SIGN, Kind
from loyalty_ledger.store.db import Connection


class StatementError(UserError):
    """No such customer (or generation); the message says what to check."""


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int
    version: int
    occurred_at: datetime
    kind: str
    points: int  # a magnitude, as stored
    cause: str | None
    event_id: str
    event_type: str | None  # None: the input is not in this generation's inbox
    reason: str | None
    ref: str | None
    reward: str | None
    tier_from: str | None
    tier_to: str | None
    amount: Decimal | None
    expires_at: datetime | None
    program_hash: str | None = None  # the program version that decided its input


@dataclass(frozen=True, slots=True)
class Entry:
    """A ledger entry as the statement shows it: points signed, balance after it."""

    row: _Row
    points: int
    balance: int


@dataclass(frozen=True, slots=True)
class OpenLot:
    remaining: int
    expires_at: datetime | None  # None: never
    n: int  # creation order


@dataclass(frozen=True, slots=True)
class Expiry:
    """Points that expire together: the open lots sharing one expiry instant."""

    expires_at: datetime
    points: int


@dataclass(frozen=True, slots=True)
class Statement:
    customer_id: str
    generation: str
    entries: tuple[Entry, ...]
    lots: tuple[OpenLot, ...]
    debt: int
    tier: str | None
    expiries: tuple[Expiry, ...]  # soonest first

    @property
    def balance(self) -> int:
        return self.entries[-1].balance if self.entries else 0

    @property
    def expiring_total(self) -> int:
        return sum(e.points for e in self.expiries)


_ENTRIES = (
    "SELECT l.seq, l.version, l.occurred_at, l.kind, l.points, l.cause, l.event_id, "
    "i.event_type, l.reason, l.ref, l.reward, l.tier_from, l.tier_to, l.amount, l.expires_at, "
    "i.program_hash FROM ledger l LEFT JOIN inbox i ON i.event_id = l.event_id "
    "WHERE l.customer_id = %s ORDER BY l.seq"
)


def statement(conn: Connection, customer_id: str, generation: str | None = None) -> Statement:
    """The statement of `customer_id` in `generation` (None: the live one)."""
    try:
        chosen = generations.get(conn, generation) if generation else generations.live(conn)
    except generations.GenerationError as e:
        raise StatementError(str(e)) from None
    if generation:
        generations.use(conn, chosen)
    with conn.transaction():  # one snapshot: entries and state agree
        with conn.cursor(row_factory=class_row(_Row)) as cur:
            rows = cur.execute(_ENTRIES, (customer_id,)).fetchall()
        found = conn.execute(
            "SELECT state FROM customer_state WHERE customer_id = %s", (customer_id,)
        ).fetchone()
    if not rows and found is None:
        raise StatementError(
            f"no customer {customer_id!r} in generation {chosen.name}: check the id "
            "(ids are case-sensitive)"
        )
    state = from_snapshot(customer_id, found[0]) if found else None
    held = state.lots if state else []
    lots = tuple(OpenLot(lot.remaining, lot.expires_at, lot.n) for lot in held)
    return Statement(
        customer_id, chosen.name, _running(rows), lots, state.debt if state else 0,
        state.tier if state else None, expiries(lots),
    )  # fmt: skip


def _running(rows: Sequence[_Row]) -> tuple[Entry, ...]:
    balance = 0
    entries = []
    for row in rows:
        signed = BALANCE_SIGN.get(Kind(row.kind), 0) * row.points
        balance += signed
        entries.append(Entry(row, signed, balance))
    return tuple(entries)


def expiries(lots: Sequence[OpenLot]) -> tuple[Expiry, ...]:
    """Open points by expiry instant, soonest first; lots that never expire are left out."""
    by_instant: dict[datetime, int] = {}
    for lot in lots:
        if lot.expires_at is not None:
            by_instant[lot.expires_at] = by_instant.get(lot.expires_at, 0) + lot.remaining
    return tuple(Expiry(at, points) for at, points in sorted(by_instant.items()))


# ------------------------------------------------------------------ JSON


def _instant(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def to_json(done: Statement) -> dict[str, Any]:
    """One JSON object: money as decimal strings, instants ISO 8601 in UTC."""
    return {
        "customer_id": done.customer_id,
        "generation": done.generation,
        "balance": done.balance,
        "debt": done.debt,
        "tier": done.tier,
        "entries": [entry_json(e) for e in done.entries],
        "lots": [
            {"remaining": lot.remaining, "expires_at": _instant(lot.expires_at), "n": lot.n}
            for lot in done.lots
        ],
        "upcoming_expiries": {
            "expiries": [
                {"expires_at": _instant(e.expires_at), "points": e.points} for e in done.expiries
            ],
            "total": done.expiring_total,
        },
    }


def entry_json(entry: Entry) -> dict[str, Any]:
    row = entry.row
    return {
        "seq": row.seq, "version": row.version, "occurred_at": _instant(row.occurred_at),
        "kind": row.kind, "points": entry.points, "balance": entry.balance, "cause": row.cause,
        "event_id": row.event_id, "event_type": row.event_type, "reason": row.reason,
        "ref": row.ref, "reward": row.reward, "tier_from": row.tier_from, "tier_to": row.tier_to,
        "amount": str(row.amount) if row.amount is not None else None,
        "expires_at": _instant(row.expires_at), "program_hash": row.program_hash,
    }  # fmt: skip


# ------------------------------------------------------------------ pages (the HTTP API)


@dataclass(frozen=True, slots=True)
class Page:
    """Entries after a cursor (a seq), oldest first, with the balance after each; `next`
    is the cursor of the page after it, None at the end."""

    entries: tuple[Entry, ...]
    next: int | None


def page(
    conn: Connection,
    customer_id: str,
    after: int = 0,
    limit: int = 50,
    *,
    kinds: Sequence[str] = (),
    causes: Sequence[str] = (),
) -> Page:
    """Up to `limit` entries of `customer_id` past seq `after`, only of `kinds` and `causes`
    when given. The balance after each is the ledger's, whatever the filter."""
    params = page_parameters(customer_id, after, limit, kinds=kinds, causes=causes)
    return page_of(conn.execute(PAGE, params).fetchall(), limit)


def page_parameters(
    customer_id: str, after: int, limit: int, *, kinds: Sequence[str], causes: Sequence[str]
) -> dict[str, Any]:
    """PAGE's parameters (one row more than `limit`: whether there is a next page)."""
    signs = {kind.value: sign for kind, sign in BALANCE_SIGN.items()}
    return {
        "customer": customer_id, "after": after, "limit": limit + 1,
        "kinds": list(kinds), "causes": list(causes),
        "sign_kinds": list(signs), "signs": list(signs.values()),
    }  # fmt: skip


def page_of(rows: Sequence[Sequence[Any]], limit: int) -> Page:
    """The page from PAGE's rows, whoever ran the query."""
    entries = tuple(Entry(_Row(*r[:-2]), int(r[-2]), int(r[-1])) for r in rows[:limit])
    return Page(entries, entries[-1].row.seq if len(rows) > limit else None)


# The running balance is over every entry of the customer; the filters apply after it.
PAGE = """
SELECT * FROM (
    SELECT l.seq, l.version, l.occurred_at, l.kind, l.points, l.cause, l.event_id,
           i.event_type, l.reason, l.ref, l.reward, l.tier_from, l.tier_to, l.amount,
           l.expires_at, i.program_hash, l.points * coalesce(s.sign, 0) AS signed,
           sum(l.points * coalesce(s.sign, 0)) OVER (ORDER BY l.seq) AS balance
    FROM ledger l
    LEFT JOIN inbox i ON i.event_id = l.event_id
    LEFT JOIN unnest(%(sign_kinds)s::text[], %(signs)s::int[]) AS s (kind, sign)
           ON s.kind = l.kind
    WHERE l.customer_id = %(customer)s
) e
WHERE seq > %(after)s
  AND (cardinality(%(kinds)s::text[]) = 0 OR kind = ANY(%(kinds)s::text[]))
  AND (cardinality(%(causes)s::text[]) = 0 OR cause = ANY(%(causes)s::text[]))
ORDER BY seq
LIMIT %(limit)s
"""


def causes(conn: Connection, customer_id: str) -> dict[str, int]:
    """The causes of the customer's entries and how many each, by name: what to filter by."""
    rows = conn.execute(
        "SELECT cause, count(*) FROM ledger WHERE customer_id = %s AND cause IS NOT NULL "
        "GROUP BY cause ORDER BY cause", (customer_id,),
    ).fetchall()  # fmt: skip
    return {cause: int(n) for cause, n in rows}
