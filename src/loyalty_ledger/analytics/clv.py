"""BG/NBD (Fader, Hardie and Lee 2005) and Gamma-Gamma (Fader and Hardie 2013): likelihoods,
maximum-likelihood fits and conditional expectations, in numpy and scipy. Pure: no I/O.

Inputs per customer, time in any unit (the views use days): `x` repeat purchases (orders
after the first), `t_x` the time of the last purchase and `t_obs` the end of observation,
both since the first purchase (the papers' T), and for Gamma-Gamma `m`, the mean value of
the x repeat purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

Floats = NDArray[np.float64]

# Fits work on log-parameters (all are positive), kept where exp() stays finite.
_LOG_BOUND = 12.0


@dataclass(frozen=True, slots=True)
class BgNbd:
    """Purchase rates ~ Gamma(r, alpha); dropout after each purchase ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


@dataclass(frozen=True, slots=True)
class GammaGamma:
    """Order values ~ Gamma(p, nu), nu ~ Gamma(q, v) per customer."""

    p: float
    q: float
    v: float
    log_likelihood: float


def _arrays(*values: ArrayLike) -> list[Floats]:
    return [np.asarray(v, dtype=np.float64) for v in values]


# ------------------------------------------------------------------ BG/NBD


def bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: ArrayLike, t_x: ArrayLike, t_obs: ArrayLike
) -> Floats:
    """Each customer's log-likelihood, FHL (2005) eq. 6."""
    x, t_x, t_obs = _arrays(x, t_x, t_obs)
    head = (
        gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        + gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    )  # fmt: skip
    alive = -(r + x) * np.log(alpha + t_obs)
    repeat = x > 0
    # the dropout term exists only with a repeat purchase (delta_{x>0})
    gone = np.full_like(x, -np.inf)
    safe = np.where(repeat, x, 1.0)
    gone[repeat] = (np.log(a) - np.log(b + safe - 1) - (r + safe) * np.log(alpha + t_x))[repeat]
    result: Floats = head + np.logaddexp(alive, gone)
    return result


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, t_obs: ArrayLike) -> BgNbd:
    """Maximum likelihood over (r, alpha, a, b), from the method-of-moments-free start at 1."""
    x, t_x, t_obs = _arrays(x, t_x, t_obs)
    if x.size == 0:
        raise ValueError("no customer with an order to fit BG/NBD on")
    scale = max(float(np.mean(t_obs)), 1.0)

    def loss(theta: Floats) -> float:
        r, alpha, a, b = np.exp(theta)
        return -float(np.sum(bgnbd_log_likelihood(r, alpha, a, b, x, t_x, t_obs))) / x.size

    start = np.log([1.0, scale, 1.0, 1.0])
    found = minimize(loss, start, method="L-BFGS-B", bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4)
    r, alpha, a, b = (float(v) for v in np.exp(found.x))
    return BgNbd(r, alpha, a, b, -float(found.fun) * x.size)


def p_alive(model: BgNbd, x: ArrayLike, t_x: ArrayLike, t_obs: ArrayLike) -> Floats:
    """P(still active at t_obs | x, t_x), FHL (2008 note) eq. 4."""
    x, t_x, t_obs = _arrays(x, t_x, t_obs)
    odds = _dropout_odds(model, x, t_x, t_obs)
    result: Floats = 1.0 / (1.0 + odds)
    return result


def _dropout_odds(model: BgNbd, x: Floats, t_x: Floats, t_obs: Floats) -> Floats:
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    safe = np.where(x > 0, x, 1.0)
    log_odds = (
        np.log(a)
        - np.log(b + safe - 1)
        + (r + safe) * (np.log(alpha + t_obs) - np.log(alpha + t_x))
    )
    result: Floats = np.where(x > 0, np.exp(np.minimum(log_odds, 700.0)), 0.0)
    return result


def expected_purchases(
    model: BgNbd, t: float, x: ArrayLike, t_x: ArrayLike, t_obs: ArrayLike
) -> Floats:
    """E[Y(t) | x, t_x, t_obs]: expected purchases in the next `t`, FHL (2005) eq. 10.

    Written as in the paper (scipy's hyp2f1), so it checks the SQL functions, which
    use Euler's transformation of the same series.
    """
    x, t_x, t_obs = _arrays(x, t_x, t_obs)
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    z = t / (alpha + t_obs + t)
    tail = ((alpha + t_obs) / (alpha + t_obs + t)) ** (r + x) * hyp2f1(
        r + x, b + x, a + b + x - 1, z
    )
    result: Floats = (
        (a + b + x - 1) / (a - 1) * (1 - tail) / (1 + _dropout_odds(model, x, t_x, t_obs))
    )
    return result


# ------------------------------------------------------------------ Gamma-Gamma


def gamma_gamma_log_likelihood(p: float, q: float, v: float, x: ArrayLike, m: ArrayLike) -> Floats:
    """Each customer's log-likelihood of mean value m over x > 0 purchases (FH 2013 eq. 3)."""
    x, m = _arrays(x, m)
    result: Floats = (
        gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
        + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(x * m + v)
    )  # fmt: skip
    return result


def fit_gamma_gamma(x: ArrayLike, m: ArrayLike) -> GammaGamma:
    """Maximum likelihood over (p, q, v) on customers with x > 0 and m > 0; q > 1 so the
    expected value exists."""
    x, m = _arrays(x, m)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size == 0:
        raise ValueError("no customer with a repeat order of positive value to fit Gamma-Gamma on")

    def loss(theta: Floats) -> float:
        p, q, v = np.exp(theta)
        return -float(np.sum(gamma_gamma_log_likelihood(p, q, v, x, m))) / x.size

    start = np.log([1.0, 2.0, max(float(np.mean(m)), 1e-6)])
    bounds = [(-_LOG_BOUND, _LOG_BOUND), (np.log(1.0001), _LOG_BOUND), (-_LOG_BOUND, _LOG_BOUND)]
    found = minimize(loss, start, method="L-BFGS-B", bounds=bounds)
    p, q, v = (float(value) for value in np.exp(found.x))
    return GammaGamma(p, q, v, -float(found.fun) * x.size)


def expected_order_value(model: GammaGamma, x: ArrayLike, m: ArrayLike) -> Floats:
    """E[M | x, m], FH (2013) eq. 5; x = 0 gives the population mean p v / (q - 1)."""
    x, m = _arrays(x, m)
    m = np.where(x > 0, m, 0.0)
    result: Floats = model.p * (model.v + x * m) / (model.p * x + model.q - 1)
    return result


# ------------------------------------------------------------------ simulation


def simulate_bgnbd(
    r: float, alpha: float, a: float, b: float, t_obs: ArrayLike, seed: int
) -> tuple[Floats, Floats]:
    """(x, t_x) for customers observed over `t_obs` after their first purchase, drawn from
    the model itself: the reference data of the fit's tests."""
    (t_obs,) = _arrays(t_obs)
    rng = np.random.default_rng(seed)
    rates = rng.gamma(r, 1.0 / alpha, t_obs.size)
    dropouts = rng.beta(a, b, t_obs.size)
    x = np.zeros(t_obs.size)
    t_x = np.zeros(t_obs.size)
    for i, (rate, dropout, end) in enumerate(zip(rates, dropouts, t_obs, strict=True)):
        at, count = 0.0, 0
        while True:
            at += rng.exponential(1.0 / rate)
            if at > end:
                break
            count, t_x[i] = count + 1, at
            if rng.random() < dropout:  # inactive right after this purchase
                break
        x[i] = count
    return x, t_x
