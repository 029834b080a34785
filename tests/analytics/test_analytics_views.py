"""Each analyst view on real PostgreSQL against figures computed independently (in Python,
from the raw ledger, the engine's snapshots and the case's expected read models)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import reference
from analytics_cases import CASE, case_database, dump, rows
from reference import DAY, Data, money, round4, utc_month

from loyalty_ledger.analytics import clv
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import connect
from support import CASES, ingest

MY_TABLES = ("ledger_clock", "customer_months", "customer_spend", "point_lots", "tier_moves",
             "referral_activity")  # fmt: skip


@pytest.fixture(scope="module")
def case_url(pg_server: Any, template_db: str) -> Iterator[str]:
    """case-07 prepared once for this module's read-only tests."""
    with case_database(pg_server, template_db) as url:
        yield url


@pytest.fixture(scope="module")
def data(case_url: str) -> Data:
    with connect(case_url) as conn:
        return reference.load(conn, CASE)


# ------------------------------------------------------------------ customer_clv


def test_customer_clv_history_and_model_inputs(case_url: str, data: Data) -> None:
    got = {r["customer_id"]: r for r in rows(case_url, "SELECT * FROM customer_clv")}
    assert sorted(got) == sorted(data.customers)
    orders = reference.orders(data)
    enrolled = {e["customer_id"]: e["occurred_at"] for e in data.ledger if e["kind"] == "enrolled"}
    for customer_id, want in data.customers.items():
        row = got[customer_id]
        assert row["as_of"] == data.as_of
        assert row["orders"] == want["orders"]
        assert row["historical_clv"] == money(want["net_revenue"])
        assert row["tenure_days"] == math.floor((data.as_of - enrolled[customer_id]) / DAY)
        mine = orders.get(customer_id, [])
        if not mine:
            assert row["x"] is None and row["predicted_value_12m"] is None
            continue
        first, last = mine[0][0], max(at for at, _, _ in mine)
        assert row["aov"] == money(want["aov"])
        assert row["x"] == len(mine) - 1
        assert row["t_x"] == pytest.approx((last - first) / DAY, abs=1e-9)
        assert row["t_obs"] == pytest.approx((data.as_of - first) / DAY, abs=1e-9)
        assert row["recency_days"] == math.floor((data.as_of - last) / DAY)
        repeat = [net for _, _, net in mine[1:]]
        want_mean = sum(repeat) / len(repeat) if repeat else None
        assert row["repeat_order_value"] == (round4(want_mean) if want_mean is not None else None)


def test_customer_clv_predictions_follow_the_published_model(case_url: str, data: Data) -> None:
    (model,) = rows(case_url, "SELECT * FROM clv_model")
    assert model["fitted_seq"] == data.ledger[-1]["seq"]
    assert model["fitted_as_of"] == data.as_of
    bgnbd = clv.BgNbd(model["r"], model["alpha"], model["a"], model["b"], 0.0)
    gamma = clv.GammaGamma(model["p"], model["q"], model["v"], 0.0)
    got = [r for r in rows(case_url, "SELECT * FROM customer_clv WHERE x IS NOT NULL")]
    x, t_x, t_obs = (np.array([r[k] for r in got]) for k in ("x", "t_x", "t_obs"))
    m = np.array([float(r["repeat_order_value"] or 0) for r in got])
    purchases = clv.expected_purchases(bgnbd, 365.0, x, t_x, t_obs)  # paper's form, scipy 2F1
    value = clv.expected_order_value(gamma, x, m)
    alive = clv.p_alive(bgnbd, x, t_x, t_obs)
    for i, row in enumerate(got):
        assert row["predicted_orders_12m"] == pytest.approx(purchases[i], rel=1e-7, abs=1e-12)
        assert row["p_alive"] == pytest.approx(alive[i], rel=1e-9)
        assert row["predicted_order_value"] == pytest.approx(value[i], rel=1e-9)
        assert row["predicted_value_12m"] == pytest.approx(purchases[i] * value[i], rel=1e-7,
                                                           abs=1e-12)  # fmt: skip
    # the published parameters maximise the likelihood of the view's own inputs
    refit = clv.fit_bgnbd(x, t_x, t_obs)
    assert refit.log_likelihood == pytest.approx(model["bgnbd_log_likelihood"], rel=1e-9)


# ------------------------------------------------------------------ segments


