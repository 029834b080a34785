"""What the analyst views read beside the projections: the program's tier levels and the
fitted CLV model, each published by replacing a view in the connection's generation.

The projections are correct as of the last batch by themselves; these two change only
with the program (a new generation) and with a refit, which `refresh` does when the
model is older than the ledger. Per-customer predictions are never stored: the view
`customer_clv` computes them from its current inputs and these parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from psycopg import sql

from loyalty_ledger.analytics import clv
from loyalty_ledger.analytics.tier_levels import publish_tiers
from loyalty_ledger.program import Program
from loyalty_ledger.store.db import Connection


@dataclass(frozen=True, slots=True)
class Fitted:
    bgnbd: clv.BgNbd
    gamma_gamma: clv.GammaGamma | None  # None: no repeat order of positive value yet
    customers: int
    repeat_customers: int
    as_of: datetime
    seq: int


@dataclass(frozen=True, slots=True)
class Refreshed:
    tiers: int
    fitted: Fitted | None  # None: no customer with an order yet
    refit: bool  # False: the published model was already fitted at the ledger's seq


def refresh(conn: Connection, program: Program) -> Refreshed:
    """Publish the program's tiers, and refit the model unless it is as new as the ledger."""
    tiers = publish_tiers(conn, program)
    clock = _clock(conn)
    if clock is None:
        return Refreshed(tiers, None, False)
    published = conn.execute("SELECT fitted_seq FROM clv_model").fetchone()
    if published is not None and published[0] == clock[1]:
        return Refreshed(tiers, None, False)
    fitted = fit(conn, *clock)
    if fitted is not None:
        publish_model(conn, fitted)
    return Refreshed(tiers, fitted, True)


def _clock(conn: Connection) -> tuple[datetime, int] | None:
    row = conn.execute("SELECT as_of, seq FROM ledger_clock").fetchone()
    return (row[0], int(row[1])) if row else None


# ------------------------------------------------------------------ model


def fit(conn: Connection, as_of: datetime, seq: int) -> Fitted | None:
    """Fit both models on customer_clv's inputs (x, t_x, t_obs, repeat_order_value)."""
    rows = conn.execute(
        "SELECT x, t_x, t_obs, coalesce(repeat_order_value, 0)::double precision "
        "FROM customer_clv WHERE x IS NOT NULL"
    ).fetchall()
    if not rows:
        return None
    x, t_x, t_obs, m = (np.array(column, dtype=np.float64) for column in zip(*rows, strict=True))
    bgnbd = clv.fit_bgnbd(x, t_x, t_obs)
    repeat = int(np.sum((x > 0) & (m > 0)))
    gamma_gamma = clv.fit_gamma_gamma(x, m) if repeat else None
    return Fitted(bgnbd, gamma_gamma, len(rows), repeat, as_of, seq)


MODEL_VIEW = sql.SQL(
    "CREATE OR REPLACE VIEW clv_model AS SELECT {}::timestamptz AS fitted_as_of, "
    "{}::bigint AS fitted_seq, {}::bigint AS customers, {}::bigint AS repeat_customers, "
    "{}::double precision AS r, {}::double precision AS alpha, {}::double precision AS a, "
    "{}::double precision AS b, {}::double precision AS bgnbd_log_likelihood, "
    "{}::double precision AS p, {}::double precision AS q, {}::double precision AS v, "
    "{}::double precision AS gamma_gamma_log_likelihood"
)


def publish_model(conn: Connection, fitted: Fitted) -> None:
    """Replace the view `clv_model` with the fitted parameters (a non-finite one as null)."""
    bg, gg = fitted.bgnbd, fitted.gamma_gamma
    values: list[float | None] = [bg.r, bg.alpha, bg.a, bg.b, bg.log_likelihood]
    values += [gg.p, gg.q, gg.v, gg.log_likelihood] if gg else [None] * 4
    finite = [v if v is not None and math.isfinite(v) else None for v in values]
    conn.execute(
        MODEL_VIEW.format(
            fitted.as_of, fitted.seq, fitted.customers, fitted.repeat_customers, *finite
        )
    )
