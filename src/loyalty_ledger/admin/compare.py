"""`loyalty compare A B`: what a program change does, read side by side off two generations."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from psycopg import sql

from loyalty_ledger.generations import amendments
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.catalog import Generation
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