def quintile(values: list[float], higher_is_better: bool = True) -> list[int]:
    """percent_rank quintiles as SQL computes them: ties share a score."""
    n = len(values)
    scores = []
    for v in values:
        below = sum(1 for w in values if (w < v if higher_is_better else w > v))
        rank = below / (n - 1) if n > 1 else 0.0
        scores.append(min(5, 1 + math.floor(5 * rank)))
    return scores


def segment_of(r: int, f: int, m: int) -> str:
    if r >= 4 and f >= 4 and m >= 4:
        return "champions"
    if f >= 3:
        return "loyal" if r >= 3 else "at risk"
    return "new" if r >= 3 else "hibernating"


def test_segments_rfm_scores_and_names(case_url: str, data: Data) -> None:
    buyers = sorted(c for c, row in data.customers.items() if row["orders"] > 0)
    last = {c: max(at for at, _, _ in reference.orders(data)[c]) for c in buyers}
    recency = [math.floor((data.as_of - last[c]) / DAY) for c in buyers]
    r = quintile([float(v) for v in recency], higher_is_better=False)
    f = quintile([float(data.customers[c]["orders"]) for c in buyers])
    m = quintile([float(money(data.customers[c]["net_revenue"])) for c in buyers])
    got = {row["customer_id"]: row for row in rows(case_url, "SELECT * FROM segments")}
    assert sorted(got) == buyers
    for i, c in enumerate(buyers):
        row = got[c]
        assert (row["r_score"], row["f_score"], row["m_score"]) == (r[i], f[i], m[i]), c
        assert row["rfm"] == f"{r[i]}{f[i]}{m[i]}"
        assert row["segment"] == segment_of(r[i], f[i], m[i]), c


def percent_rank(values: list[float]) -> list[float]:
    n = len(values)
    return [sum(1 for w in values if w < v) / (n - 1) for v in values]


def test_most_valuable_customers_blend_the_configured_weights(case_url: str) -> None:
    weights = {"weight_spend": "3", "weight_frequency": "1", "weight_clv": "0"}
    got = rows(case_url, "SELECT * FROM segments", weights)
    spend = percent_rank([float(r["net_revenue"]) for r in got])
    frequency = percent_rank([float(r["orders"]) for r in got])
    for row, s, f in zip(got, spend, frequency, strict=True):
        assert row["weight_spend"] == 3 and row["weight_clv"] == 0
        assert float(row["value_score"]) == pytest.approx((3 * s + f) / 4, abs=1e-6)
    scores = [r["value_score"] for r in got]
    for row in got:
        assert row["value_rank"] == 1 + sum(1 for s in scores if s > row["value_score"])
    default = rows(case_url, "SELECT value_score FROM segments ORDER BY value_rank LIMIT 1")
    assert default[0]["value_score"] != max(scores) or len(got) == 1  # weights changed it


# ------------------------------------------------------------------ tier_progress


def test_tier_progress(case_url: str, data: Data) -> None:
    tiers = data.program["tiers"]
    levels = [(lv["name"], money(lv["min_spend"])) for lv in tiers["levels"]]
    window = tiers.get("window_days", 365) * DAY
    spend: dict[str, list[tuple[Any, Decimal]]] = defaultdict(list)
    for e in data.ledger:
        if (
            e["kind"] in ("order_placed", "refund_applied")
            and e["occurred_at"] > data.as_of - window
        ):
            sign = 1 if e["kind"] == "order_placed" else -1
            spend[e["customer_id"]].append((e["occurred_at"], sign * e["amount"]))
    got = {r["customer_id"]: r for r in rows(case_url, "SELECT * FROM tier_progress")}
    assert sorted(got) == sorted(data.customers)
    for customer_id, want in data.customers.items():
        row = got[customer_id]
        assert row["tier"] == want["tier"]
        assert row["qualifying_spend"] == money(want["qualifying_spend"])
        rank = [name for name, _ in levels].index(want["tier"])
        if rank + 1 < len(levels):
            name, min_spend = levels[rank + 1]
            assert row["next_tier"] == name and row["next_tier_min_spend"] == min_spend
            assert row["amount_needed"] == max(min_spend - money(want["qualifying_spend"]), 0)
        else:
            assert row["next_tier"] is None and row["amount_needed"] is None
        inside = spend.get(customer_id)
        if inside:
            first = min(at for at, _ in inside)
            assert row["spend_lapses_at"] == first + window
            assert row["lapsing_spend"] == sum(a for at, a in inside if at == first)
        else:
            assert row["spend_lapses_at"] is None
    assert any(r["spend_lapses_at"] for r in got.values()), "the case must exercise the window"


