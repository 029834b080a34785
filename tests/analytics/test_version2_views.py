"""The version 2 analyst views (campaigns, pending points, memberships, expiring points,
adjustments) on real PostgreSQL, on every version 2 conformance case, each against figures
computed independently: from the accepted input events, the engine's snapshots, the case's
expected read model and the raw ledger rows (reference.py)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import reference
from analytics_cases import V2_CASE, V2_TABLES, case_database, dump, rows
from reference import Data, instant, money, round4, utc_month

from loyalty_ledger.engine.state import CustomerState
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import connect
from support import V2_CASES, ingest


@dataclass(frozen=True)
class Case:
    url: str
    data: Data
    states: list[CustomerState]  # the engine's own, from its snapshots
    accepted: dict[str, list[dict[str, Any]]]  # accepted input events by type


@pytest.fixture(scope="module", params=V2_CASES, ids=[c.name for c in V2_CASES])
def case(request: pytest.FixtureRequest, pg_server: Any, template_db: str) -> Iterator[Case]:
    path: Path = request.param
    with case_database(pg_server, template_db, path) as url:
        with connect(url) as conn:
            accepted = {
                kind: reference.accepted(conn, kind)
                for kind in ("purchase", "adjustment", "membership")
            }
            found = Case(url, reference.load(conn, path), reference.snapshots(conn), accepted)
        yield found


def entries(data: Data, *kinds: str) -> list[dict[str, Any]]:
    return [e for e in data.ledger if e["kind"] in kinds]


def round2(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# ------------------------------------------------------------------ campaign_performance


def test_campaign_performance(case: Case) -> None:
    purchases = {e["event_id"]: e for e in case.accepted["purchase"]}
    refunded: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for e in entries(case.data, "refund_applied"):
        refunded[(e["customer_id"], e["ref"])] += e["amount"]
    want: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "customers": set(), "revenue": Decimal(0), "refunded": Decimal(0),
                 "points": 0, "at": []}
    )  # fmt: skip
    for e in entries(case.data, "campaign_applied"):
        purchase, w = purchases[e["event_id"]], want[e["ref"]]  # the input it applied to
        assert purchase["customer_id"] == e["customer_id"]
        w["n"] += 1
        w["customers"].add(e["customer_id"])
        w["revenue"] += money(purchase["total"])
        w["refunded"] += refunded[(e["customer_id"], purchase["order_id"])]
        w["points"] += int(e["amount"])
        w["at"].append(instant(purchase["occurred_at"]))
    # the engine's count of purchases per campaign, customer by customer
    counts: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    for state in case.states:
        for campaign_id, n in state.campaigns.items():
            counts[campaign_id] += n
            reached[campaign_id] += 1
    got = {r["campaign_id"]: r for r in rows(case.url, "SELECT * FROM campaign_performance")}
    assert got, "every version 2 case runs campaigns"
    assert sorted(got) == sorted(want) == sorted(counts)
    for campaign_id, row in got.items():
        w = want[campaign_id]
        assert row["purchases"] == w["n"] == counts[campaign_id]
        assert row["customers_reached"] == len(w["customers"]) == reached[campaign_id]
        assert (row["revenue"], row["refunded"]) == (w["revenue"], w["refunded"])
        assert row["net_revenue"] == w["revenue"] - w["refunded"]
        assert row["points_added"] == w["points"]
        per_point = round4(w["revenue"] / w["points"]) if w["points"] else None
        assert row["revenue_per_point"] == per_point
        assert (row["first_applied_at"], row["last_applied_at"]) == (min(w["at"]), max(w["at"]))


# ------------------------------------------------------------------ pending_points


def utc_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def test_pending_points(case: Case) -> None:
    flows: dict[date, Counter[str]] = defaultdict(Counter)
    day_of: dict[tuple[str, str], date] = {}
    for e in entries(case.data, "pending_created", "pending_matured", "pending_cancelled"):
        key = (e["customer_id"], e["ref"])
        if e["kind"] == "pending_created":
            day_of[key] = utc_day(e["expires_at"])
            flows[day_of[key]]["amounts"] += 1
        flows[day_of[key]][e["kind"]] += e["points"]
    left: Counter[date] = Counter()  # the engine's own pending amounts, still waiting
    orders: Counter[date] = Counter()
    for state in case.states:
        for pending in state.pending:
            left[utc_day(pending.matures_at)] += pending.points
            orders[utc_day(pending.matures_at)] += 1
    got = {r["maturity_date"]: r for r in rows(case.url, "SELECT * FROM pending_points",
                                               {"point_value": "0.02"})}  # fmt: skip
    assert bool(got) == ("pending" in case.data.program)
    assert sorted(got) == sorted(flows)
    for day, row in got.items():
        f = flows[day]
        assert row["pending_amounts"] == f["amounts"]
        assert (row["points_created"], row["points_matured"], row["points_cancelled"]) == (
            f["pending_created"], f["pending_matured"], f["pending_cancelled"])  # fmt: skip
        assert row["points_pending"] == left[day], day
        assert row["orders_pending"] == orders[day], day
        assert row["pending_value"] == left[day] * Decimal("0.02")
    pending = sum(int(c["pending"]) for c in case.data.customers.values())
    assert sum(r["points_pending"] for r in got.values()) == pending  # the read model's
    if got:
        assert pending > 0 and sum(f["pending_cancelled"] for f in flows.values()) > 0


# ------------------------------------------------------------------ memberships


def month_end(month: date) -> datetime:
    """The instant a month's active members are counted at: the next month's first."""
    following = reference.next_month(month)
    return datetime(following.year, following.month, 1, tzinfo=UTC)


def test_memberships(case: Case) -> None:
    data = case.data
    periods, placed = reference.memberships(data)
    fees: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for event in case.accepted["membership"]:
        fees[(event["plan"], utc_month(instant(event["occurred_at"])))] += money(event["paid"])
    sales: dict[tuple[str, date], Counter[str]] = defaultdict(Counter)
    for e in entries(data, "membership_started", "membership_renewed"):
        sales[(e["ref"], utc_month(e["occurred_at"]))][e["kind"]] += 1
    for p in periods:  # by the instant the end passed
        if p.ends_at <= data.as_of:
            sales[(p.plan, utc_month(p.ends_at))]["ended"] += 1
    spend: dict[tuple[str | None, date], list[Decimal]] = defaultdict(list)
    for plan, at, total in placed:
        spend[(plan, utc_month(at))].append(total)
    got = rows(case.url, "SELECT * FROM memberships ORDER BY plan, month")
    plans = sorted({p.plan for p in periods})
    assert bool(plans) == bool(case.accepted["membership"])
    assert sorted({r["plan"] for r in got}) == plans
    last = utc_month(data.as_of)
    for plan in plans:
        mine = [r for r in got if r["plan"] == plan]
        month = min(m for p, m in sales if p == plan)
        for row in mine:
            assert row["month"] == month and row["as_of"] == data.as_of
            at = min(month_end(month), data.as_of)
            active = {p.customer_id for p in periods
                      if p.plan == plan and p.started_at <= at < p.ends_at}  # fmt: skip
            assert row["active_members"] == len(active), (plan, month)
            counted = sales[(plan, month)]
            assert (row["started"], row["renewals"], row["ended"], row["fees"]) == (
                counted["membership_started"], counted["membership_renewed"],
                counted["ended"], fees[(plan, month)])  # fmt: skip
            for prefix, key in (("member", plan), ("non_member", None)):
                totals = spend[(key, month)]
                assert row[f"{prefix}_orders"] == len(totals), (plan, month, prefix)
                assert row[f"{prefix}_spend"] == sum(totals, Decimal(0))
                assert row[f"{prefix}_aov"] == (round2(sum(totals) / len(totals)) if totals
                                                else None)  # fmt: skip
            month = reference.next_month(month)
        assert mine[-1]["month"] == last
        # "active now": the read model's memberships that run past the ledger's clock
        now = [c for c in data.customers.values() if c["membership"] == plan
               and instant(c["membership_ends_at"]) > data.as_of]  # fmt: skip
        held = [s.customer_id for s in case.states if s.membership
                and s.membership[0] == plan and s.membership[1] > data.as_of]  # fmt: skip
        assert mine[-1]["active_members"] == len(now) == len(held)
    paid = sum(money(c["membership_fees"]) for c in data.customers.values())
    assert sum((r["fees"] for r in got), Decimal(0)) == paid
    if plans:
        assert sum(r["member_orders"] for r in got) > 0
        assert sum(r["renewals"] for r in got) > 0 and sum(r["ended"] for r in got) > 0


# ------------------------------------------------------------------ expiring_soon


@pytest.mark.parametrize("days", [None, 120])
def test_expiring_soon(case: Case, days: int | None) -> None:
    data = case.data
    until = data.as_of + timedelta(hours=24 * (days or 30))
    want: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for state in case.states:  # the engine's own lots
        for lot in state.lots:
            if lot.expires_at is not None and data.as_of < lot.expires_at <= until:
                want[state.customer_id].append((lot.expires_at, lot.remaining))
    settings = {"point_value": "0.5"} | ({"expiring_days": str(days)} if days else {})
    got = {r["customer_id"]: r for r in rows(case.url, "SELECT * FROM expiring_soon", settings)}
    assert sorted(got) == sorted(want)
    if days:
        assert got, "the wider window must find lots"
    for customer_id, row in got.items():
        points = sum(n for _, n in want[customer_id])
        assert (row["as_of"], row["expiring_until"]) == (data.as_of, until)
        assert row["expiring_points"] == points
        assert row["lots"] == len(want[customer_id])
        assert row["first_expires_at"] == min(at for at, _ in want[customer_id])
        assert row["balance"] == data.customers[customer_id]["balance"]
        assert row["expiring_value"] == points * Decimal("0.5")


# ------------------------------------------------------------------ adjustments


def test_adjustments(case: Case) -> None:
    want: dict[tuple[date, str], Counter[str]] = defaultdict(Counter)
    for event in case.accepted["adjustment"]:
        w = want[(utc_month(instant(event["occurred_at"])), event["reason"])]
        points = int(event["points"])
        w["credits" if points > 0 else "debits"] += 1
        w["credited" if points > 0 else "debited"] += abs(points)
    got = {(r["month"], r["reason"]): r for r in rows(case.url, "SELECT * FROM adjustments",
                                                      {"point_value": "0.5"})}  # fmt: skip
    assert got, "every version 2 case makes adjustments"
    assert sorted(got) == sorted(want)
    for key, row in got.items():
        w = want[key]
        assert (row["adjustments"], row["credits"], row["debits"]) == (
            w["credits"] + w["debits"], w["credits"], w["debits"])  # fmt: skip
        assert (row["points_credited"], row["points_debited"]) == (w["credited"], w["debited"])
        assert row["net_points"] == w["credited"] - w["debited"]
        assert row["net_value"] == (w["credited"] - w["debited"]) * Decimal("0.5")
    adjusted = sum(int(c["adjusted"]) for c in case.data.customers.values())
    assert sum(r["net_points"] for r in got.values()) == adjusted  # the read model's


# ------------------------------------------------------------------ replay


def test_rebuild_in_tiny_steps_gives_identical_rows(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ingested in small batches: a catch-up per batch; then rebuilt in steps of 7 entries,
    # so that steps end between a purchase's order_placed and campaign_applied entries and
    # between a pending amount's creation and its end
    ingest(database_url, V2_CASE / "events.jsonl", V2_CASE / "program.toml", batch_size=50)
    before = dump(database_url, V2_TABLES)
    assert all(before.values())
    monkeypatch.setattr(runner, "STEP_ENTRIES", 7)
    with connect(database_url) as conn:
        runner.rebuild(conn, V2_TABLES)
    assert dump(database_url, V2_TABLES) == before
