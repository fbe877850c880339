"""The predictive models reproduce the published results on the CDNOW sample (Fader, Hardie
and Lee 2005; Fader and Hardie 2013): 2,357 customers, a 39-week calibration period to
1997-09-30, repeat purchases counted per distinct day, time in weeks."""

from __future__ import annotations

import numpy as np
import pytest

from customers.scores import bgnbd
from customers.scores.bgnbd import (
    BgNbdFit,
    conditional_order_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
)
from tests.customers.cdnow import calibration_by_customer


@pytest.fixture(scope="module")
def calibration():
    """(x, t_x, T, m) per customer, from the purchases up to the calibration's end."""
    return np.array(list(calibration_by_customer().values()))


def test_bgnbd_reproduces_the_paper(calibration):
    x, t_x, T = calibration[:, 0], calibration[:, 1], calibration[:, 2]

    fit = fit_bgnbd(x, t_x, T)

    assert fit.customers == 2357
    assert (round(fit.r, 3), round(fit.alpha, 3), round(fit.a, 3), round(fit.b, 3)) == (
        0.243,
        4.414,
        0.793,
        2.426,
    )
    assert fit.log_likelihood == pytest.approx(-9582.43, abs=0.01)


def test_gamma_gamma_reproduces_the_paper(calibration):
    repeat = calibration[(calibration[:, 0] > 0) & (calibration[:, 3] > 0)]

    fit = fit_gamma_gamma(repeat[:, 0], repeat[:, 3])

    assert fit.customers == 946
    assert (round(fit.p, 2), round(fit.q, 2), round(fit.gamma, 2)) == (6.25, 3.74, 15.44)


def test_the_closed_forms_on_the_papers_example_customer():
    # Fader, Hardie and Lee (2005), section 5: a customer with x = 2, t_x = 30.43 and
    # T = 38.86 expects 1.226 repeat purchases in the next 39 weeks.
    fit = BgNbdFit(r=0.2426, alpha=4.4135, a=0.7929, b=2.4258, log_likelihood=0.0, customers=0)

    expected = expected_purchases(fit, 39, [2], [30.43], [38.86])[0]

    assert expected == pytest.approx(1.226, abs=0.001)
    # one-time buyers are "alive" by the model's assumption; a long silence lowers P(alive)
    alive = p_alive(fit, [0, 4, 4], [0, 30.0, 2.0], [31.0, 31.0, 31.0])
    assert alive[0] == 1.0 and alive[1] > 0.8 and alive[2] < 0.01


def test_the_order_value_shrinks_to_the_population_mean():
    from customers.scores.bgnbd import GammaGammaFit

    fit = GammaGammaFit(p=6.25, q=3.74, gamma=15.44, customers=946)
    values = conditional_order_value(fit, [0, 1, 50], [0.0, 100.0, 100.0])

    assert values[0] == pytest.approx(fit.mean_order_value)
    assert fit.mean_order_value < values[1] < values[2] < 100.0


def test_an_abnormal_stop_of_the_gradient_search_is_finished_by_nelder_mead(
    calibration, monkeypatch
):
    # given L-BFGS-B stopping "abnormally" short of the optimum, as it does on flat data
    real = bgnbd.minimize

    def stopping_early(fun, x0, **kwargs):
        if kwargs.get("method") == "L-BFGS-B":
            kwargs["options"] = {**kwargs["options"], "maxiter": 3}
            result = real(fun, x0, **kwargs)
            result.success = False
            return result
        return real(fun, x0, **kwargs)

    monkeypatch.setattr(bgnbd, "minimize", stopping_early)
    repeat = calibration[(calibration[:, 0] > 0) & (calibration[:, 3] > 0)]

    # when
    fit = fit_gamma_gamma(repeat[:, 0], repeat[:, 3])

    # then the fit is still the paper's
    assert (round(fit.p, 2), round(fit.q, 2), round(fit.gamma, 2)) == (6.25, 3.74, 15.44)
