"""The predictive models of `shared/spec/customer-scores.md` ("Predictions"), as pure
numpy/scipy: BG/NBD (Fader, Hardie and Lee 2005) for how many orders a customer will place
and whether they are still "alive", and the Gamma-Gamma spend model (Fader and Hardie 2013)
for what an order is worth.

Both are fitted by maximum likelihood on log-parameters (so every parameter stays positive)
with L-BFGS-B, over the distinct (x, t_x, T) or (x, m) of the customers with their
counts: a million customers share a few hundred thousand distinct triples at most, and each
evaluation of the likelihood is one vectorised pass over them. The BG/NBD likelihood is
written in the numerically stable form of Fader and Hardie's note on it (a log-sum-exp of
its two terms), so customers with many orders or a long history do not overflow.

Time is in weeks, as in the paper; `tests/customers/test_bgnbd.py` reproduces the published
parameters on the CDNOW sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1


@dataclass(frozen=True)
class BgNbdFit:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int


@dataclass(frozen=True)
class GammaGammaFit:
    p: float
    q: float
    gamma: float
    customers: int

    @property
    def mean_order_value(self) -> float:
        """The population mean of an order's value, p * gamma / (q - 1) (q > 1)."""
        return self.p * self.gamma / (self.q - 1)


def _grouped(*columns: ArrayLike) -> tuple[list[NDArray[np.float64]], NDArray[np.float64]]:
    """The distinct rows of the columns and how many customers share each."""
    stacked = np.column_stack([np.asarray(c, dtype=float) for c in columns])
    distinct, counts = np.unique(stacked, axis=0, return_counts=True)
    return [distinct[:, i] for i in range(distinct.shape[1])], counts.astype(float)


#: The log-parameters are searched within these bounds (e^-30 to e^30): a fit that ends on
#: one has a parameter running off to zero or infinity, which the data do not pin down.
LOG_BOUND = 30.0


def _maximise(
    negative: Callable[[NDArray[np.float64]], float], initial: NDArray[np.float64], model: str
) -> tuple[NDArray[np.float64], float]:
    """The log-parameters minimising `negative` (the negative log-likelihood), and its value.

    L-BFGS-B (a quasi-Newton search with numerical gradients) takes about a hundred
    evaluations where Nelder-Mead takes a thousand, which matters at a million customers;
    with these tolerances it lands on the CDNOW optimum to 1e-10 of the log-likelihood.
    Raises ArithmeticError when it does not converge."""
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(initial)
    result = minimize(
        negative,
        initial,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2_000, "ftol": 1e-13, "gtol": 1e-9},
    )
    if np.isfinite(result.fun) and not result.success:
        # TRICKY: L-BFGS-B stops "abnormally" when its line search cannot improve on
        # numerical gradients that are noise near a flat optimum; Nelder-Mead, which needs
        # no gradient, finishes from there (or says it cannot).
        result = minimize(
            negative,
            result.x,
            method="Nelder-Mead",
            bounds=bounds,
            options={"xatol": 1e-8, "fatol": 1e-10, "maxfev": 5_000},
        )
    if not np.isfinite(result.fun) or not result.success:
        raise ArithmeticError(f"{model} did not converge: {result.message}")
    if np.any(np.abs(result.x) >= LOG_BOUND - 1e-3):
        raise ArithmeticError(
            f"{model} did not converge: a parameter runs off to "
            f"{'zero' if result.x.min() <= -LOG_BOUND + 1e-3 else 'infinity'} "
            "(the data do not pin the model down)"
        )
    return result.x, float(result.fun)


def bgnbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: NDArray, t_x: NDArray, T: NDArray
) -> NDArray[np.float64]:
    """Each customer's log-likelihood under BG/NBD with these parameters."""
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0,
            np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_bgnbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, start: BgNbdFit | None = None
) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters for customers with x repeat purchases, the last
    at t_x and observed for T (weeks since their first purchase). `start`, an earlier fit,
    is where the search begins (the optimum moves little between two computations)."""
    (gx, gt, gT), weights = _grouped(x, t_x, T)
    # TRICKY: the terms depend on x, t_x or T alone, which take far fewer distinct values
    # than the triples (a few dozen x, a few hundred days): each is computed per distinct
    # value and indexed, leaving a handful of vectorised operations per triple.
    ux, ix = np.unique(gx, return_inverse=True)
    ut, it = np.unique(gt, return_inverse=True)
    uT, iT = np.unique(gT, return_inverse=True)
    repeat = gx > 0

    def negative(log_params: NDArray[np.float64]) -> float:
        r, alpha, a, b = np.exp(log_params)
        head = gammaln(r + ux) - gammaln(r) + r * np.log(alpha) + betaln(a, b + ux) - betaln(a, b)
        rx = r + gx
        a3 = -rx * np.log(alpha + uT)[iT]
        with np.errstate(divide="ignore"):
            drop = np.log(a) - np.log(np.maximum(b + ux - 1, 1e-300))
        a4 = np.where(repeat, drop[ix] - rx * np.log(alpha + ut)[it], -np.inf)
        return float(-(weights * (head[ix] + np.logaddexp(a3, a4))).sum())

    initial = np.zeros(4) if start is None else np.log([start.r, start.alpha, start.a, start.b])
    best, value = _maximise(negative, initial, "BG/NBD")
    r, alpha, a, b = (float(v) for v in np.exp(best))
    return BgNbdFit(r, alpha, a, b, -value, int(weights.sum()))


def gamma_gamma_log_likelihood(
    p: float, q: float, gamma: float, x: NDArray, m: NDArray
) -> NDArray[np.float64]:
    """Each customer's log-likelihood of their mean order value m over x orders."""
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + m * x)
    )


