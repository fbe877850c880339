"""How far the prediction fit goes: BG/NBD and Gamma-Gamma fitted on simulated customers
(issue 13), without a database.

    .venv/bin/python bench/bgnbd_scale.py [--sizes 1000000,10000000,30000000]

Each customer is drawn from the BG/NBD story itself (a Poisson buying rate from
Gamma(r, alpha), a dropout probability from Beta(a, b) after each repeat purchase) with the
demo merchant's parameters, first purchases spread over two years and the history cut at
"today" in whole days, as the portal measures it; order values from Gamma-Gamma. Prints,
per size: the distinct (x, t_x, T) triples the fit runs over, the grouping time, each fit's
time and evaluations, peak RSS, and whether the fit recovered the parameters it was drawn
from. Raw figures go to bench/out/bgnbd-scale-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from customers.scores import bgnbd  # noqa: E402

TRUE = {"r": 0.48, "alpha": 1.22, "a": 0.94, "b": 7.4}
SPEND = {"p": 6.0, "q": 4.0, "gamma": 15.0}
HISTORY_DAYS = 730


def simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """x, t_x, T in weeks (whole days / 7) and m for `n` customers, in chunks."""
    xs, txs, Ts, ms = [], [], [], []
    for start in range(0, n, 2_000_000):
        size = min(2_000_000, n - start)
        age_days = rng.integers(0, HISTORY_DAYS, size)
        rate = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], size) / 7  # per day
        drop = rng.beta(TRUE["a"], TRUE["b"], size)
        x = np.zeros(size, dtype=np.int64)
        last = np.zeros(size)
        now = np.zeros(size)
        alive = np.ones(size, dtype=bool)
        # Repeat purchases one at a time for everyone still alive and still inside the window.
        while alive.any():
            gap = rng.exponential(1 / np.maximum(rate, 1e-12))
            now = np.where(alive, now + gap, now)
            inside = alive & (now <= age_days)
            x = x + inside
            last = np.where(inside, now, last)
            alive = inside & (rng.random(size) >= drop)
        t_x = np.floor(last) / 7
        nu = rng.gamma(SPEND["q"], 1 / SPEND["gamma"], size)
        m = np.where(x > 0, rng.gamma(SPEND["p"] * np.maximum(x, 1), 1 / nu) / np.maximum(x, 1), 0)
        xs.append(x.astype(float))
        txs.append(t_x)
        Ts.append(age_days / 7)
        ms.append(m)
    return np.concatenate(xs), np.concatenate(txs), np.concatenate(Ts), np.concatenate(ms)


def counted(fit, *args, **kwargs):
    calls = [0]
    real = bgnbd.minimize

    def wrapper(f, x0, **kw):
        def g(v):
            calls[0] += 1
            return f(v)

        return real(g, x0, **kw)

    bgnbd.minimize = wrapper
    try:
        started = time.perf_counter()
        result = fit(*args, **kwargs)
        return result, time.perf_counter() - started, calls[0]
    finally:
        bgnbd.minimize = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000,30000000")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        x, t_x, T, m = simulate(n, rng)
        started = time.perf_counter()
        (_, _, _), weights = bgnbd._grouped(x, t_x, T)
        grouping = time.perf_counter() - started
        fit, fit_s, evaluations = counted(bgnbd.fit_bgnbd, x, t_x, T)
        _, warm_s, warm_evaluations = counted(bgnbd.fit_bgnbd, x, t_x, T, start=fit)
        repeat = (x > 0) & (m > 0)
        spend, spend_s, spend_evaluations = counted(bgnbd.fit_gamma_gamma, x[repeat], m[repeat])
        row = {
            "customers": n,
            "distinct_triples": len(weights),
            "grouping_s": round(grouping, 2),
            "bgnbd_s": round(fit_s, 2),
            "bgnbd_evaluations": evaluations,
            "bgnbd_warm_s": round(warm_s, 2),
            "bgnbd_warm_evaluations": warm_evaluations,
            "gamma_gamma_s": round(spend_s, 2),
            "gamma_gamma_evaluations": spend_evaluations,
            "fitted": {k: round(getattr(fit, k), 3) for k in TRUE},
            "fitted_spend": {k: round(getattr(spend, k), 3) for k in SPEND},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    path = out / f"bgnbd-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"true": TRUE, "spend": SPEND, "results": results}, indent=2))
    print(f"raw figures: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
