"""The managers' report: one self-contained HTML file (plotly.js inlined, no network needed)
with the loyalty KPIs and a chart per question, read from the analyst views."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from loyalty_ledger.store.db import Connection

Step = Callable[[int, int | None], None]

SEGMENT_ORDER = ("champions", "loyal", "new", "at risk", "hibernating")
PLAN_COLORS = ("#457b9d", "#e76f51", "#2a9d8f", "#e9c46a", "#6d597a")  # a plan's bars and line
COLORS = {"earned": "#2a9d8f", "redeemed": "#e9c46a", "expired": "#e76f51", "expiring": "#264653"}


@dataclass(frozen=True, slots=True)
class Chart:
    id: str  # the chart's element id, checked by the rendering test
    title: str
    question: str
    figure: go.Figure


@dataclass(frozen=True, slots=True)
class Report:
    html: str
    charts: tuple[str, ...]
    as_of: datetime | None


def _rows(conn: Connection, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cur = conn.execute(query, params or None)
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _figure(traces: Sequence[Any], **layout: Any) -> go.Figure:
    figure = go.Figure(data=list(traces))
    base = {
        "margin": {"l": 60, "r": 20, "t": 10, "b": 50},
        "height": 380,
        "template": "plotly_white",
        "legend": {"orientation": "h", "y": -0.18},
    }
    figure.update_layout(**(base | layout))
    return figure


def _right_axis(title: str, **extra: Any) -> dict[str, Any]:
    """A second y axis on the right, over the first (its own scale, no second grid)."""
    axis = {"title": {"text": title}, "overlaying": "y", "side": "right", "showgrid": False}
    return axis | extra


# ------------------------------------------------------------------ charts


def tier_chart(conn: Connection) -> Chart:
    rows = _rows(
        conn,
        "SELECT month, tier, tier_rank, customers FROM tier_distribution "
        "ORDER BY tier_rank NULLS LAST, tier, month",
    )
    tiers = list(dict.fromkeys(r["tier"] for r in rows))
    traces = [
        go.Scatter(
            x=[r["month"] for r in rows if r["tier"] == tier],
            y=[r["customers"] for r in rows if r["tier"] == tier],
            name=tier,
            stackgroup="tiers",
            mode="lines",
        )
        for tier in tiers
    ]
    figure = _figure(traces, yaxis_title="customers", xaxis_title="month end")
    return Chart(
        "tier-distribution",
        "Tier distribution over time",
        "How many members hold each tier, month by month?",
        figure,
    )


def points_chart(conn: Connection) -> Chart:
    rows = _rows(
        conn,
        "SELECT month, points_earned, points_redeemed, points_expired "
        "FROM points_liability WHERE points_earned + points_redeemed "
        "+ points_expired > 0 ORDER BY month",
    )
    months = [r["month"] for r in rows]
    traces = [
        go.Bar(
            x=months, y=[r[f"points_{kind}"] for r in rows], name=kind, marker_color=COLORS[kind]
        )
        for kind in ("earned", "redeemed", "expired")
    ]
    figure = _figure(traces, barmode="group", yaxis_title="points", xaxis_title="month")
    return Chart(
        "points-flow",
        "Points earned, redeemed and expired per month",
        "Is the program earning faster than members spend or lose points?",
        figure,
    )


def liability_chart(conn: Connection) -> Chart:
    rows = _rows(
        conn,
        "SELECT month, points_expiring, expiring_value, point_value "
        "FROM points_liability WHERE points_expiring > 0 ORDER BY month",
    )
    figure = _figure(
        [
            go.Bar(
                x=[r["month"].strftime("%Y-%m") for r in rows],  # months as categories
                y=[r["points_expiring"] for r in rows],
                name="outstanding points",
                marker_color=COLORS["expiring"],
                customdata=[float(r["expiring_value"]) for r in rows],
                hovertemplate="%{x}: %{y:,} points (%{customdata:,.2f})<extra></extra>",
            )
        ],
        yaxis_title="outstanding points",
        xaxis_title="expiry month",
    )
    return Chart(
        "liability-by-expiry",
        "Outstanding points by expiry month",
        "When does the points liability fall due?",
        figure,
    )


def retention_chart(conn: Connection) -> Chart:
    rows = _rows(
        conn,
        "SELECT cohort_month, months_since_first, share_active FROM retention "
        "ORDER BY cohort_month, months_since_first",
    )
    cohorts = sorted({r["cohort_month"] for r in rows})
    width = max((r["months_since_first"] for r in rows), default=-1) + 1
    z: list[list[float | None]] = [[None] * width for _ in cohorts]
    index = {cohort: i for i, cohort in enumerate(cohorts)}
    for r in rows:
        z[index[r["cohort_month"]]][r["months_since_first"]] = float(r["share_active"])
    figure = _figure(
        [
            go.Heatmap(
                z=z,
                x=list(range(width)),
                y=[c.strftime("%Y-%m") for c in cohorts],
                colorscale="Blues",
                zmin=0,
                zmax=1,
                colorbar={"title": {"text": "active"}},
                hovertemplate="cohort %{y}, month +%{x}: %{z:.0%}<extra></extra>",
            )
        ],
        xaxis_title="months since first purchase",
        yaxis_title="first-purchase cohort",
        yaxis_autorange="reversed",
    )
    return Chart(
        "cohort-retention",
        "Cohort retention",
        "Of each month's new buyers, what share orders again in each later month?",
        figure,
    )


def segments_chart(conn: Connection) -> Chart:
    rows = _rows(conn, "SELECT segment, count(*) AS customers FROM segments GROUP BY segment")
    sizes = {r["segment"]: r["customers"] for r in rows}
    names = [s for s in SEGMENT_ORDER if s in sizes]
    figure = _figure(
        [go.Bar(x=names, y=[sizes[s] for s in names], marker_color="#457b9d", name="customers")],
        yaxis_title="customers",
        xaxis_title="RFM segment",
    )
    return Chart(
        "segment-sizes",
        "RFM segment sizes",
        "How many customers are champions, loyal, new, at risk or hibernating?",
        figure,
    )


def top_chart(rows: list[dict[str, Any]]) -> Chart:
    labels = [f"#{r['value_rank']} {r['customer_id']}" for r in rows][::-1]
    net = [float(r["net_revenue"]) for r in rows][::-1]
    predicted = [float(r["predicted_value_12m"] or 0) for r in rows][::-1]
    figure = _figure(
        [
            go.Bar(
                y=labels, x=net, orientation="h", name="net revenue to date", marker_color="#1d3557"
            ),
            go.Bar(
                y=labels,
                x=predicted,
                orientation="h",
                name="predicted next 12 months",
                marker_color="#a8dadc",
            ),
        ],
        barmode="group",
        xaxis_title="revenue",
        height=max(380, 26 * len(rows) + 90),
    )
    return Chart(
        "top-customers",
        "Most valuable customers",
        "Who are they, by a blend of spend, frequency and predicted value?",
        figure,
    )


def campaigns_chart(conn: Connection) -> Chart | None:
    rows = _rows(
        conn,
        "SELECT campaign_id, purchases, customers_reached, revenue, points_added "
        "FROM campaign_performance ORDER BY campaign_id",
    )
    if not rows:  # a program without campaigns, or none applied yet
        return None
    names = [r["campaign_id"] for r in rows]
    reach = [[r["purchases"], r["customers_reached"]] for r in rows]
    figure = _figure(
        [
            go.Bar(
                x=names,
                y=[r["revenue"] for r in rows],
                name="revenue of the purchases it applied to",
                marker_color="#1d3557",
                customdata=reach,
                hovertemplate="%{x}: %{y:,.2f} from %{customdata[0]:,} purchases "
                "of %{customdata[1]:,} customers<extra></extra>",
            ),
            go.Scatter(
                x=names,
                y=[r["points_added"] for r in rows],
                name="points it added beyond the base rules",
                mode="markers",
                marker={"color": "#e76f51", "size": 12, "symbol": "diamond"},
                yaxis="y2",
            ),
        ],
        xaxis_title="campaign",
        yaxis_title="revenue",
        yaxis2=_right_axis("points added"),
    )
    return Chart(
        "campaigns",
        "Campaigns: revenue and points added",
        "What did each campaign's purchases bring in, for how many extra points?",
        figure,
    )


def memberships_chart(conn: Connection) -> Chart | None:
    rows = _rows(conn, "SELECT * FROM memberships ORDER BY plan, month")
    if not rows:  # a program without paid plans, or none sold yet
        return None
    plans = list(dict.fromkeys(r["plan"] for r in rows))
    bars = [
        go.Bar(
            x=[r["month"] for r in rows if r["plan"] == plan],
            y=[r["fees"] for r in rows if r["plan"] == plan],
            name=f"{plan}: fees",
            marker_color=PLAN_COLORS[i % len(PLAN_COLORS)],
            opacity=0.75,
        )
        for i, plan in enumerate(plans)
    ]
    lines = [
        go.Scatter(
            x=[r["month"] for r in rows if r["plan"] == plan],
            y=[r["active_members"] for r in rows if r["plan"] == plan],
            name=f"{plan}: active members",
            mode="lines",
            line={"color": PLAN_COLORS[i % len(PLAN_COLORS)], "width": 3},
            yaxis="y2",
        )
        for i, plan in enumerate(plans)
    ]
    figure = _figure(
        bars + lines,
        barmode="stack",
        xaxis_title="month",
        yaxis_title="fees",
        yaxis2=_right_axis("active members", rangemode="tozero", tickformat=",d"),
    )
    return Chart(
        "memberships",
        "Paid memberships: fees and active members per month",
        f"What do the plans bring in, and do members spend more? {_mean_orders(rows, plans)}",
        figure,
    )


def _mean_orders(rows: list[dict[str, Any]], plans: list[str]) -> str:
    """Members' mean order value per plan against non-members', over every month."""

    def mean(spend: Any, orders: int) -> str:
        return _number(spend / orders, 2) if orders else "–"

    parts = []
    for plan in plans:
        mine = [r for r in rows if r["plan"] == plan]
        spend = sum((r["member_spend"] for r in mine), Decimal(0))
        parts.append(f"{plan} {mean(spend, sum(r['member_orders'] for r in mine))}")
    months = {r["month"]: r for r in rows}.values()  # non-members' figures repeat per plan
    spend = sum((r["non_member_spend"] for r in months), Decimal(0))
    orders = sum(r["non_member_orders"] for r in months)
    return f"Mean order: {', '.join(parts)}; non-members {mean(spend, orders)}."


# ------------------------------------------------------------------ page


def build(conn: Connection, top: int = 20, step: Step | None = None) -> Report:
    """Query the views and lay out the page; `step(done, total)` reports progress."""
    makers: list[Callable[[Connection], Chart | None]] = [
        tier_chart,
        points_chart,
        liability_chart,
        retention_chart,
        segments_chart,
        campaigns_chart,
        memberships_chart,
    ]
    total = len(makers) + 2
    charts = []
    for done, make in enumerate(makers, start=1):
        chart = make(conn)  # None: nothing to draw (a version 1 program's campaigns)
        if chart is not None:
            charts.append(chart)
        if step:
            step(done, total)
    leaders = _rows(
        conn, "SELECT * FROM segments ORDER BY value_rank, customer_id LIMIT %s", (top,)
    )
    charts.append(top_chart(leaders))
    kpis = _kpis(conn)
    if step:
        step(total - 1, total)
    page = _page(kpis, charts, leaders)
    if step:
        step(total, total)
    return Report(page, tuple(c.id for c in charts), kpis.get("as_of"))


def write(conn: Connection, out: Path, top: int = 20, step: Step | None = None) -> Report:
    report = build(conn, top, step)
    out.write_text(report.html, encoding="utf-8")
    return report


def _kpis(conn: Connection) -> dict[str, Any]:
    found = _rows(conn, "SELECT * FROM points_liability_total")[0]
    found |= _rows(conn, "SELECT * FROM repeat_purchase")[0]
    found |= _rows(conn, "SELECT count(*) AS enrolled FROM customers")[0]
    model = _rows(conn, "SELECT * FROM clv_model")
    found["model"] = model[0] if model else None
    return found


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{float(value):,.{digits}f}" if isinstance(value, Decimal | float) else f"{value:,}"


def _percent(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1%}"


def _kpi_cards(k: dict[str, Any]) -> str:
    cards = [
        ("members", _number(k["enrolled"])),
        ("buyers", _number(k["customers_with_orders"])),
        ("repeat-purchase rate", _percent(k["repeat_purchase_rate"])),
        ("outstanding points", _number(k["outstanding_points"])),
        (f"liability at {k['point_value']} a point", _number(k["liability_value"], 2)),
        ("breakage (expired / earned)", _percent(k["breakage_rate"])),
        ("redeemed / earned", _percent(k["redemption_rate"])),
    ]
    return "".join(
        f'<div class="kpi"><div class="value">{html.escape(v)}</div>'
        f'<div class="label">{html.escape(label)}</div></div>'
        for label, v in cards
    )


def _model_note(model: dict[str, Any] | None) -> str:
    if model is None:
        return "No CLV model fitted yet (no customer with an order)."
    parts = [f"{name} = {model[name]:.4g}" for name in ("r", "alpha", "a", "b")]
    if model["p"] is not None:
        parts += [f"{name} = {model[name]:.4g}" for name in ("p", "q", "v")]
    return (
        f"Predicted values: BG/NBD with Gamma-Gamma, fitted on {model['customers']:,} buyers "
        f"as of {model['fitted_as_of']:%Y-%m-%d %H:%M} UTC ({', '.join(parts)}; time in days)."
    )


def _leaders_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "rank",
        "customer",
        "segment",
        "RFM",
        "orders",
        "net revenue",
        "predicted 12 months",
        "score",
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(cell))}</td>"
            for cell in (
                r["value_rank"],
                r["customer_id"],
                r["segment"],
                r["rfm"],
                r["orders"],
                _number(r["net_revenue"], 2),
                _number(r["predicted_value_12m"], 2),
                f"{float(r['value_score']):.3f}",
            )
        )
        + "</tr>"
        for r in rows
    )
    cells = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _chart_html(chart: Chart) -> str:
    div = pio.to_html(
        chart.figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=chart.id,
        config={"displayModeBar": False, "responsive": True},
        default_height=f"{chart.figure.layout.height}px",
    )
    return (
        f'<section class="chart" data-chart="{chart.id}"><h2>{html.escape(chart.title)}</h2>'
        f'<p class="question">{html.escape(chart.question)}</p>{div}</section>'
    )


def _page(kpis: dict[str, Any], charts: list[Chart], leaders: list[dict[str, Any]]) -> str:
    as_of = kpis.get("as_of")
    stamp = f"as of {as_of:%Y-%m-%d %H:%M} UTC (the ledger's latest event)" if as_of else "empty"
    grid = "".join(_chart_html(c) for c in charts[:-1])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Loyalty report</title>
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
</head><body><main>
<h1>Loyalty report <small>{html.escape(stamp)}</small></h1>
<div class="kpis">{_kpi_cards(kpis)}</div>
<div class="grid">{grid}</div>
{_chart_html(charts[-1])}
<p class="note">{html.escape(_model_note(kpis["model"]))}</p>
{_leaders_table(leaders)}
</main></body></html>
"""


STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2733; }
main { max-width: 1360px; margin: 0 auto; padding: 16px 24px; }
h1 { font-size: 26px; margin: 8px 0 16px; } h1 small { font-size: 14px; color: #667; }
h2 { font-size: 17px; margin: 0; } .question { margin: 2px 0 6px; color: #667; font-size: 13px; }
.kpis { display: grid; grid-template-columns: repeat(7, 1fr); gap: 10px; margin-bottom: 16px; }
.kpi { background: #fff; border-radius: 8px; padding: 10px 12px; box-shadow: 0 1px 2px #0001; }
.kpi .value { font-size: 22px; font-weight: 600; } .kpi .label { font-size: 12px; color: #667; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-bottom: 16px; }
.chart { background: #fff; border-radius: 8px; padding: 12px; box-shadow: 0 1px 2px #0001; }
.note { font-size: 13px; color: #445; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e3e6ea; text-align: right; }
th:nth-child(2), td:nth-child(2), th:nth-child(3), td:nth-child(3) { text-align: left; }
"""