def test_tier_distribution_replays_tier_moves(case_url: str, data: Data) -> None:
    moves: list[tuple[date, str, str | None, str]] = [
        (utc_month(e["occurred_at"]), e["customer_id"], e["tier_from"], e["tier_to"])
        for e in data.ledger if e["kind"] in ("enrolled", "tier_changed")
    ]  # fmt: skip
    got = rows(case_url, "SELECT * FROM tier_distribution ORDER BY month, tier")
    months = sorted({r["month"] for r in got})
    assert months[0] == min(m for m, *_ in moves) and months[-1] == max(m for m, *_ in moves)
    current: dict[str, str] = {}
    for month in months:
        for at, customer, _, to in moves:
            if at == month:
                current[customer] = to
        want = Counter(current.values())
        mine = {r["tier"]: r["customers"] for r in got if r["month"] == month}
        assert {t: n for t, n in mine.items() if n} == dict(want), month
    assert Counter(current.values()) == Counter(c["tier"] for c in data.customers.values())


# ------------------------------------------------------------------ points_liability


def test_points_liability_by_month(case_url: str, data: Data) -> None:
    flows: dict[date, Counter[str]] = defaultdict(Counter)
    for e in data.ledger:
        if e["kind"] in ("credit", "redemption", "reversal", "expiry"):
            flows[utc_month(e["occurred_at"])][e["kind"]] += e["points"]
    with connect(case_url) as conn:
        lots, _ = reference.lots(conn)  # the engine's own lots: independent of the SQL replay
    expiring: Counter[date] = Counter()
    for (_, expires_at), remaining in lots.items():
        if expires_at is not None:
            expiring[utc_month(expires_at)] += remaining
    got = {r["month"]: r for r in rows(case_url, "SELECT * FROM points_liability",
                                       {"point_value": "0.02"})}  # fmt: skip
    assert sorted(got) == sorted(set(flows) | set(expiring))
    earned = expired = 0
    for month in sorted(got):
        row, want = got[month], flows[month]
        earned, expired = earned + want["credit"], expired + want["expiry"]
        assert (row["points_earned"], row["points_redeemed"], row["points_reversed"],
                row["points_expired"]) == (want["credit"], want["redemption"], want["reversal"],
                                           want["expiry"])  # fmt: skip
        assert row["points_expiring"] == expiring[month]
        assert row["expiring_value"] == expiring[month] * Decimal("0.02")
        assert row["earned_value"] == want["credit"] * Decimal("0.02")
        want_rate = Decimal(expired) / Decimal(earned) if earned else None
        assert row["breakage_rate_to_date"] == (
            want_rate.quantize(Decimal("0.000001"), ROUND_HALF_UP)
            if want_rate is not None
            else None
        )


def test_points_liability_total(case_url: str, data: Data) -> None:
    with connect(case_url) as conn:
        lots, debts = reference.lots(conn)
    (row,) = rows(case_url, "SELECT * FROM points_liability_total", {"point_value": "0.005"})
    customers = data.customers.values()
    totals = {k: sum(int(c[k]) for c in customers) for k in ("earned", "redeemed", "expired")}
    assert row["outstanding_points"] == sum(lots.values())
    assert row["never_expiring_points"] == sum(v for (_, e), v in lots.items() if e is None)
    assert row["debt_points"] == sum(debts.values()) > 0  # case-07 has returns into debt
    assert row["outstanding_points"] - row["debt_points"] == sum(
        int(c["balance"]) for c in customers
    )
    assert (row["points_earned"], row["points_redeemed"], row["points_expired"]) == (
        totals["earned"], totals["redeemed"], totals["expired"])  # fmt: skip
    assert row["breakage_rate"] == (Decimal(totals["expired"]) / totals["earned"]).quantize(
        Decimal("0.000001"), ROUND_HALF_UP)  # fmt: skip
    assert row["liability_value"] == row["outstanding_points"] * Decimal("0.005")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_point_lots_replay_the_engines_lots(case: Path, database_url: str) -> None:
    ingest(database_url, case / "events.jsonl", case / "program.toml", batch_size=97)
    with connect(database_url) as conn:
        runner.catch_up(conn)
        want_lots, want_debts = reference.lots(conn)
        got = conn.execute("SELECT customer_id, lot_seq, expires_at, remaining FROM point_lots")
        lots: Counter[tuple[str, Any]] = Counter()
        debts = {}
        for customer_id, lot_seq, expires_at, remaining in got:
            if lot_seq == 0:
                debts[customer_id] = remaining
            else:
                lots[(customer_id, expires_at)] += remaining
    assert lots == want_lots
    assert debts == want_debts


