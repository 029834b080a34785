"""The CLV models: closed forms against brute-force integrals, fits against data simulated
from the models (fixed seeds), and the SQL functions against the Python ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from loyalty_ledger.analytics import clv
from loyalty_ledger.store.db import connect

MODEL = clv.BgNbd(r=0.8, alpha=30.0, a=0.8, b=2.5, log_likelihood=0.0)


def brute_expected_purchases(model: clv.BgNbd, t: float, x: int, t_x: float, t_obs: float) -> float:
    """E[Y(t) | data] from the model's definition (FHL 2005 section 3): the posterior mean of
    (1 - e^{-lambda p t}) / p over customers alive at t_obs. The integral over lambda is a
    gamma integral; the one over p is done numerically (no hypergeometric function)."""
    r, alpha = model.r, model.alpha
    dropout = stats.beta(model.a, model.b).pdf

    def at(s: float) -> float:  # E_lambda[lambda^x e^{-lambda s}] without its constant factor
        return float((alpha + s) ** -(r + x))

    def future(p: float) -> float:
        return (1 - p) ** x * (at(t_obs) - at(t_obs + p * t)) / p * dropout(p)

    def likelihood(p: float) -> float:
        gone = p * (1 - p) ** (x - 1) * at(t_x) if x > 0 else 0.0
        return ((1 - p) ** x * at(t_obs) + gone) * dropout(p)

    top = integrate.quad(future, 0, 1, epsabs=0, epsrel=1e-11, limit=200)[0]
    bottom = integrate.quad(likelihood, 0, 1, epsabs=0, epsrel=1e-11, limit=200)[0]
    return float(top / bottom)


@pytest.mark.parametrize(("x", "t_x", "t_obs"), [(0, 0.0, 200.0), (3, 60.0, 100.0), (6, 30, 300)])
def test_expected_purchases_matches_the_posterior_integral(
    x: int, t_x: float, t_obs: float
) -> None:
    closed = clv.expected_purchases(MODEL, 365.0, [x], [t_x], [t_obs])[0]
    assert closed == pytest.approx(brute_expected_purchases(MODEL, 365.0, x, t_x, t_obs), rel=1e-7)


def test_bgnbd_fit_recovers_simulated_parameters() -> None:
    # CDNOW's published estimates (FHL 2005, in weeks) as the truth
    truth = clv.BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=0.0)
    t_obs = np.random.default_rng(7).uniform(27.0, 39.0, 6000)
    x, t_x = clv.simulate_bgnbd(truth.r, truth.alpha, truth.a, truth.b, t_obs, seed=11)
    fitted = clv.fit_bgnbd(x, t_x, t_obs)
    assert fitted.r == pytest.approx(truth.r, rel=0.15)
    assert fitted.alpha == pytest.approx(truth.alpha, rel=0.2)
    assert fitted.a == pytest.approx(truth.a, rel=0.35)
    assert fitted.b == pytest.approx(truth.b, rel=0.45)
    at_truth = clv.bgnbd_log_likelihood(truth.r, truth.alpha, truth.a, truth.b, x, t_x, t_obs)
    assert fitted.log_likelihood >= float(np.sum(at_truth))  # it is the maximum
    # the model predicts the simulated population's mean purchases in a holdout period
    predicted = clv.expected_purchases(fitted, 39.0, x, t_x, t_obs).mean()
    assert 0 < predicted < x.mean() * 39.0 / t_obs.mean() * 1.5


def test_gamma_gamma_fit_recovers_simulated_parameters() -> None:
    p, q, v = 6.25, 3.74, 15.44  # Fader and Hardie (2013), CDNOW
    rng = np.random.default_rng(3)
    x = rng.integers(1, 12, 5000).astype(float)
    nu = rng.gamma(q, 1 / v, x.size)
    m = np.array([rng.gamma(p, 1 / n, int(k)).mean() for n, k in zip(nu, x, strict=True)])
    fitted = clv.fit_gamma_gamma(x, m)
    # p and v lie on a ridge of the likelihood; q and the population mean are sharp
    assert fitted.q == pytest.approx(q, rel=0.1)
    assert (fitted.p, fitted.v) == pytest.approx((p, v), rel=0.35)
    assert fitted.log_likelihood >= float(np.sum(clv.gamma_gamma_log_likelihood(p, q, v, x, m)))
    assert fitted.p * fitted.v / (fitted.q - 1) == pytest.approx(p * v / (q - 1), rel=0.02)
    # E[M | x, m] shrinks each customer's mean towards the population mean p v / (q - 1)
    mean = fitted.p * fitted.v / (fitted.q - 1)
    value = clv.expected_order_value(fitted, [0.0, 1.0, 50.0], [0.0, 100.0, 100.0])
    assert value[0] == pytest.approx(mean)
    assert mean < value[1] < value[2] < 100.0


def test_sql_functions_match_python(database_url: str) -> None:
    cases = [(0.0, 0.0, 100.0), (1.0, 5.0, 80.0), (4.0, 50.0, 60.0), (250.0, 700.0, 730.0),
             (3.0, 1.0, 900.0)]  # fmt: skip
    for model in (MODEL, clv.BgNbd(0.27, 0.75, 2.27, 22.1, 0.0), clv.BgNbd(2.0, 90, 0.4, 0.9, 0)):
        x, t_x, t_obs = (np.array(column) for column in zip(*cases, strict=True))
        want_e = clv.expected_purchases(model, 365.0, x, t_x, t_obs)
        want_p = clv.p_alive(model, x, t_x, t_obs)
        with connect(database_url) as conn:
            for i, (xi, txi, ti) in enumerate(cases):
                args = (xi, txi, ti, model.r, model.alpha, model.a, model.b)
                row = conn.execute(
                    "SELECT bgnbd_expected_purchases(365, %s, %s, %s, %s, %s, %s, %s), "
                    "bgnbd_p_alive(%s, %s, %s, %s, %s, %s, %s)",
                    args + args,
                ).fetchone()
                assert row is not None
                assert row[0] == pytest.approx(want_e[i], rel=1e-9, abs=1e-13), (model, cases[i])
                assert row[1] == pytest.approx(want_p[i], rel=1e-12), (model, cases[i])
    gamma = clv.GammaGamma(6.25, 3.74, 15.44, 0.0)
    with connect(database_url) as conn:
        row = conn.execute(
            "SELECT gamma_gamma_expected_value(4, 35.5, 6.25, 3.74, 15.44)"
        ).fetchone()
    assert row is not None
    assert row[0] == pytest.approx(clv.expected_order_value(gamma, [4.0], [35.5])[0], rel=1e-12)