def fit_gamma_gamma(
    x: ArrayLike, m: ArrayLike, *, start: GammaGammaFit | None = None
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters for customers with x > 0 repeat purchases
    of mean value m > 0 (`start`: where the search begins, as for `fit_bgnbd`)."""
    (gx, gm), weights = _grouped(x, m)
    ux, ix = np.unique(gx, return_inverse=True)
    log_m, log_x, mx = np.log(gm), np.log(gx), gm * gx

    def negative(log_params: NDArray[np.float64]) -> float:
        p, q, gamma = np.exp(log_params)
        per_x = gammaln(p * ux + q) - gammaln(p * ux)
        px = p * gx
        each = (
            per_x[ix]
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * log_m
            + px * log_x
            - (px + q) * np.log(gamma + mx)
        )
        return float(-(weights * each).sum())

    initial = np.zeros(3) if start is None else np.log([start.p, start.q, start.gamma])
    best, _ = _maximise(negative, initial, "Gamma-Gamma")
    p, q, gamma = (float(v) for v in np.exp(best))
    return GammaGammaFit(p, q, gamma, int(weights.sum()))


def p_alive(fit: BgNbdFit, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> NDArray[np.float64]:
    """P(alive | x, t_x, T); 1 for a customer without a repeat purchase (the model's
    assumption: one can only "die" right after a purchase)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    ratio = np.exp((fit.r + x) * (np.log(fit.alpha + T) - np.log(fit.alpha + t_x)))
    odds = np.where(x > 0, fit.a / np.maximum(fit.b + x - 1, 1e-300) * ratio, 0.0)
    return 1.0 / (1.0 + odds)


def expected_purchases(
    fit: BgNbdFit, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> NDArray[np.float64]:
    """E[repeat purchases in the next t weeks | x, t_x, T] (the paper's equation 10)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    head = (a + b + x - 1) / (a - 1)
    body = 1 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
    return head * body * p_alive(fit, x, t_x, T)


def conditional_order_value(fit: GammaGammaFit, x: ArrayLike, m: ArrayLike) -> NDArray:
    """E[order value | x, m]: a weighted mean of the population mean and the customer's
    own (the population mean for x = 0)."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    weight = (fit.q - 1) / (fit.p * x + fit.q - 1)
    own = np.where(x > 0, m, 0.0)
    return weight * fit.mean_order_value + (1 - weight) * own


def p_order_within(fit: BgNbdFit, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> NDArray:
    """P(at least one purchase in the next t weeks | x, t_x, T): alive, and the Poisson
    process with the customer's posterior Gamma(r + x, alpha + T) rate fires at least once,
    P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    silent = np.exp((fit.r + x) * (np.log(fit.alpha + T) - np.log(fit.alpha + T + t)))
    return p_alive(fit, x, t_x, T) * (1 - silent)


def alive_until_weeks(fit: BgNbdFit, p: float, x: ArrayLike, t_x: ArrayLike) -> NDArray:
    """The T (weeks since the first purchase) at which P(alive | x, t_x, T) falls to `p`
    without a new purchase: P(alive) = 1 / (1 + odds) with odds growing in T, so solve
    a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) = (1 - p) / p. Infinite for
    x = 0 (the model keeps such a customer alive)."""
    x, t_x = np.asarray(x, dtype=float), np.asarray(t_x, dtype=float)
    odds = (1 - p) / p
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = (np.log(odds) + np.log(np.maximum(fit.b + x - 1, 1e-300)) - np.log(fit.a)) / (
            fit.r + x
        )
        weeks = (fit.alpha + t_x) * np.exp(log_ratio) - fit.alpha
    return np.where(x > 0, np.maximum(weeks, t_x), np.inf)