# ------------------------------------------------------------------ retention


def test_retention_cohorts(case_url: str, data: Data) -> None:
    active: dict[str, set[date]] = defaultdict(set)
    for e in data.ledger:
        if e["kind"] == "order_placed":
            active[e["customer_id"]].add(utc_month(e["occurred_at"]))
    cohorts: dict[date, list[str]] = defaultdict(list)
    for customer, months in active.items():
        cohorts[min(months)].append(customer)
    last = utc_month(data.as_of)
    got = rows(case_url, "SELECT * FROM retention ORDER BY cohort_month, month")
    want = []
    for cohort, members in sorted(cohorts.items()):
        repeat = sum(1 for c in members if data.customers[c]["orders"] > 1)
        month, k = cohort, 0
        while month <= last:
            n = sum(1 for c in members if month in active[c])
            want.append((cohort, month, k, len(members), n, round4(Decimal(n) / len(members)),
                         repeat, round4(Decimal(repeat) / len(members))))  # fmt: skip
            month, k = date(month.year + month.month // 12, month.month % 12 + 1, 1), k + 1
    assert [tuple(r.values()) for r in got] == want


def test_repeat_purchase(case_url: str, data: Data) -> None:
    (row,) = rows(case_url, "SELECT * FROM repeat_purchase")
    buyers = sum(1 for c in data.customers.values() if c["orders"] > 0)
    repeat = sum(1 for c in data.customers.values() if c["orders"] > 1)
    assert (row["customers_with_orders"], row["repeat_customers"]) == (buyers, repeat)
    assert row["repeat_purchase_rate"] == round4(Decimal(repeat) / buyers)


# ------------------------------------------------------------------ referrals


def test_referrals(case_url: str, data: Data) -> None:
    referrer_of = {e["customer_id"]: e["ref"] for e in data.ledger if e["kind"] == "referred"}
    settled = {e["customer_id"]: e["cause"] for e in data.ledger if e["kind"] == "referral_settled"}
    ladder: dict[str, list[str]] = defaultdict(list)
    for e in data.ledger:
        if e["kind"] == "reward_issued" and e["cause"] == "referral_ladder":
            ladder[e["customer_id"]].append(e["reward"])
    want: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"made": 0, "settled": 0, "qualified": 0, "orders": 0, "revenue": Decimal(0)}
    )
    for referee, referrer in referrer_of.items():
        w = want[referrer]
        w["made"] += 1
        w["settled"] += referee in settled
        w["qualified"] += settled.get(referee) == "qualified"
        if referee in data.customers:
            w["orders"] += data.customers[referee]["orders"]
            w["revenue"] += money(data.customers[referee]["net_revenue"])
    got = {r["referrer_id"]: r for r in rows(case_url, "SELECT * FROM referrals")}
    assert sorted(got) == sorted(set(want) | set(ladder))
    assert sum(len(v) for v in ladder.values()) > 0, "the case must exercise the ladder"
    for referrer, row in got.items():
        w = want[referrer]
        assert (row["referrals_made"], row["referrals_settled"], row["referrals_qualified"]) == (
            w["made"], w["settled"], w["qualified"])  # fmt: skip
        assert row["ladder_reward_ids"] == ladder.get(referrer, [])
        assert row["ladder_rewards"] == len(ladder.get(referrer, []))
        assert (row["referred_orders"], row["referred_net_revenue"]) == (w["orders"], w["revenue"])
        if referrer in data.customers:  # the read model counts qualified referrals too
            assert row["referrals_qualified"] == data.customers[referrer]["referrals_qualified"]


# ------------------------------------------------------------------ replay


def test_rebuild_gives_identical_rows(database_url: str) -> None:
    # small batches: every table is built incrementally, a catch-up per batch
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml", batch_size=50)
    before = dump(database_url, MY_TABLES)
    assert all(before.values())
    with connect(database_url) as conn:
        runner.rebuild(conn)
    assert dump(database_url, MY_TABLES) == before
