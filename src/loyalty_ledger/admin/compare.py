"""`loyalty compare A B`: what a program change does, read side by side off two generations."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from psycopg import sql

from loyalty_ledger.generations import amendments
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.catalog import Generation
from loyalty_ledger.generations.preview import Previewed
from loyalty_ledger.generations.tally import CustomerTotals
from loyalty_ledger.store.db import Connection

DIFFERENT_MAX = 20  # customers listed whose balance or tier differs, the largest first

_TOTALS = sql.SQL(
    "SELECT count(*), coalesce(sum(earned), 0), coalesce(sum(redeemed), 0), "
    "coalesce(sum(reversed), 0), coalesce(sum(expired), 0), coalesce(sum(balance), 0), "
    "coalesce(sum(cardinality(rewards)), 0), coalesce(sum(adjusted), 0), "
    "coalesce(sum(transferred_in), 0), coalesce(sum(transferred_out), 0), "
    "coalesce(sum(pending), 0), coalesce(sum(membership_fees), 0) FROM {}"
)
_TIERS = sql.SQL("SELECT coalesce(tier, '-'), count(*) FROM {} GROUP BY 1 ORDER BY 1")
_REWARDS = sql.SQL(
    "SELECT reward, count(*) FROM {} WHERE kind = 'reward_issued' GROUP BY 1 ORDER BY 1"
)
_REJECTED = sql.SQL(
    "SELECT reason, count(*) FROM {} WHERE outcome = 'rejected' GROUP BY 1 ORDER BY 1"
)
_DIFFERENT = sql.SQL(
    "SELECT coalesce(a.customer_id, b.customer_id), a.balance, b.balance, a.tier, b.tier "
    "FROM {a} a FULL JOIN {b} b USING (customer_id) "
    "WHERE a.balance IS DISTINCT FROM b.balance OR a.tier IS DISTINCT FROM b.tier "
    "ORDER BY abs(coalesce(b.balance, 0) - coalesce(a.balance, 0)) DESC, 1 LIMIT %s"
)
_DIFFERENT_COUNT = sql.SQL(
    "SELECT count(*) FROM {a} a FULL JOIN {b} b USING (customer_id) "
    "WHERE a.balance IS DISTINCT FROM b.balance OR a.tier IS DISTINCT FROM b.tier"
)


@dataclass(frozen=True, slots=True)
class Side:
    """One generation's figures."""

    generation: str
    program_hash: str | None
    status: str
    customers: int
    earned: int
    redeemed: int
    reversed: int
    expired: int
    outstanding: int
    rewards_issued: int
    # version 2 (0 where the program does not use the feature)
    adjusted: int  # signed
    transferred_in: int
    transferred_out: int
    pending: int  # points waiting to mature
    membership_fees: Decimal
    tiers: dict[str, int] = field(default_factory=dict)
    rewards: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    # its program versions: "original" or the effective_at -> the program's hash
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Different:
    customer_id: str
    balance_a: int | None
    balance_b: int | None
    tier_a: str | None
    tier_b: str | None


@dataclass(frozen=True, slots=True)
class Comparison:
    a: Side
    b: Side
    customers_different: int
    largest_differences: list[Different]


def compare(conn: Connection, name_a: str, name_b: str, limit: int = DIFFERENT_MAX) -> Comparison:
    a, b = generations.get(conn, name_a), generations.get(conn, name_b)
    with conn.transaction():  # one snapshot: live may be writing meanwhile
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        side_a, side_b = _side(conn, a), _side(conn, b)
        tables = {"a": _rel(a, "customers"), "b": _rel(b, "customers")}
        count = conn.execute(_DIFFERENT_COUNT.format(**tables)).fetchone()
        rows = conn.execute(_DIFFERENT.format(**tables), (limit,)).fetchall()
    return Comparison(
        side_a, side_b, int(count[0]) if count else 0, [Different(*row) for row in rows]
    )


def against_preview(
    conn: Connection, name_a: str, previewed: Previewed, limit: int = DIFFERENT_MAX
) -> Comparison:
    """Generation `name_a` beside a preview (`loyalty rerun --preview`), as `compare` puts
    two generations side by side; the preview's side is named "preview"."""
    a = generations.get(conn, name_a)
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        side_a = _side(conn, a)
        customers_a = {c: (balance, tier) for c, balance, tier in conn.execute(
            sql.SQL("SELECT customer_id, balance, tier FROM {}").format(_rel(a, "customers"))
        )}  # fmt: skip
    enrolled = previewed.tally.enrolled()
    side_b = _preview_side(previewed, enrolled)
    customers_b = {c: (t.balance, t.tier) for c, t in enrolled.items()}
    different = [
        Different(c, *_pair(customers_a.get(c), customers_b.get(c)))
        for c in customers_a.keys() | customers_b.keys()
        if customers_a.get(c) != customers_b.get(c)
    ]
    different.sort(key=_largest_first)
    return Comparison(side_a, side_b, len(different), different[:limit])


def _pair(
    a: tuple[int, str | None] | None, b: tuple[int, str | None] | None
) -> tuple[int | None, int | None, str | None, str | None]:
    return (a[0] if a else None, b[0] if b else None, a[1] if a else None, b[1] if b else None)


def _largest_first(d: Different) -> tuple[int, str]:
    """_DIFFERENT's order: the largest balance change first, then by customer."""
    return -abs((d.balance_b or 0) - (d.balance_a or 0)), d.customer_id


def _preview_side(previewed: Previewed, enrolled: dict[str, CustomerTotals]) -> Side:
    rows = enrolled.values()
    tiers = Counter(t.tier or "-" for t in rows)  # _TIERS: coalesce(tier, '-')
    tally = previewed.tally

    def total(column: str) -> int:
        return sum(getattr(t, column) for t in rows)

    return Side(
        "preview", previewed.program_hash, "preview", len(enrolled), total("earned"),
        total("redeemed"), total("reversed"), total("expired"), total("balance"),
        total("rewards"), total("adjusted"), total("transferred_in"), total("transferred_out"),
        total("pending"), sum((t.membership_fees for t in rows), Decimal(0)),
        tiers=dict(sorted(tiers.items())), rewards=dict(sorted(tally.rewards.items())),
        rejected=dict(sorted(tally.rejected.items())), versions=previewed.versions,
    )  # fmt: skip


def _rel(generation: Generation, name: str) -> sql.Identifier:
    return sql.Identifier(generation.schema_name, name)


def _side(conn: Connection, g: Generation) -> Side:
    totals = conn.execute(_TOTALS.format(_rel(g, "customers"))).fetchone()
    assert totals is not None
    *points, fees = totals
    (customers, earned, redeemed, reversed, expired, outstanding, rewards, adjusted,
     transferred_in, transferred_out, pending) = map(int, points)  # fmt: skip
    return Side(
        g.name, g.program_hash, g.status, customers, earned, redeemed, reversed, expired,
        outstanding, rewards, adjusted, transferred_in, transferred_out, pending, Decimal(fees),
        tiers=_counts(conn, _TIERS.format(_rel(g, "customers"))),
        rewards=_counts(conn, _REWARDS.format(_rel(g, "ledger"))),
        rejected=_counts(conn, _REJECTED.format(_rel(g, "inbox"))),
        versions={v.label: v.program_hash for v in amendments.versions(conn, g.name)},
    )  # fmt: skip


def _counts(conn: Connection, query: sql.Composed) -> dict[str, int]:
    return {str(key): int(n) for key, n in conn.execute(query)}


def as_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON values: money (membership fees) as decimal strings."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Decimal) else value

    result: dict[str, Any] = plain(asdict(comparison))
    return result
